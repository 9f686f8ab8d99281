// The console's only script: ask before a delete. Everything else is plain HTML forms and links.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
