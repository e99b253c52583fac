// kbchat: a link to the admin console (/admin) in the chat's header, for administrators only. The server
// decides: GET /admin/link answers an admin with the link's label in the page's language, anyone else with
// a refusal (no link). It is asked once the chat's header shows (after sign-in: the page is not reloaded
// then). The console checks the role again on every request.
(function () {
  var label = null, asked = false;
  function place() {
    var header = document.getElementById("header");
    if (!header) return;
    if (!asked) {
      asked = true;
      fetch("/admin/link", {credentials: "same-origin", redirect: "manual"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && data.label) { label = data.label; place(); } })
        .catch(function () {});
      return;
    }
    if (!label || document.getElementById("kbchat-admin-link")) return;
    var a = document.createElement("a");
    a.id = "kbchat-admin-link";
    a.href = "/admin";
    a.textContent = label;
    a.setAttribute("style", "margin-right:.75rem;font-size:.875rem;text-decoration:none;padding:.3rem .6rem;" +
      "border:1px solid currentColor;border-radius:6px;opacity:.85;white-space:nowrap");
    var right = header.lastElementChild;
    if (right && right !== header.firstElementChild) right.insertBefore(a, right.firstChild);
    else header.appendChild(a);
  }
  new MutationObserver(place).observe(document.documentElement, {childList: true, subtree: true});
  place();
})();
