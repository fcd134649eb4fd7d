// Kami web: the little the pages do in the browser. No inline scripts (the
// Content-Security-Policy allows only this file and htmx from /static).
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // <span class="countdown" data-deadline="ISO" data-expired="text">: mm:ss left.
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-deadline]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.dataset.deadline) - now) / 1000);
      if (isNaN(left)) { return; }
      if (left <= 0) {
        el.textContent = el.dataset.expired || "00:00";
        el.classList.add("expired");
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(s);
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("htmx:sseMessage", tick);

  // <button class="copy" data-copy="element-id">: copy that element's text.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copy);
    if (!source) { return; }
    var text = source.textContent.trim();
    var done = function () { button.textContent = button.dataset.copied || "✓"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
      try { document.execCommand("copy"); done(); } catch (e) { /* selected for the user */ }
    }
  });

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
})();
