// kbchat admin console: polls running upload jobs and updates their progress bars (no third-party code).
(function () {
  function update(box, state) {
    state.files.forEach(function (f, i) {
      var row = box.querySelector('tr[data-file="' + i + '"]');
      if (!row) return;
      row.dataset.stage = f.stage;
      var p = row.querySelector("progress.pages"); p.max = f.pages_total || 1; p.value = f.pages_done;
      row.querySelector(".pages-text").textContent = f.pages_done + " / " + f.pages_total;
      row.querySelector(".ocr").textContent = f.ocr_pages;
      var e = row.querySelector("progress.embedded"); e.max = f.passages || 1; e.value = f.embedded;
      row.querySelector(".embedded-text").textContent = f.embedded + " / " + f.passages;
      row.querySelector(".line").textContent = f.line;
    });
    box.dataset.running = state.running ? "true" : "false";
  }
  function poll(box) {
    fetch("/admin/jobs/" + box.dataset.job, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) return;
        update(box, state);
        if (state.running) setTimeout(function () { poll(box); }, 500);
        else if (!document.querySelector('.job[data-running="true"]')) setTimeout(function () { location.assign(location.pathname + "?notice=adm_upload_done#uploads"); }, 300);
      })
      .catch(function () { setTimeout(function () { poll(box); }, 2000); });
  }
  document.querySelectorAll('.job[data-running="true"]').forEach(poll);
})();
// Review shortcuts: a approve, r reject, s skip, e edit the answer (not while typing in a field).
document.addEventListener("keydown", function (ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  var tag = (ev.target && ev.target.tagName) || "";
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
  var target = {a: "do-approve", r: "do-reject", s: "do-skip"}[ev.key];
  if (target && document.getElementById(target)) { ev.preventDefault(); document.getElementById(target).click(); }
  if (ev.key === "e" && document.getElementById("edit-answer")) { ev.preventDefault(); document.getElementById("edit-answer").focus(); }
});
// File inputs: show the chosen files' names beside the console's own button.
document.querySelectorAll("span.file input[type=file]").forEach(function (input) {
  input.addEventListener("change", function () {
    var shown = input.parentNode.querySelector(".chosen");
    var names = Array.prototype.map.call(input.files, function (f) { return f.name; });
    shown.textContent = names.length ? names.join(", ") : shown.dataset.none;
  });
});
