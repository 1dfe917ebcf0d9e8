// The dashboard's only script: refresh live regions, and confirm actions before they are sent.
// Without it the pages still work (reload to refresh; actions go without the question).
"use strict";

function refresh(region) {
  const every = Number(region.dataset.every || "2000");
  const tick = async () => {
    try {
      const answer = await fetch(region.dataset.live, { headers: { Accept: "text/html" } });
      if (answer.ok) {
        region.innerHTML = await answer.text();
      }
    } catch (error) {
      // Offline for a moment: keep what is shown and try again at the next tick.
    }
    if (!region.querySelector("[data-final]")) {
      window.setTimeout(tick, every);
    }
  };
  if (!region.querySelector("[data-final]")) {
    window.setTimeout(tick, every);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refresh);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
});
