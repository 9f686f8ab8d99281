// The version page (console/version_pages.py): the live progress from the server-sent events, start/stop buttons
// following the status, trying a photo, copying the commands. Data arrives in #version-data (no inline script).
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("version-data").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const byId = (id) => document.getElementById(id);
  const trained = new Set(data.trained);
  let updates = 0;
  let status = data.progress.status;

  // --- progress ---------------------------------------------------------------------------------------------------
  const CHART = { left: 40, right: 590, top: 10, bottom: 190 };

  function points(rows, value, low, high) {
    const span = Math.max(1, rows.length - 1);
    const out = [];
    rows.forEach((row, i) => {
      const v = value(row);
      if (v === null || v === undefined) return;
      const x = rows.length === 1 ? CHART.left : CHART.left + (i / span) * (CHART.right - CHART.left);
      const y = CHART.bottom - ((v - low) / Math.max(high - low, 1e-9)) * (CHART.bottom - CHART.top);
      out.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    });
    return out.join(" ");
  }

  function drawChart(rows) {
    const losses = rows.flatMap((r) => [r.loss, r.val_loss]).filter((v) => v !== null);
    const lossMax = losses.length ? Math.max(...losses) : 1;
    byId("loss-line").setAttribute("points", points(rows, (r) => r.loss, 0, lossMax));
    byId("val-loss-line").setAttribute("points", points(rows, (r) => r.val_loss, 0, lossMax));
    const monitored = rows.map((r) => r.monitor).filter((v) => v !== null);
    // A metric within 0-1 (AUC, accuracy, Dice) is drawn on that scale; a loss on its own range.
    const inUnit = monitored.every((v) => v >= 0 && v <= 1);
    const low = inUnit ? 0 : Math.min(...monitored, 0);
    const high = inUnit ? 1 : Math.max(...monitored, 1e-9);
    byId("monitor-line").setAttribute("points", monitored.length ? points(rows, (r) => r.monitor, low, high) : "");
    byId("monitor-name").textContent = rows.length && rows[0].monitor_name ? rows[0].monitor_name : "";
    byId("loss-max").textContent = losses.length ? lossMax.toPrecision(3) : "";
    byId("epochs-axis").textContent = rows.length ? `epoch ${rows.length}` : "";
  }

  function duration(seconds) {
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function showChoices(choices) {
    const body = byId("recipe-choices").tBodies[0];
    if (!choices.length || body.rows.length === choices.length) return;
    body.replaceChildren(...choices.map((c) => {
      const tr = document.createElement("tr");
      const key = document.createElement("code");
      key.textContent = c.key;
      [key, c.value, c.reason].forEach((value) => {
        const td = document.createElement("td");
        td.append(value);
        tr.append(td);
      });
      return tr;
    }));
    byId("no-choices").hidden = true;
  }

  function show(p) {
    status = p.status;
    byId("status").textContent = p.status;
    byId("status-message").textContent = p.message;
    byId("epoch").textContent = p.epochs ? `Epoch ${p.epoch} of ${p.epochs}` : "";
    byId("stage").textContent = p.stage;
    byId("time-left").textContent = p.seconds_left === null ? "" : `about ${duration(p.seconds_left)} of training left`;
    byId("job-log").textContent = p.log.join("\n");
    byId("job-log").hidden = !p.log.length;
    byId("evaluation").hidden = !trained.has(p.status);
    byId("start-form").hidden = !["TRAINING_COMPLETED", "STOPPED", "FAILED"].includes(p.status);
    byId("stop-form").hidden = !["STARTING", "RUNNING"].includes(p.status);
    drawChart(p.rows);
    showChoices(p.choices);
  }

  show(data.progress);
  const source = new EventSource(data.events);
  source.addEventListener("progress", (event) => {
    updates += 1;
    byId("progress-updates").textContent = String(updates);
    show(JSON.parse(event.data));
  });
  // The stream ends when the version settles; closing stops EventSource from reconnecting.
  source.addEventListener("end", (event) => {
    source.close();
    const info = JSON.parse(event.data);
    if (info.message) byId("status-message").textContent = info.message; // the version was deleted meanwhile
  });

  // --- try a photo ------------------------------------------------------------------------------------------------
  const message = byId("try-message");

  function say(text, isError) {
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  function drawAnswer(labels, url) {
    const img = byId("photo-preview");
    const svg = byId("photo-boxes");
    const body = byId("detections").tBodies[0];
    svg.replaceChildren();
    img.onload = () => {
      svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
      labels.filter((l) => l.Geometry).forEach((l) => {
        const box = l.Geometry.BoundingBox;
        const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
        rect.setAttribute("x", box.Left * img.naturalWidth);
        rect.setAttribute("y", box.Top * img.naturalHeight);
        rect.setAttribute("width", box.Width * img.naturalWidth);
        rect.setAttribute("height", box.Height * img.naturalHeight);
        const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
        title.textContent = `${l.Name} ${l.Confidence.toFixed(1)}%`;
        rect.append(title);
        svg.append(rect);
      });
    };
    img.src = url;
    body.replaceChildren(...labels.map((l) => {
      const tr = document.createElement("tr");
      [l.Name, `${l.Confidence.toFixed(1)}%`].forEach((value) => {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      });
      return tr;
    }));
    byId("tried").hidden = false;
  }

  // PNG and JPEG by their first bytes, as the service checks them: a refusal found here costs no request.
  async function isImage(file) {
    const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
    const png = [0x89, 0x50, 0x4e, 0x47].every((byte, i) => head[i] === byte);
    return png || (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff);
  }

  async function tryPhoto(file) {
    if (!(await isImage(file))) {
      say(`${file.name} is not an image (PNG or JPEG)`, true);
      return;
    }
    if (status !== "RUNNING") {
      say(`${data.version} is ${status}: start it and wait until it is RUNNING to try a photo`, true);
      return;
    }
    say(`Trying ${file.name}…`);
    let answer;
    try {
      const minimum = byId("min-confidence").value.trim();
      const query = `name=${encodeURIComponent(file.name)}` + (minimum ? `&min_confidence=${encodeURIComponent(minimum)}` : "");
      const response = await fetch(`${data.detect}?${query}`, {
        method: "POST", body: file, headers: { "X-CSRF-Token": csrf, "Content-Type": "application/octet-stream" },
      });
      answer = await response.json();
      if (!response.ok) {
        say(answer.message, true);
        return;
      }
    } catch (error) {
      say(`The service did not answer: ${error}`, true);
      return;
    }
    const labels = answer.CustomLabels;
    say(labels.length ? `${file.name}: ${labels.length} label(s)` : `${file.name}: no label above the threshold`);
    drawAnswer(labels, URL.createObjectURL(file));
  }

  byId("photo").addEventListener("change", (event) => {
    if (event.target.files.length) tryPhoto(event.target.files[0]);
  });
  const drop = byId("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) tryPhoto(event.dataTransfer.files[0]);
  });

  // --- copy the commands ------------------------------------------------------------------------------------------
  document.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = byId(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        const range = document.createRange(); // no clipboard permission: select it for Ctrl+C
        range.selectNodeContents(byId(button.dataset.copy));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  });
})();
