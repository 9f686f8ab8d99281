// A version's evaluation page: thresholds, coverage, confusion cells, mistakes and the review queue, all computed
// here from the stored per-image confidences (GET .../evaluation/data.json), so moving a slider costs no request.
// The label metrics are evaluate/thresholds.py's label_metrics: one-vs-rest, an image counts as label k when its
// confidence for k is >= the threshold; undefined ratios are shown as "–" (Python's None).
"use strict";
(() => {
  const SHOWN = 60; // thumbnails per gallery; the rest are counted, not drawn
  const root = document.getElementById("evaluation");
  const config = JSON.parse(document.getElementById("evaluation-config").textContent);
  if (!root || !config.classifier) {
    if (root) root.dataset.ready = "true";
    return;
  }
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let state = null; // {labels, refs, truth: Int32Array, columns: [Float64Array], top: Int32Array, confidence}

  // Python's "%.3f": correctly rounded, ties to even. toFixed rounds ties up, and a tie at the 4th decimal is
  // exactly an odd number of sixteenths (0.0625, 0.1875, ...), the only decimals ending in 5 a double holds.
  function fmt(x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "–";
    const sixteenths = x * 16;
    if (Number.isInteger(sixteenths) && Math.abs(sixteenths % 2) === 1) {
      const low = Math.floor(x * 1000);
      return ((low % 2 === 0 ? low : low + 1) / 1000).toFixed(3);
    }
    return x.toFixed(3);
  }

  function labelMetrics(k, threshold) {
    const column = state.columns[k], truth = state.truth;
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < truth.length; i++) {
      const positive = truth[i] === k;
      if (column[i] >= threshold) {
        if (positive) tp++; else fp++;
      } else if (positive) fn++;
    }
    return {
      precision: tp + fp ? tp / (tp + fp) : null,
      recall: tp + fn ? tp / (tp + fn) : null,
      f1: tp + fn ? (2 * tp) / (2 * tp + fp + fn) : null, // scikit-learn's F1; None with no test image
    };
  }

  function cell(label, metric) {
    return root.querySelector(`td[data-metric="${metric}"][data-label="${CSS.escape(label)}"]`);
  }

  function showLabel(slider) {
    const label = slider.dataset.label, threshold = parseFloat(slider.value);
    const output = root.querySelector(`output.threshold-value[data-label="${CSS.escape(label)}"]`);
    if (output) output.textContent = fmt(threshold);
    if (!state) return;
    const k = state.labels.indexOf(label);
    if (k < 0) return;
    const values = labelMetrics(k, threshold);
    for (const metric of ["precision", "recall", "f1"]) {
      const td = cell(label, metric);
      if (td) td.textContent = fmt(values[metric]);
    }
  }

  const sliders = () => Array.from(root.querySelectorAll("input.threshold"));

  function setAll(value) {
    $("threshold-all-value").textContent = fmt(parseFloat(value));
    for (const slider of sliders()) {
      slider.value = value;
      showLabel(slider);
    }
  }

  // ------------------------------------------------------------------ galleries
  function thumbnail(i, caption) {
    const ref = state.refs[i];
    const figure = document.createElement("figure");
    figure.dataset.ref = ref;
    const link = document.createElement("a");
    link.href = `${config.image}?ref=${encodeURIComponent(ref)}`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = ref;
    img.width = img.height = 128;
    img.src = `${config.thumbnail}?ref=${encodeURIComponent(ref)}&size=128`;
    link.append(img);
    const text = document.createElement("figcaption");
    text.textContent = caption + " · ";
    const edit = document.createElement("a");  // the image's editor, in whichever dataset holds it now
    edit.className = "edit";
    edit.href = `${config.entry}?ref=${encodeURIComponent(ref)}`;
    edit.textContent = "Edit";
    text.append(edit);
    figure.append(link, text);
    return figure;
  }

  function describe(i) {
    const t = state.top[i];
    const predicted = t < 0 ? "no answer" : `${state.labels[t]} ${fmt(state.confidence[i])}`;
    return `true ${state.labels[state.truth[i]]} · predicted ${predicted}`;
  }

  function fill(container, indices, empty) {
    container.replaceChildren();
    if (!indices.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = empty;
      container.append(p);
      return;
    }
    const list = document.createDocumentFragment();
    for (const i of indices.slice(0, SHOWN)) list.append(thumbnail(i, describe(i)));
    container.append(list);
    if (indices.length > SHOWN) {
      const more = document.createElement("p");
      more.className = "muted more";
      more.textContent = `and ${indices.length - SHOWN} more`;
      container.append(more);
    }
  }

  const byConfidence = (descending) => (a, b) =>
    descending ? state.confidence[b] - state.confidence[a] : state.confidence[a] - state.confidence[b];

  function showCell(button) {
    const t = state.labels.indexOf(button.dataset.true), p = state.labels.indexOf(button.dataset.predicted);
    const found = [];
    for (let i = 0; i < state.truth.length; i++) if (state.truth[i] === t && state.top[i] === p) found.push(i);
    found.sort(byConfidence(true));
    const box = $("cell-images");
    const heading = document.createElement("h3");
    heading.textContent = `True ${button.dataset.true}, predicted ${button.dataset.predicted}: ${found.length} images`;
    const gallery = document.createElement("div");
    gallery.className = "gallery";
    fill(gallery, found, "No image.");
    box.replaceChildren(heading, gallery);
    for (const other of root.querySelectorAll("#confusion button")) other.classList.toggle("chosen", other === button);
  }

  function reviewIndices() {
    const threshold = parseFloat($("coverage").value), below = [];
    for (let i = 0; i < state.truth.length; i++) if (state.confidence[i] < threshold) below.push(i);
    return below.sort(byConfidence(false));
  }

  function showCoverage() {
    const threshold = parseFloat($("coverage").value);
    $("coverage-value").textContent = fmt(threshold);
    if (!state) return;
    let accepted = 0, right = 0;
    for (let i = 0; i < state.truth.length; i++) {
      if (state.confidence[i] >= threshold) {
        accepted++;
        if (state.top[i] === state.truth[i]) right++;
      }
    }
    const n = state.truth.length, sent = n - accepted;
    $("accepted-accuracy").textContent = fmt(accepted ? right / accepted : null);
    $("sent-to-human").textContent = `${sent} of ${n} images (${((100 * sent) / n).toFixed(1)}%)`;
    const review = reviewIndices();
    $("review-count").textContent = `${review.length} images`;
    fill($("review"), review, "No image is below the threshold.");
  }

  async function sendReview() {
    const message = $("review-message");
    const refs = Array.from(new Set(reviewIndices().map((i) => state.refs[i])));
    if (!refs.length) {
      message.textContent = "No image is below the threshold: nothing to send.";
      return;
    }
    message.textContent = `Sending ${refs.length} images…`;
    try {
      const answer = await fetch(config.review, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({refs}),
      });
      const text = await answer.text();
      let said = "", page = "";
      try { ({message: said = "", page = ""} = JSON.parse(text)); } catch (_) { said = ""; }
      message.textContent = said || `The review queue was not sent (HTTP ${answer.status}).`;
      if (answer.ok && page) {  // the folder's page, where Label Studio's export comes back into the datasets
        const link = document.createElement("a");
        link.href = page;
        link.id = "review-folder";
        link.textContent = " Open this review's page.";
        message.append(link);
      }
    } catch (error) {
      message.textContent = `The review queue was not sent: ${error.message}`;
    }
  }

  // ------------------------------------------------------------------ start
  function load(data) {
    const n = data.truth.length, k = data.labels.length;
    const columns = Array.from({length: k}, () => new Float64Array(n));
    const top = new Int32Array(n), confidence = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const row = data.probs[i];
      let best = -1, value = 0;
      for (let j = 0; j < k; j++) {
        columns[j][i] = row[j];
        if (row[j] > value) { best = j; value = row[j]; } // numpy's argmax: the first highest; all zeros: no answer
      }
      top[i] = best;
      confidence[i] = value;
    }
    state = {labels: data.labels, refs: data.refs, truth: Int32Array.from(data.truth), columns, top, confidence};
    for (const slider of sliders()) if (slider.value !== slider.dataset.assumed) showLabel(slider);
    showCoverage();
    const mistakes = [];
    for (let i = 0; i < n; i++) if (top[i] !== state.truth[i]) mistakes.push(i);
    fill($("mistakes"), mistakes.sort(byConfidence(true)), "No mistake on the test images.");
    root.dataset.ready = "true";
  }

  function failed(text) {
    const p = document.createElement("p");
    p.className = "message";
    p.setAttribute("role", "alert");
    p.textContent = text;
    root.prepend(p);
    root.dataset.ready = "true";
  }

  $("threshold-all").addEventListener("input", (event) => setAll(event.target.value));
  $("reset-thresholds").addEventListener("click", () => {
    for (const slider of sliders()) {
      slider.value = slider.dataset.assumed;
      showLabel(slider);
    }
  });
  root.addEventListener("input", (event) => {
    if (event.target.matches("input.threshold")) showLabel(event.target);
  });
  $("coverage").addEventListener("input", showCoverage);
  $("confusion").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-true]");
    if (button && state) showCell(button);
  });
  $("send-review").addEventListener("click", () => { if (state) sendReview(); });

  fetch(config.data, {credentials: "same-origin"})
    .then(async (answer) => {
      const body = await answer.json().catch(() => ({}));
      if (!answer.ok) throw new Error(body.message || `HTTP ${answer.status}`);
      return body;
    })
    .then(load)
    .catch((error) => failed(`The per-image results could not be loaded: ${error.message}`));
})();
