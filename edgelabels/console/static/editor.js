// The entry editor (templates/entry.html): boxes drawn, moved, resized and deleted with the mouse and the keyboard
// over the image, in the image's own pixels (an SVG whose viewBox is the image), and the whole entry saved as one
// POST that the console turns into one UpdateDatasetEntries.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("entry-data").textContent);
  const stage = document.getElementById("stage");
  const svg = document.getElementById("overlay");
  const labelInput = document.getElementById("label");
  const boxLabel = document.getElementById("box-label");
  const status = document.getElementById("status");
  const list = document.getElementById("box-list");
  const saveButton = document.getElementById("save");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const NS = "http://www.w3.org/2000/svg";
  const W = data.width || 1;
  const H = data.height || 1;
  const MIN_SIDE = 2; // px: a click without a drag draws nothing (Rekognition needs sides above 1 px)
  const HANDLE_PX = 10; // a corner handle's side on the screen
  const boxes = data.boxes.map((b) => ({ ...b }));
  let selected = -1;
  let saving = false;
  let drag = null; // {mode: "draw" | "move" | "resize", start, origin (the box before), fixed (resize's corner)}

  stage.style.aspectRatio = `${W} / ${H}`;
  stage.classList.toggle("small", W < 320);

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  function say(text, error = false) {
    status.textContent = text;
    status.classList.toggle("error", error);
  }

  function changed() {
    render();
    say("Unsaved changes");
  }

  function element(name, attributes) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    return node;
  }

  function scale() {
    return W / (svg.getBoundingClientRect().width || W); // image px per screen px
  }

  function point(event) {
    const r = svg.getBoundingClientRect();
    return { x: clamp(((event.clientX - r.left) * W) / r.width, 0, W),
             y: clamp(((event.clientY - r.top) * H) / r.height, 0, H) };
  }

  function corners(b) {
    return [["nw", b.left, b.top], ["ne", b.left + b.width, b.top],
            ["sw", b.left, b.top + b.height], ["se", b.left + b.width, b.top + b.height]];
  }

  function render() {
    const s = scale();
    const h = HANDLE_PX * s;
    svg.replaceChildren();
    list.replaceChildren();
    boxes.forEach((b, i) => {
      const group = element("g", { class: i === selected ? "box selected" : "box", "data-index": i });
      group.append(element("rect", { class: "body", x: b.left, y: b.top, width: b.width, height: b.height }));
      const name = element("text", { x: b.left + 3 * s, y: b.top + 14 * s, "font-size": 13 * s });
      name.textContent = b.label;
      group.append(name);
      if (i === selected) {
        for (const [corner, x, y] of corners(b)) {
          group.append(element("rect", { class: "handle", "data-corner": corner, x: x - h / 2, y: y - h / 2,
                                         width: h, height: h }));
        }
      }
      svg.append(group);
      const item = document.createElement("li");
      item.dataset.index = i;
      item.className = i === selected ? "selected" : "";
      item.textContent = `${b.label} [${[b.left, b.top, b.width, b.height].map((v) => +v.toFixed(2)).join(", ")}]`;
      list.append(item);
    });
  }

  function select(index) {
    selected = index;
    if (index >= 0) boxLabel.value = boxes[index].label;
    render();
  }

  // ---------------------------------------------------------------- the mouse
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !data.width) return;
    event.preventDefault();
    stage.focus({ preventScroll: true });
    const start = point(event);
    const corner = event.target.dataset.corner;
    const group = event.target.closest("g.box");
    if (corner && selected >= 0) {
      const b = boxes[selected];
      const opposite = { nw: "se", ne: "sw", sw: "ne", se: "nw" }[corner];
      const [, x, y] = corners(b).find(([c]) => c === opposite);
      drag = { mode: "resize", start, origin: { ...b }, fixed: { x, y } };
    } else if (group) {
      select(Number(group.dataset.index));
      drag = { mode: "move", start, origin: { ...boxes[selected] } };
    } else {
      const label = boxLabel.value.trim();
      if (!label) {
        select(-1);
        say("Type a box label first, then drag on the image to draw its box.", true);
        return;
      }
      boxes.push({ label, left: Math.round(start.x), top: Math.round(start.y), width: 0, height: 0 });
      select(boxes.length - 1);
      drag = { mode: "draw", start, fixed: { x: Math.round(start.x), y: Math.round(start.y) } };
    }
    svg.setPointerCapture(event.pointerId);
  });

  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const p = point(event);
    const b = boxes[selected];
    if (drag.mode === "move") {
      const o = drag.origin;
      b.left = clamp(o.left + Math.round(p.x - drag.start.x), 0, W - o.width);
      b.top = clamp(o.top + Math.round(p.y - drag.start.y), 0, H - o.height);
    } else { // draw and resize: from the fixed corner to the pointer
      const x = Math.round(p.x);
      const y = Math.round(p.y);
      b.left = Math.min(x, drag.fixed.x);
      b.top = Math.min(y, drag.fixed.y);
      b.width = Math.abs(x - drag.fixed.x);
      b.height = Math.abs(y - drag.fixed.y);
    }
    render();
  });

  function endDrag() {
    if (!drag) return;
    const b = boxes[selected];
    const mode = drag.mode;
    drag = null;
    if (mode !== "move" && (b.width < MIN_SIDE || b.height < MIN_SIDE)) {
      if (mode === "draw") {
        boxes.splice(selected, 1);
        select(-1);
        return;
      }
      Object.assign(b, { width: Math.max(b.width, MIN_SIDE), height: Math.max(b.height, MIN_SIDE) });
    }
    changed();
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);

  list.addEventListener("click", (event) => {
    const item = event.target.closest("li");
    if (item) {
      select(Number(item.dataset.index));
      stage.focus({ preventScroll: true });
    }
  });

  // ---------------------------------------------------------------- the keyboard (on the focused image)
  const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  stage.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Tab" && boxes.length) {
      // Tab walks the boxes, then lets the focus leave the image (no keyboard trap).
      const next = event.shiftKey ? (selected < 0 ? boxes.length - 1 : selected - 1) : selected + 1;
      if (next >= 0 && next < boxes.length) {
        event.preventDefault();
        select(next);
      } else {
        select(-1);
      }
      return;
    }
    if (event.key === "Escape") {
      select(-1);
      return;
    }
    if (selected < 0) return;
    const b = boxes[selected];
    if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      boxes.splice(selected, 1);
      selected = -1;
      changed();
    } else if (event.key in ARROWS) {
      event.preventDefault();
      const [dx, dy] = ARROWS[event.key].map((v) => v * (event.shiftKey ? 10 : 1));
      b.left = clamp(b.left + dx, 0, W - b.width);
      b.top = clamp(b.top + dy, 0, H - b.height);
      changed();
    }
  });

  boxLabel.addEventListener("input", () => {
    const label = boxLabel.value.trim();
    if (selected >= 0 && label) {
      boxes[selected].label = label;
      changed();
    }
  });
  labelInput.addEventListener("input", () => say("Unsaved changes"));

  // ---------------------------------------------------------------- saving
  async function save() {
    if (saving) return; // one save at a time: the next one sends the entry as it is then
    saving = true;
    const labels = labelInput.value.split(",").map((v) => v.trim()).filter(Boolean);
    say("Saving…");
    saveButton.disabled = true;
    try {
      const answer = await fetch(data.save, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ ref: data.ref, labels, boxes }),
      });
      const body = await answer.json();
      say(body.message, !answer.ok);
    } catch (error) {
      say(`Not saved: ${error.message}`, true);
    } finally {
      saving = false;
      saveButton.disabled = false;
    }
  }

  document.getElementById("entry-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select");
    if ((event.key === "s" || event.key === "S") && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      save();
    } else if (event.key === "s" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      save();
    }
  });

  document.getElementById("image").addEventListener("error", () => say("The image cannot be shown.", true));
  window.addEventListener("resize", render);
  if (!data.width) say("The image cannot be read: boxes cannot be drawn.", true);
  render();
})();
