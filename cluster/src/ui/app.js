// flinkw web UI: plain JavaScript, no build step, no downloads.
//
// Routes (in the URL fragment): #/ (jobs), #/job/ID, #/deploy. A fragment
// `#token=T` (e.g. from `flinkw run --ui`) is stored once and removed from
// the address bar. Every API call sends the token from sessionStorage; a
// 401 brings back the token form. The page polls the API every second.
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "flinkw-token";
const $ = (sel) => document.querySelector(sel);

// ---- token ---------------------------------------------------------------

function takeTokenFromFragment() {
  const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  const rest = location.hash.replace(/(^#|&)token=[^&]*/, "$1").replace(/^#&/, "#");
  history.replaceState(null, "", rest === "#" ? "#/" : rest);
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body, contentType) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const res = await fetch(path, { method, headers, body });
  const text = await res.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch (_) { value = text; }
  if (!res.ok) {
    const msg = value && value.error ? value.error : String(text || res.statusText);
    if (res.status === 401) showLogin(msg);
    throw new ApiError(res.status, `${msg} (HTTP ${res.status})`);
  }
  return value;
}

// ---- formatting ----------------------------------------------------------

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
function num(n) { return n == null ? "–" : Math.round(n).toLocaleString("en-US"); }
function rate(n) { return n == null ? "–" : (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1)); }
function pct(x) { return x == null ? "–" : (x * 100).toFixed(0) + " %"; }
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function secs(s) {
  if (s == null) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.floor(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–"; }
function watermark(ms) {
  if (ms == null) return "–";
  const lag = (Date.now() - ms) / 1000;
  return `${when(ms)} (lag ${secs(Math.max(lag, 0))})`;
}
function parallelism(job) {
  const p = (job.placement || []).map((t) => t.length);
  if (p.length) return Math.max(...p);
  const c = (job.request && job.request.config || []).find((s) => s.startsWith("parallelism="));
  return c ? Number(c.split("=")[1]) : 1;
}

// ---- views ---------------------------------------------------------------

let timer = null;
let generation = 0;

function show(id) {
  for (const s of ["login", "jobs", "job", "deploy"]) $("#" + s).hidden = s !== id;
}

function showLogin(message) {
  show("login");
  $("#login-error").textContent = message || "";
  clearTimeout(timer);
}

function route() {
  takeTokenFromFragment();
  clearTimeout(timer);
  generation++;
  if (!token()) return showLogin("");
  const h = location.hash || "#/";
  let m;
  if ((m = h.match(/^#\/job\/([^/?&]+)/))) return poll(() => renderJob(decodeURIComponent(m[1])));
  if (h.startsWith("#/deploy")) { show("deploy"); return; }
  return poll(renderJobs);
}

function poll(render) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await render();
      $("#live").classList.add("on");
    } catch (e) {
      $("#live").classList.remove("on");
      if (e.status === 401) return;
      console.error(e);
    }
    if (mine === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

async function renderJobs() {
  const jobs = await api("GET", "/v1/jobs");
  show("jobs");
  const body = $("#job-table tbody");
  body.innerHTML = jobs.slice().reverse().map((j) => `
    <tr class="clickable" data-job="${esc(j.id)}">
      <td><a href="#/job/${encodeURIComponent(j.id)}">${esc(j.id)}</a></td>
      <td>${esc(j.name)}</td>
      <td><span class="state ${esc(j.state.state)}">${esc(j.state.state)}</span></td>
      <td>${esc(j.request && j.request.tenant || "–")}</td>
      <td class="num">${secs(j.seconds)}</td>
      <td class="num">${parallelism(j)}</td>
      <td class="num">${j.attempt + 1}</td>
    </tr>`).join("");
  for (const tr of body.querySelectorAll("tr")) {
    tr.onclick = () => { location.hash = "#/job/" + encodeURIComponent(tr.dataset.job); };
  }
  $("#jobs-empty").hidden = jobs.length > 0;
}

let currentJob = null;

async function renderJob(id) {
  const job = await api("GET", "/v1/jobs/" + encodeURIComponent(id));
  currentJob = job;
  show("job");
  const state = job.state.state;
  $("#job-title").textContent = `${job.id} · ${job.name}`;
  const st = $("#job-state");
  st.textContent = state;
  st.className = "state " + state;
  const tenant = job.request && job.request.tenant ? ` · tenant ${job.request.tenant}` : "";
  $("#job-facts").textContent =
    `attempt ${job.attempt + 1} · parallelism ${parallelism(job)} · up ${secs(job.uptime_seconds)}` +
    ` · submitted ${secs(job.seconds)} ago${tenant}` + (job.savepoint ? ` · savepoint ${job.savepoint}` : "");
  $("#job-error").textContent = job.state.error || "";
  const live = ["running", "scheduling", "created", "restarting", "failing"].includes(state);
  $("#cancel").disabled = !live;
  $("#savepoint").disabled = state !== "running" || !job.checkpointing;
  $("#rescale").disabled = state !== "running" || !job.checkpointing;
  drawGraph(job.graph || { vertices: [], edges: [] });
  renderVertices(job.graph ? job.graph.vertices : []);
  renderCheckpoints(job.checkpoints || [], job.checkpointing);
  renderExceptions(job.exceptions || []);
  try {
    const lines = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/logs?limit=200`);
    const pre = $("#logs");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.map((l) => {
      const where = l.subtask ? ` t${l.subtask[0]}/s${l.subtask[1]}` : "";
      return `${when(l.at_ms)} ${l.level.padEnd(5)} ${l.worker}${where} ${l.target}: ${l.message}`;
    }).join("\n") || "(no log lines yet)";
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    if (e.status === 401) throw e;
  }
}

function vertexName(v) { return v.operators.map((o) => o.name).join(" → "); }

function renderVertices(vertices) {
  $("#vertex-table tbody").innerHTML = vertices.map((v) => `
    <tr data-vertex="${v.index}">
      <td>${v.index}</td>
      <td>${esc(vertexName(v))}</td>
      <td class="num">${v.parallelism}</td>
      <td class="num" data-metric="records-in" data-value="${v.records_in}">${num(v.records_in)}</td>
      <td class="num" data-metric="records-in-rate">${rate(v.rates.records_in_per_s)}</td>
      <td class="num" data-metric="records-out" data-value="${v.records_out}">${num(v.records_out)}</td>
      <td class="num" data-metric="records-out-rate">${rate(v.rates.records_out_per_s)}</td>
      <td class="num" data-metric="busy">${pct(v.rates.busy)}</td>
      <td class="num" data-metric="backpressure">${pct(v.rates.backpressured)} (max ${pct(v.max_backpressured)})</td>
      <td data-metric="watermark">${watermark(v.watermark)}</td>
      <td class="num" data-metric="guest">${secs(v.guest_seconds)}</td>
      <td class="num" data-metric="cpu">${secs(v.cpu_seconds)}</td>
      <td class="num" data-metric="memory">${bytes(v.memory_bytes)}</td>
    </tr>`).join("");
  renderLatency(vertices);
}

function ms(x) { return x == null ? "–" : (x >= 100 ? Math.round(x) : x.toFixed(1)) + " ms"; }

// Latency markers: per sink vertex and source vertex, the worst subtask's
// quantiles of its newest markers.
function renderLatency(vertices) {
  const rows = [];
  for (const v of vertices) {
    for (const l of v.latency || []) {
      const source = vertices.find((s) => s.index === l.source_task);
      rows.push({ v, l, source: source ? vertexName(source) : `task ${l.source_task}` });
    }
  }
  $("#latency-summary").textContent = rows.length ? "" :
    "No latency markers: set metrics.latency.interval-ms (e.g. 1000) when deploying.";
  $("#latency-table").hidden = rows.length === 0;
  $("#latency-table tbody").innerHTML = rows.map(({ v, l, source }) => `
    <tr data-sink="${v.index}" data-source="${l.source_task}">
      <td>${esc(source)}</td>
      <td>${esc(vertexName(v))}</td>
      <td class="num" data-metric="markers">${num(l.markers)}</td>
      <td class="num" data-metric="p50">${ms(l.p50_ms)}</td>
      <td class="num" data-metric="p95">${ms(l.p95_ms)}</td>
      <td class="num" data-metric="p99">${ms(l.p99_ms)}</td>
      <td class="num">${ms(l.max_ms)}</td>
    </tr>`).join("");
}

// Vertices in columns by depth (tasks come in topological order), edges
// as curves; chained operators are stacked inside one box.
function drawGraph(g) {
  const svg = $("#graph");
  const depth = new Map();
  for (const v of g.vertices) depth.set(v.index, 0);
  for (const v of g.vertices) {
    for (const e of g.edges.filter((e) => e.to === v.index)) {
      depth.set(v.index, Math.max(depth.get(v.index), (depth.get(e.from) || 0) + 1));
    }
  }
  const W = 240, GAP_X = 90, GAP_Y = 30, OP_H = 34, MET_H = 68, PAD = 20;
  const columns = new Map();
  const pos = new Map();
  for (const v of g.vertices) {
    const d = depth.get(v.index);
    const y = columns.get(d) || PAD;
    const h = v.operators.length * OP_H + MET_H;
    pos.set(v.index, { x: PAD + d * (W + GAP_X), y, h });
    columns.set(d, y + h + GAP_Y);
  }
  const width = PAD * 2 + (Math.max(0, ...depth.values()) + 1) * (W + GAP_X) - GAP_X;
  const height = Math.max(PAD * 2, ...[...columns.values()].map((y) => y - GAP_Y + PAD));
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  let out = "";
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    out += `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}" marker-end="url(#arrow)"/>`;
    const label = e.partitioning + (e.side_output ? ` (${e.side_output})` : "");
    out += `<text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 - 5}" text-anchor="middle">${esc(label)}</text>`;
  }
  for (const v of g.vertices) {
    const p = pos.get(v.index);
    const bp = v.max_backpressured;
    const cls = bp > 0.5 ? "bp-high" : bp > 0.1 ? "bp-mid" : "bp-low";
    out += `<g class="vertex ${cls}" data-vertex="${v.index}" transform="translate(${p.x},${p.y})">`;
    out += `<rect class="box" width="${W}" height="${p.h}"/>`;
    out += `<rect class="busy" x="1" y="${p.h - 5}" width="${Math.round((W - 2) * Math.min(1, v.rates.busy || 0))}" height="4"/>`;
    v.operators.forEach((o, i) => {
      const y = i * OP_H;
      if (i > 0) out += `<line class="sep" x1="8" x2="${W - 8}" y1="${y}" y2="${y}"/>`;
      out += `<text class="op" data-operator="${o.id}" x="10" y="${y + 16}">${esc(o.name.slice(0, 32))}</text>`;
      out += `<text class="kind" x="10" y="${y + 29}">${esc(o.kind)}</text>`;
    });
    const my = v.operators.length * OP_H;
    out += `<text class="metric" x="10" y="${my + 16}">×${v.parallelism} · in ${rate(v.rates.records_in_per_s)}/s · out ${rate(v.rates.records_out_per_s)}/s</text>`;
    out += `<text class="metric" x="10" y="${my + 32}">busy ${pct(v.rates.busy)} · backpressured ${pct(v.rates.backpressured)}</text>`;
    out += `<text class="metric" x="10" y="${my + 48}">watermark ${v.watermark == null ? "–" : "lag " + secs(Math.max(0, (Date.now() - v.watermark) / 1000))}</text>`;
    out += `</g>`;
  }
  svg.innerHTML = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7a8794"/></marker></defs>` + out;
}

function renderCheckpoints(list, enabled) {
  const done = list.filter((c) => c.status === "completed");
  const failed = list.filter((c) => c.status === "failed");
  $("#checkpoint-summary").textContent = !enabled
    ? "Checkpoints are off for this job (deploy it with a checkpoint folder)."
    : `${done.length} completed, ${failed.length} failed` +
      (done.length ? ` · newest completed: ${done[done.length - 1].id}` : "");
  $("#checkpoint-table tbody").innerHTML = list.slice().reverse().slice(0, 50).map((c) => `
    <tr data-checkpoint="${c.id}" data-status="${c.status}">
      <td>${c.id}${c.savepoint ? " (savepoint)" : ""}</td>
      <td>${c.attempt + 1}</td>
      <td class="status-${c.status}">${c.status}</td>
      <td>${when(c.triggered_at)}</td>
      <td class="num">${c.duration_ms} ms</td>
      <td class="num">${bytes(c.bytes)}</td>
      <td class="num">${c.alignment_ms} ms</td>
      <td class="num">${c.acknowledged}/${c.subtasks}</td>
      <td class="error">${esc(c.failure || "")}</td>
    </tr>`).join("");
}

function renderExceptions(list) {
  $("#exceptions").innerHTML = list.length === 0 ? `<p class="muted">None.</p>` :
    list.slice().reverse().map((e) => `
      <div class="exception">
        <strong>${when(e.at_ms)}</strong> · attempt ${e.attempt + 1} · ${esc(e.worker)}
        <pre>${esc(e.error)}</pre>
      </div>`).join("");
}

// ---- actions -------------------------------------------------------------

async function act(what, fn) {
  const out = $("#action-result");
  out.className = "muted";
  out.textContent = what + "…";
  try {
    out.textContent = await fn();
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function savepointAndWait(id) {
  await api("POST", `/v1/jobs/${encodeURIComponent(id)}/savepoint`);
  for (let i = 0; i < 1200; i++) {
    const s = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    if (s.savepoint) return s;
    if (["failed", "cancelled"].includes(s.state.state)) throw new Error(`job ${id} is ${s.state.state}`);
    await sleep(500);
  }
  throw new Error("no savepoint after 10 minutes");
}

async function rescale(id, p) {
  if (!(p >= 1)) throw new Error("the parallelism must be at least 1");
  const s = await savepointAndWait(id);
  const request = Object.assign({}, s.request);
  request.config = (request.config || []).filter((c) => !c.startsWith("parallelism="));
  request.config.push("parallelism=" + p);
  request.from_savepoint = s.savepoint;
  if (request.checkpoint_dir) {
    request.checkpoint_dir = request.checkpoint_dir + "-from-" + s.savepoint.split("/").pop();
  }
  delete request.tenant;
  const answer = await api("POST", "/v1/jobs", JSON.stringify(request));
  location.hash = "#/job/" + encodeURIComponent(answer.job);
  return `started again as ${answer.job} from ${s.savepoint}`;
}

/** Uploads plugin bytes and submits a job, as `flinkw deploy` does; returns the job id. */
async function deployBytes(wasm, config, restarts, checkpointDir) {
  const uploaded = await api("POST", "/v1/plugins", wasm, "application/wasm");
  const request = { plugin: uploaded.plugin, config, restarts };
  if (checkpointDir) request.checkpoint_dir = checkpointDir;
  const answer = await api("POST", "/v1/jobs", JSON.stringify(request));
  return answer.job;
}

async function onDeploy(ev) {
  ev.preventDefault();
  const file = $("#deploy-file").files[0];
  const status = $("#deploy-status");
  const error = $("#deploy-error");
  error.textContent = "";
  if (!file) { error.textContent = "choose a .wasm file"; return; }
  const config = $("#deploy-config").value.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const bad = config.find((l) => !l.includes("="));
  if (bad) { error.textContent = `config line "${bad}" is not key=value`; return; }
  status.textContent = `uploading ${file.name} (${bytes(file.size)})…`;
  try {
    const job = await deployBytes(await file.arrayBuffer(), config,
      Number($("#deploy-restarts").value || 0), $("#deploy-checkpoints").value.trim());
    status.textContent = `started ${job}`;
    location.hash = "#/job/" + encodeURIComponent(job);
  } catch (e) {
    status.textContent = "";
    error.textContent = e.message;
  }
}

function init() {
  $("#login-form").onsubmit = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value);
    $("#token").value = "";
    route();
  };
  $("#forget-token").onclick = () => { sessionStorage.removeItem(TOKEN_KEY); route(); };
  $("#deploy-form").onsubmit = onDeploy;
  $("#cancel").onclick = () => act("cancelling", async () => {
    const s = await api("POST", `/v1/jobs/${encodeURIComponent(currentJob.id)}/cancel`);
    return `job is ${s.state.state}`;
  });
  $("#savepoint").onclick = () => act("taking a savepoint", async () => {
    const s = await savepointAndWait(currentJob.id);
    return `stopped with savepoint ${s.savepoint}`;
  });
  $("#rescale").onclick = () => act("rescaling", () => rescale(currentJob.id, Number($("#rescale-to").value)));
  window.addEventListener("hashchange", route);
  route();
}

window.flinkw = { api, deployBytes, route };
init();
