// coinmatch: a little plain JavaScript. Dropping files, polling a collection's progress, the compare overlay.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Drop zones: files dropped on the zone go into its input (and a single photo is identified at once).
  document.querySelectorAll(".drop").forEach((zone) => {
    const input = document.getElementById(zone.dataset.input);
    ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => {
      ev.preventDefault(); zone.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
      input.files = ev.dataTransfer.files;
      if (input.id === "file") zone.closest("form").requestSubmit();
    });
  });

  // A submitted form says that it is working (a search takes a second or more).
  document.querySelectorAll("form.upload").forEach((form) => form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; button.textContent = "Working…"; }
  }));

  // A collection being matched: poll its progress, show the table once it is done.
  const job = document.getElementById("job");
  if (job && (job.dataset.status === "queued" || job.dataset.status === "running")) {
    const bar = document.getElementById("progress");
    const text = document.getElementById("progress-text");
    const poll = async () => {
      try {
        const answer = await fetch(`/api/collections/${job.dataset.job}`);
        const state = await answer.json();
        bar.value = state.done;
        text.textContent = `${state.done} of ${state.total} · ${state.status} · ${state.seconds} s`;
        if (state.status === "done" || state.status === "failed") { window.location.reload(); return; }
      } catch (err) {
        text.textContent = "waiting for the server…";
      }
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 500);
  }

  // Compare: blend the photo (turned onto the catalogue image) over it; toggle flips between the two.
  const blend = document.getElementById("blend");
  const top = document.getElementById("overlay-top");
  if (blend && top) {
    blend.addEventListener("input", () => { top.style.opacity = blend.value / 100; });
    document.getElementById("toggle").addEventListener("click", () => {
      blend.value = Number(blend.value) >= 50 ? 0 : 100;
      top.style.opacity = blend.value / 100;
    });
  }
});
