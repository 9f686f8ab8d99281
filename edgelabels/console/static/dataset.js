// The dataset grid: pick tiles (click a thumbnail or its box; Shift+click picks the range from the last one), select
// all on the page, relabel the selection through one POST (the page then reloads to show the result).
"use strict";
(() => {
  const relabel = document.getElementById("relabel");
  if (!relabel) {
    return;
  }
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const message = document.getElementById("relabel-message");
  const picks = () => Array.from(document.querySelectorAll("input.pick"));
  const picked = () => picks().filter((box) => box.checked);

  function show() {
    for (const box of picks()) {
      box.closest("li.tile").classList.toggle("picked", box.checked);
    }
    document.getElementById("selected-count").textContent = `${picked().length} selected`;
  }

  let last = null;
  document.addEventListener("click", (event) => {
    if (!event.target.matches("input.pick")) {
      return;
    }
    const all = picks();
    const here = all.indexOf(event.target);
    if (event.shiftKey && last !== null) {
      const [from, to] = [Math.min(last, here), Math.max(last, here)];
      for (const box of all.slice(from, to + 1)) {
        box.checked = event.target.checked;
      }
    }
    last = here;
    show();
  });

  document.getElementById("select-all").addEventListener("click", () => {
    const all = picks().every((box) => box.checked);
    for (const box of picks()) {
      box.checked = !all;
    }
    show();
  });

  relabel.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refs = picked().map((box) => box.value);
    const label = relabel.elements.label.value.trim();
    if (refs.length === 0) {
      message.textContent = "Select one or more images first.";
      return;
    }
    message.textContent = `Relabelling ${refs.length} images…`;
    relabel.querySelector("button[type=submit]").disabled = true;
    try {
      const answer = await fetch(relabel.dataset.url, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({refs, label}),
      });
      const body = await answer.json();
      if (answer.ok) {
        window.location.reload();
        return;
      }
      message.textContent = body.message;
    } catch (error) {
      message.textContent = `The service did not answer: ${error}`;
    }
    relabel.querySelector("button[type=submit]").disabled = false;
  });
  show();
})();
