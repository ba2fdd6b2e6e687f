// Hookline's only script: copy buttons. Every page works without it.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  if (!field) return;
  var done = function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, function () {
      field.select();
    });
  } else {
    field.select();
    try { if (document.execCommand("copy")) done(); } catch (e) { /* the text stays selected */ }
  }
});

// A form sent once stays sent: its submit buttons are disabled until the next page (htmx forms
// update in place and keep theirs).
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.hasAttribute("hx-post")) return;
  setTimeout(function () {
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (button) {
      button.disabled = true;
    });
  }, 0);
});
// Coming back to a page from the history shows its buttons usable again.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form:not([hx-post]) button[disabled]").forEach(function (button) {
    if (!button.hasAttribute("data-disabled")) button.disabled = false;
  });
});
