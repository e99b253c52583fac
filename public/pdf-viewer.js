// kbchat: a citation lands on its passage. Chainlit's PDF viewer (react-pdf) opens the cited page at its
// top; kbchat's PDF routes mark the cited passage with a highlight annotation, which pdf.js draws as a
// <section class="highlightAnnotation"> in the page's annotation layer. When such a highlight appears,
// the boxes around it are scrolled so it sits in the middle of what can be seen (its top in view when it
// is taller than that). Once per document a viewer shows: a later scroll, page turn or zoom by the user
// is left alone.
(function () {
  "use strict";
  var MARGIN = 24; // px kept above a highlight taller than the visible part of the viewer
  var shown = new WeakMap(); // viewer element -> the document URL whose highlight it was scrolled to

  function viewerOf(el) {
    // Chainlit's viewer: the element holding both the page and the document's download link
    for (var p = el.parentElement; p; p = p.parentElement) {
      var link = p.querySelector("a[download][href]");
      if (link) return { element: p, url: link.getAttribute("href") };
    }
    return null;
  }

  function visibleHeight(el) {
    // the height of the part of the window that el's clipping ancestors let through
    var top = 0, bottom = window.innerHeight;
    for (var p = el.parentElement; p; p = p.parentElement) {
      if (/(auto|scroll|hidden)/.test(getComputedStyle(p).overflowY)) {
        var r = p.getBoundingClientRect();
        top = Math.max(top, r.top);
        bottom = Math.min(bottom, r.bottom);
      }
    }
    return bottom - top;
  }

  function bring(highlight) {
    var viewer = viewerOf(highlight);
    if (!viewer) return false;
    if (shown.get(viewer.element) === viewer.url) return true;
    var h = highlight.getBoundingClientRect();
    if (h.height === 0) return false; // not laid out yet
    var tall = h.height + 2 * MARGIN > visibleHeight(highlight);
    highlight.style.scrollMarginTop = MARGIN + "px";
    // every box that scrolls around the page moves: in Chainlit's side panel that is the panel's card
    highlight.scrollIntoView({ block: tall ? "start" : "center", inline: "nearest", behavior: "instant" });
    shown.set(viewer.element, viewer.url);
    return true;
  }

  function check() {
    var marks = document.querySelectorAll(".react-pdf__Page .annotationLayer section.highlightAnnotation");
    for (var i = 0; i < marks.length; i++) {
      if (!marks[i].hasAttribute("data-kbchat-seen") && bring(marks[i])) marks[i].setAttribute("data-kbchat-seen", "");
    }
  }

  var pending = 0;
  function later() {
    if (pending) return;
    pending = requestAnimationFrame(function () {
      pending = 0;
      check();
    });
  }

  function start() {
    new MutationObserver(later).observe(document.body, { childList: true, subtree: true });
    later();
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
