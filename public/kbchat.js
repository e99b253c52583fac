// kbchat's scripts for the chat page (Chainlit takes one `custom_js`): each one is its own file.
//   admin-link.js  the header's link to the admin console, for administrators only
//   pdf-viewer.js  a citation's PDF scrolls to the highlighted passage
(function () {
  ["/public/admin-link.js", "/public/pdf-viewer.js"].forEach(function (src) {
    var s = document.createElement("script");
    s.src = src;
    s.async = false;
    document.head.appendChild(s);
  });
})();
