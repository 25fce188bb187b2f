// The admin console's only script: asks before a delete, shows times in the browser's zone.
"use strict";
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
document.querySelectorAll("time").forEach((node) => {
  const text = node.textContent.trim();
  const when = Date.parse(text);
  if (text && !Number.isNaN(when)) {
    node.title = text;
    node.textContent = new Date(when).toLocaleString();
  }
});
