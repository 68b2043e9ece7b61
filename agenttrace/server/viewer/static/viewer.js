// AgentTrace viewer: the pages work without this file; it loads an event's detail in place.
"use strict";

function loadPane(pane, link) {
  const run = pane.dataset.run;
  const seq = link.dataset.seq;
  pane.setAttribute("aria-busy", "true");
  return fetch("/runs/" + encodeURIComponent(run) + "/events/" + encodeURIComponent(seq), {
    credentials: "same-origin",
    headers: { Accept: "text/html" },
  })
    .then((response) => response.text().then((text) => ({ response, text })))
    .then(({ response, text }) => {
      // The server escaped every value; parsing here never runs script (and the CSP forbids it).
      const parsed = new DOMParser().parseFromString(text, "text/html");
      const detail = parsed.querySelector(".event-detail") || parsed.querySelector(".message");
      if (!detail) {
        window.location.href = link.href;
        return;
      }
      pane.replaceChildren(document.importNode(detail, true));
      document.querySelectorAll("tr.selected").forEach((row) => row.classList.remove("selected"));
      const row = link.closest("tr");
      if (row && response.ok) row.classList.add("selected");
      window.history.replaceState(null, "", link.href);
    })
    .catch(() => {
      window.location.href = link.href;
    })
    .finally(() => pane.removeAttribute("aria-busy"));
}

function wireRunPage() {
  const pane = document.getElementById("pane");
  if (!pane) return;
  document.querySelectorAll("a.event-link").forEach((link) => {
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      loadPane(pane, link);
    });
  });
}

function wireRunsList() {
  // Comparing takes two runs: ticking a third unticks the first one ticked.
  const ticked = [];
  document.querySelectorAll("table.runs input[type=checkbox][name=run]").forEach((box) => {
    box.addEventListener("change", () => {
      const at = ticked.indexOf(box);
      if (at >= 0) ticked.splice(at, 1);
      if (box.checked) ticked.push(box);
      while (ticked.length > 2) ticked.shift().checked = false;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireRunPage();
  wireRunsList();
});
