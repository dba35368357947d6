// The cascor page: runs on the left, one run on the right, live over its WebSocket stream.
// No framework; uPlot (MIT, shipped beside this file) draws the curves. `window.cascor` holds
// the page's state (the browser test reads it).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const S = (window.cascor = {
  runs: [], selected: null, status: null, history: null, info: {}, snapshots: [],
  messages: 0, installs: 0, outputEpochs: 0, boundaryEpoch: null, errors: [],
});

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (TOKEN) headers["X-Cascor-Token"] = TOKEN;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!response.ok) throw new Error((body && body.error) || response.statusText);
  return body;
}

function say(text) { $("message").textContent = text || ""; if (text) S.errors.push(text); }

// ---- runs list -----------------------------------------------------------------------------
async function refreshRuns() {
  try {
    const { runs } = await api("/api/runs");
    S.runs = runs;
    $("conn").textContent = "connected";
    const ul = $("runs");
    ul.replaceChildren(...runs.slice().reverse().map((r) => {
      const li = document.createElement("li");
      li.dataset.run = r.id;
      li.className = r.id === S.selected ? "selected" : "";
      const name = document.createElement("span");
      name.textContent = r.id;
      const units = (r.live && r.live.hidden_units) ?? (r.summary && r.summary.hidden_units);
      const spec = r.spec || {};
      name.title = [spec.dataset || spec.data || "", spec.preset || "", spec.seed != null ? "seed " + spec.seed : "",
                    units != null ? units + " units" : ""].filter(Boolean).join(", ");
      const st = document.createElement("span");
      st.className = "status " + r.status;
      st.textContent = r.status;
      li.append(name, st);
      li.onclick = () => select(r.id);
      return li;
    }));
    const mine = runs.find((r) => r.id === S.selected);
    if (mine && !S.liveStatus) setStatus(mine.status, mine.error);
  } catch (e) {
    $("conn").textContent = "server unreachable: " + e.message;
  }
}

async function loadForm() {
  const info = await api("/api/info");
  const ds = $("f-dataset");
  ds.replaceChildren(...info.datasets.map((d) => new Option(d, d)));
  ds.value = "two-spirals";
  const ps = $("f-preset");
  ps.replaceChildren(...info.presets.map((p) => new Option(p, p)));
  ps.value = "default";
}

$("new-run").onsubmit = async (event) => {
  event.preventDefault();
  say("");
  try {
    const spec = { preset: $("f-preset").value, seed: Number($("f-seed").value || 0),
                   checkpoint_every: Number($("f-every").value || 0), config: {} };
    const file = $("f-file").files[0];
    if (file) {
      const up = await api("/api/uploads?filename=" + encodeURIComponent(file.name), { method: "POST", body: file });
      spec.upload = up.upload;
    } else {
      spec.dataset = $("f-dataset").value;
    }
    if ($("f-max-units").value) spec.config.max_units = Number($("f-max-units").value);
    const held = $("f-val").value;  // empty: the CLI's default; 0: none; else the share
    if (held !== "" && Number(held) > 0) spec.validation_fraction = Number(held);
    else if (held !== "") spec.early_stopping = false;
    const run = await api("/api/runs", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(spec) });
    await refreshRuns();
    select(run.id);
  } catch (e) { say(e.message); }
};

// ---- one run --------------------------------------------------------------------------------
let ws = null;
let renderPending = false;
let boundaryTimer = null;
let lastBoundary = 0;

function select(id) {
  if (ws) { ws.onclose = null; ws.close(); ws = null; }
  Object.assign(S, { selected: id, history: null, info: {}, messages: 0, installs: 0, outputEpochs: 0,
                     boundaryEpoch: null, liveStatus: false });
  $("detail").hidden = false;
  $("run-title").textContent = id;
  const r = S.runs.find((x) => x.id === id);
  const spec = (r && r.spec) || {};
  $("run-spec").textContent = [spec.dataset || spec.data, spec.preset, spec.seed != null ? "seed " + spec.seed : null,
                               r && r.parent && r.parent.run ? "branched from " + r.parent.run + "/" + r.parent.snapshot : null]
                              .filter(Boolean).join(" · ");
  say("");
  for (const li of $("runs").children) li.className = li.dataset.run === id ? "selected" : "";
  connect(id);
}

function connect(id) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "";
  ws = new WebSocket(`${proto}//${location.host}/api/runs/${encodeURIComponent(id)}/stream${q}`);
  ws.onmessage = (event) => { S.messages += 1; onMessage(JSON.parse(event.data)); };
  ws.onclose = () => { if (S.selected === id) setTimeout(() => S.selected === id && connect(id), 1000); };
}

function emptyHistory() {
  return { epochs: { epoch: [], phase: [], hidden_units: [], true_error: [], error_bits: [], best_score: [] },
           units: { epoch: [], candidate: [], score: [], activation: [], steepness: [] },
           scores: { epoch: [], hidden_units: [], train_loss: [], train_score: [], val_loss: [], val_score: [] } };
}

function extend(into, rows) {
  for (const group of ["epochs", "units", "scores"]) {
    for (const [key, values] of Object.entries(rows[group] || {})) {
      (into[group][key] = into[group][key] || []).push(...values);
    }
  }
}

function onMessage(m) {
  if (m.type === "history") {
    S.history = m.history || emptyHistory();
    S.info = Object.assign({}, m.saved || {}, m.live || {});
    setStatus(m.status, m.error);
    setSnapshots((m.snapshots || []).map((s) => s.name));
    if (S.snapshots.length) boundarySoon(0);
  } else if (m.type === "open") {
    Object.assign(S.info, m);
  } else if (m.type === "rows") {
    if (m.reset || !S.history) S.history = emptyHistory();
    extend(S.history, m);
    Object.assign(S.info, { epoch: m.epoch, phase: m.phase, hidden_units: m.hidden_units,
                            best_n_units: m.best_n_units });
    if ((m.units.epoch || []).length) boundarySoon(1500);
  } else if (m.type === "state") {
    S.liveStatus = true;
    setStatus(m.status, m.error);
    refreshRuns();
    if (m.status !== "running" && S.snapshots.length) boundarySoon(300);
  } else if (m.type === "snapshots") {
    const first = !S.snapshots.length;
    setSnapshots(m.snapshots);
    if (first && m.snapshots.length) boundarySoon(0);
  } else if (m.type === "end") {
    Object.assign(S.info, { epoch: m.epoch, hidden_units: m.hidden_units, best_n_units: m.best_n_units });
  }
  scheduleRender();
}

function setStatus(status, error) {
  S.status = status;
  const el = $("run-status");
  el.textContent = status || "";
  el.className = "status " + (status || "");
  const live = ["running", "queued"].includes(status);
  $("b-pause").disabled = !live;
  $("b-stop").disabled = !live && status !== "paused";
  $("b-resume").disabled = live || ["finished", "pausing", "stopping"].includes(status);
  if (status === "failed" && error) say(error);
}

function setSnapshots(names) {
  S.snapshots = names;
  const sel = $("snapshots");
  const keep = sel.value;
  sel.replaceChildren(...names.slice().reverse().map((n) => new Option(n, n)));
  if (names.includes(keep)) sel.value = keep;
  updateDownload();
}

function updateDownload() {
  const name = $("snapshots").value;
  const a = $("b-download");
  a.href = name ? `/api/runs/${encodeURIComponent(S.selected)}/snapshots/${encodeURIComponent(name)}` : "#";
}
$("snapshots").onchange = updateDownload;

async function act(path, body) {
  say("");
  try {
    const options = { method: "POST" };
    if (body) { options.headers = { "Content-Type": "application/json" }; options.body = JSON.stringify(body); }
    return await api(path, options);
  } catch (e) { say(e.message); return null; }
}

$("b-pause").onclick = () => act(`/api/runs/${S.selected}/pause`);
$("b-resume").onclick = () => act(`/api/runs/${S.selected}/resume`);
$("b-stop").onclick = () => act(`/api/runs/${S.selected}/stop`);
$("b-branch").onclick = async () => {
  const snapshot = $("snapshots").value;
  if (!snapshot) { say("no snapshot to branch from yet"); return; }
  const body = { snapshot };
  if ($("branch-units").value) body.max_units = Number($("branch-units").value);
  const run = await act(`/api/runs/${S.selected}/branch`, body);
  if (run) { await refreshRuns(); select(run.id); }
};

// ---- drawing ----------------------------------------------------------------------------------
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => { renderPending = false; render(); }, 120);  // at most ~8 redraws a second
}

let curvePlot = null;
let candPlot = null;

function render() {
  const h = S.history;
  if (!h) return;
  const e = h.epochs;
  const xs = [], err = [], val = [];
  const valAt = new Map();
  h.scores.epoch.forEach((ep, i) => valAt.set(ep, h.scores.val_score[i] ?? h.scores.train_score[i]));
  for (let i = 0; i < e.epoch.length; i++) {
    if (e.phase[i] !== 0) continue;
    xs.push(e.epoch[i]);
    err.push(e.true_error[i] > 0 ? e.true_error[i] : null);
    val.push(valAt.has(e.epoch[i]) ? valAt.get(e.epoch[i]) : null);
  }
  S.outputEpochs = xs.length;
  S.installs = h.units.epoch.length;
  const last = (a) => (a.length ? a[a.length - 1] : null);
  $("epoch").textContent = S.info.epoch ?? last(e.epoch) ?? 0;
  $("phase").textContent = S.info.phase ?? "-";
  $("units").textContent = S.info.hidden_units ?? S.installs;
  $("best").textContent = S.info.best_n_units ?? "-";
  const lastErr = last(err);
  $("error").textContent = lastErr == null ? "-" : lastErr.toPrecision(4);
  const held = last(h.scores.val_score);
  const vs = held ?? last(h.scores.train_score);
  $("vscore-label").textContent = held != null ? "held-out score" : "training score";
  $("vscore").textContent = vs == null ? "-" : vs.toFixed(4);
  drawCurve(xs, err, val, h.units.epoch);
  drawCandidates(h.units.score);
  drawCascade();
  const ol = $("installs");
  while (ol.children.length < h.units.epoch.length) {
    const i = ol.children.length;
    const li = document.createElement("li");
    li.textContent = `${h.units.activation[i]} at epoch ${h.units.epoch[i]} (score ${Number(h.units.score[i]).toPrecision(3)})`;
    ol.append(li);
  }
  while (ol.children.length > h.units.epoch.length) ol.lastChild.remove();
}

function width(el) { return Math.max(300, el.parentElement.clientWidth - 20); }

function drawCurve(xs, err, val, installs) {
  const data = [xs, err, val];
  if (!curvePlot) {
    const el = $("curve");
    curvePlot = new uPlot({
      width: width(el), height: 240,
      scales: { x: { time: false }, y: { distr: 3 }, s: { range: [0, 1] } },
      axes: [{ label: "epoch" }, { label: "error" }, { scale: "s", side: 1, label: "score", grid: { show: false } }],
      series: [{ label: "epoch" }, { label: "error", stroke: "#2f6fde", width: 1 },
               { label: "score", scale: "s", stroke: "#d9822b", width: 2, spanGaps: true,
                 points: { show: true, size: 5 } }],
      hooks: { draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "rgba(60,160,90,0.55)";
        ctx.lineWidth = 1;
        for (const ep of S.history ? S.history.units.epoch : []) {
          const x = Math.round(u.valToPos(ep, "x", true)) + 0.5;
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        }
        ctx.restore();
      }] },
    }, data, el);
  } else {
    curvePlot.setData(data);
  }
}

function drawCandidates(scores) {
  const data = [scores.map((_, i) => i + 1), scores.map(Number)];
  if (!candPlot) {
    const el = $("cand");
    candPlot = new uPlot({
      width: width(el), height: 240, scales: { x: { time: false } },
      axes: [{ incrs: [1, 2, 5, 10, 20, 50, 100], label: "unit" }, {}],
      series: [{ label: "unit" }, { label: "score", stroke: "#8e44ad", width: 2, points: { show: true, size: 6 } }],
    }, data, el);
  } else {
    candPlot.setData(data);
  }
}

const ACT_COLOURS = { sigmoid: "#2f6fde", asymmetric_sigmoid: "#2f6fde", tanh: "#2f6fde", gaussian: "#d9822b",
                      sin: "#8e44ad", cos: "#8e44ad", cos_symmetric: "#8e44ad", linear: "#777" };

function drawCascade() {
  // Fahlman's diagram: inputs as rows at the bottom-left, each hidden unit a column that sees
  // every row below it, the outputs at the right see everything.
  const svg = $("cascade");
  const nIn = (S.info.n_inputs ?? 2) + 1;  // + bias
  const units = S.history ? S.history.units.activation : [];
  const hidden = Math.min(units.length, S.info.hidden_units ?? units.length);
  const nOut = S.info.n_outputs ?? 1;
  const W = 400, H = 260, rows = nIn + hidden, cols = hidden + 1;
  const dy = Math.min(22, (H - 30) / Math.max(rows, 1)), dx = Math.min(40, (W - 90) / Math.max(cols, 1));
  const y = (r) => H - 15 - r * dy, x = (c) => 60 + c * dx;
  const parts = [];
  for (let r = 0; r < rows; r++) {
    parts.push(`<line x1="20" y1="${y(r)}" x2="${x(cols - 1) + 10}" y2="${y(r)}" stroke="#cfd6e4"/>`);
    const label = r === 0 ? "bias" : r < nIn ? "x" + r : "";
    if (label) parts.push(`<text x="2" y="${y(r) + 4}" font-size="9" fill="#66708a">${label}</text>`);
  }
  for (let k = 0; k < hidden; k++) {
    const cx = x(k), top = y(nIn + k);
    parts.push(`<line x1="${cx}" y1="${y(0)}" x2="${cx}" y2="${top}" stroke="#9aa6bf"/>`);
    const colour = ACT_COLOURS[units[k]] || "#2f6fde";
    parts.push(`<rect class="unit" x="${cx - 6}" y="${top - 6}" width="12" height="12" rx="2" fill="${colour}">` +
               `<title>unit ${k + 1}: ${units[k]}</title></rect>`);
  }
  const ox = x(cols - 1) + 10;
  for (let o = 0; o < nOut; o++) {
    const oy = 20 + o * 18;
    parts.push(`<line x1="${ox}" y1="${y(0)}" x2="${ox}" y2="${oy}" stroke="#9aa6bf"/>`);
    parts.push(`<circle cx="${ox}" cy="${oy}" r="7" fill="#17663a"><title>output ${o + 1}</title></circle>`);
  }
  svg.innerHTML = parts.join("");
}

function boundarySoon(delay) {
  clearTimeout(boundaryTimer);
  const wait = Math.max(delay, 1500 - (Date.now() - lastBoundary));  // throttled
  boundaryTimer = setTimeout(drawBoundary, wait);
}

const CLASS_COLOURS = [[47, 111, 222], [217, 130, 43], [23, 102, 58], [142, 68, 173], [155, 28, 28], [90, 90, 90]];

async function drawBoundary() {
  lastBoundary = Date.now();
  const id = S.selected;
  if (!id || (S.info.n_inputs != null && S.info.n_inputs !== 2)) { $("boundary-info").textContent = "(2-D problems only)"; return; }
  let b;
  try { b = await api(`/api/runs/${encodeURIComponent(id)}/boundary?size=64`); }
  catch (e) { $("boundary-info").textContent = "(" + e.message + ")"; return; }
  if (id !== S.selected) return;
  const canvas = $("boundary"), ctx = canvas.getContext("2d");
  const img = ctx.createImageData(b.size, b.size);
  const k = Math.max(1, b.classes.length - 1);
  for (let i = 0; i < b.size; i++) {
    for (let j = 0; j < b.size; j++) {
      const v = b.values[i * b.size + j];
      let c;
      if (b.classes.length > 2) c = CLASS_COLOURS[Math.round(v * k) % CLASS_COLOURS.length].map((t) => 255 - (255 - t) * 0.45);
      else c = CLASS_COLOURS[0].map((t, n) => 255 - ((255 - t) * (1 - v) + (255 - CLASS_COLOURS[1][n]) * v) * 0.55);
      const p = ((b.size - 1 - i) * b.size + j) * 4;  // row 0 is the lowest y
      img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2]; img.data[p + 3] = 255;
    }
  }
  const off = document.createElement("canvas");
  off.width = off.height = b.size;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  const sx = (v) => ((v - b.x[0]) / (b.x[1] - b.x[0])) * canvas.width;
  const sy = (v) => canvas.height - ((v - b.y[0]) / (b.y[1] - b.y[0])) * canvas.height;
  for (let n = 0; n < b.points.x.length; n++) {
    const c = CLASS_COLOURS[b.points.label[n] % CLASS_COLOURS.length];
    ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
    ctx.beginPath(); ctx.arc(sx(b.points.x[n]), sy(b.points.y[n]), 2.2, 0, 7); ctx.fill();
  }
  S.boundaryEpoch = b.epoch;
  $("boundary-info").textContent = `(${b.snapshot}, ${b.hidden_units} units)`;
}

loadForm().catch((e) => say(e.message));
refreshRuns();
setInterval(refreshRuns, 2000);
