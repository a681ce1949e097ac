// TrustForge dashboard: behaviour attached from this file only (the CSP forbids inline script).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Forms that change something important ask first: <form data-confirm="Promote v3 to @champion?">
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
