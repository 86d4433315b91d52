// The lstmgen web page: talks to the public JSON API of the server that serves it.
// No build step and no third-party code: plain DOM, fetch() and a small SSE reader
// (EventSource cannot send the Authorization header, so the stream is read with fetch).
"use strict";

const KEY_STORAGE = "lstmgen.apiKey";
const MODEL_STORAGE = "lstmgen.model";
const FINAL = new Set(["succeeded", "failed", "canceled", "timed_out", "expired"]);
const FIELDS = ["model", "seed", "temperature", "length", "top_k", "top_p", "random_seed"];
const MAX_STREAM_RETRIES = 6;

const $ = (id) => document.getElementById(id);

const state = {
  job: null, // the job shown in the output panel
  abort: null, // AbortController of the stream being followed
  textNode: null, // the Text node generated characters are appended to
  models: [],
};

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const key = apiKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function problemFrom(response) {
  let problem;
  try {
    problem = await response.json();
  } catch {
    problem = {};
  }
  if (typeof problem !== "object" || problem === null) problem = { detail: String(problem) };
  return new ApiError(response.status, problem, response.headers.get("Retry-After"));
}

// Paths are relative so the page also works behind a proxy that mounts it under a prefix.
async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { title: "Cannot reach the server" });
  }
  if (!response.ok) throw await problemFrom(response);
  return response.json();
}

function listOf(data, keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (Array.isArray(data?.[key])) return data[key];
  return [];
}

// ---------------------------------------------------------------- errors in plain words

function fieldErrors(problem) {
  let raw = problem.errors || problem.invalid_params || [];
  if (!Array.isArray(raw)) raw = Object.entries(raw).map(([field, message]) => ({ field, message }));
  const found = raw.map((item) => {
    if (typeof item !== "object" || item === null) return { field: "", message: String(item) };
    let field = item.field ?? item.name ?? item.pointer ?? item.loc ?? "";
    if (Array.isArray(field)) field = field.join(".");
    field = String(field).replace(/^\/|^body\./, "");
    return { field, message: String(item.message ?? item.reason ?? item.detail ?? item.msg ?? "") };
  });
  if (!found.length && problem.field) found.push({ field: problem.field, message: "" });
  return found;
}

function plainWords(error) {
  const problem = error.problem || {};
  const detail = problem.detail || "";
  switch (error.status) {
    case 0:
      return ["Cannot reach the server.", "Check that lstmgen is running, then try again."];
    case 401:
    case 403:
      return [
        apiKey() ? "The server did not accept this API key." : "This server needs an API key.",
        "Enter your key at the top right and press Save.",
      ];
    case 404:
      return [problem.title || "Not found.", detail || "It may have expired or belong to another key."];
    case 413:
      return ["The request is too large.", detail];
    case 429: {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again soon.";
      return ["The server is busy: its queue is full.", detail + wait];
    }
    case 503:
      return ["The service is unavailable right now.", detail || "Try again in a moment."];
    default:
      return [problem.title || `The server answered ${error.status}.`, detail];
  }
}

function showError(error) {
  clearError();
  const [title, detail] = error instanceof ApiError ? plainWords(error) : ["Something went wrong.", String(error)];
  const fields = error instanceof ApiError ? fieldErrors(error.problem) : [];
  $("error-title").textContent = title;
  // With field errors listed below, the detail (which repeats them) is left out.
  $("error-detail").textContent = detail && detail !== title && !fields.length ? ` ${detail}` : "";
  const list = $("error-fields");
  for (const { field, message } of fields) {
    const item = document.createElement("li");
    const name = field.replace(/_/g, " ");
    item.textContent = field ? `${name}: ${message || "invalid value"}` : message;
    list.append(item);
    const input = FIELDS.includes(field) ? $(field) : null;
    if (input) input.classList.add("invalid");
  }
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-fields").replaceChildren();
  for (const field of FIELDS) $(field).classList.remove("invalid");
}

// ---------------------------------------------------------------- models

async function loadModels() {
  let models;
  try {
    models = listOf(await api("GET", "v1/models"), ["models", "data", "items"]);
  } catch (error) {
    showError(error);
    return;
  }
  state.models = models.map((m) => (typeof m === "string" ? { name: m } : m));
  const select = $("model");
  const previous = select.value || localStorage.getItem(MODEL_STORAGE);
  select.replaceChildren(
    ...state.models.map((m) => new Option(m.name, m.name, false, m.name === previous)),
  );
  if (state.models.length) await showModel(select.value);
}

async function showModel(name) {
  localStorage.setItem(MODEL_STORAGE, name);
  const props = $("model-props");
  let info;
  try {
    info = await api("GET", `v1/models/${encodeURIComponent(name)}`);
  } catch (error) {
    props.replaceChildren();
    showError(error);
    return;
  }
  info = info.properties || info;
  const defaults = info.defaults || {};
  const rows = [
    ["format", info.format],
    ["mode", info.window ? `${info.mode} (window ${info.window})` : info.mode],
    ["vocabulary", info.vocab_size !== undefined ? `${info.vocab_size} characters` : undefined],
    ["layers", Array.isArray(info.layer_sizes) ? `${info.layer_sizes.join(" × ")} units` : undefined],
    ["default seed", defaults.seed !== undefined ? JSON.stringify(defaults.seed) : undefined],
    ["default temp.", defaults.temperature],
  ];
  const nodes = [];
  for (const [label, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    nodes.push(element("dt", label), element("dd", String(value)));
  }
  for (const warning of info.warnings || []) {
    nodes.push(element("dt", "warning"), element("dd", warning, "warning"));
  }
  props.replaceChildren(...nodes);
  $("seed").placeholder = defaults.seed ? `empty: the model's default seed "${defaults.seed}"` : "";
  if (typeof defaults.temperature === "number" && !$("temperature").dataset.touched) {
    $("temperature").value = defaults.temperature;
    $("temperature-value").textContent = defaults.temperature;
  }
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

// ---------------------------------------------------------------- generating

function numberField(id, parse) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = parse(raw);
  return Number.isNaN(value) ? raw : value; // let the server name the bad field
}

function requestBody() {
  const body = {
    model: $("model").value,
    seed: $("seed").value,
    temperature: Number($("temperature").value),
  };
  const optional = {
    length: numberField("length", (v) => Number(v)),
    top_k: numberField("top_k", (v) => Number(v)),
    top_p: numberField("top_p", (v) => Number(v)),
    random_seed: numberField("random_seed", (v) => Number(v)),
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) body[key] = value;
  return body;
}

async function generate(event) {
  event.preventDefault();
  if (state.abort) return;
  clearError();
  setBusy(true);
  let job;
  try {
    job = await api("POST", "v1/jobs", requestBody());
  } catch (error) {
    showError(error);
    setBusy(false);
    return;
  }
  showJob(job);
  refreshJobs();
  await follow(job.id);
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("cancel").disabled = !busy;
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  try {
    const job = await api("POST", `v1/jobs/${state.job.id}/cancel`);
    renderStatus(job.status);
  } catch (error) {
    showError(error);
    $("cancel").disabled = false;
  }
}

// Show a job in the output panel: its seed, text so far, progress and metrics.
function showJob(job) {
  state.job = job;
  $("job-id").textContent = job.id;
  $("output-seed").textContent = job.input?.seed ?? "";
  state.textNode = document.createTextNode(outputText(job));
  $("output-text").replaceChildren(state.textNode);
  renderStatus(job.status);
  renderProgress(job.progress?.done ?? 0, job.progress?.total ?? 0, job.status);
  renderMetrics(FINAL.has(job.status) ? job : null);
  highlightRow();
}

function outputText(job) {
  if (Array.isArray(job.output)) return job.output[0] ?? "";
  return job.output ?? "";
}

function renderStatus(status) {
  for (const badge of [$("job-status"), currentRow()?.cells[2].firstChild]) {
    if (!badge) continue;
    badge.textContent = status.replace("_", " ");
    badge.className = `badge ${status}`;
  }
}

// The row of the job shown in the output panel, kept live while the job streams.
function currentRow() {
  if (!state.job) return null;
  return [...$("jobs-body").rows].find((row) => row.dataset.id === state.job.id) ?? null;
}

function renderProgress(done, total, status) {
  const percent = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  $("progress-bar").style.width = `${FINAL.has(status) && status === "succeeded" ? 100 : percent}%`;
  const bar = $("progress-bar").parentElement;
  bar.setAttribute("aria-valuenow", String(Math.round(percent)));
  bar.classList.toggle("done", status === "succeeded");
  bar.classList.toggle("stopped", FINAL.has(status) && status !== "succeeded");
  const words = status === "queued" ? "waiting for a worker…" : `${done} of ${total} characters`;
  $("progress-text").textContent = words;
  const row = currentRow();
  if (row) row.cells[3].textContent = `${done}/${total}`;
}

function renderMetrics(job) {
  const list = $("job-metrics");
  if (!job) {
    list.replaceChildren();
    return;
  }
  const m = job.metrics || {};
  const rows = [
    ["finish", Array.isArray(job.finish_reason) ? job.finish_reason.join(", ") : job.finish_reason],
    ["chars/s", fmt(m.chars_per_s, 0)],
    ["queue", seconds(m.queue_time_s)],
    ["generation", seconds(m.generation_time_s)],
    ["total", seconds(m.total_time_s)],
    ["random seed", job.random_seed],
  ];
  const nodes = [];
  for (const [label, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    const pair = document.createElement("div");
    pair.append(element("dt", label), element("dd", String(value)));
    nodes.push(pair);
  }
  list.replaceChildren(...nodes);
  if (job.error) {
    showError(new ApiError(-1, { title: `The job ${job.status.replace("_", " ")}.`, detail: job.error.message }));
  }
}

function fmt(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : undefined;
}

function seconds(value) {
  if (typeof value !== "number") return undefined;
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

// ---------------------------------------------------------------- the event stream

// Yield {event, data, id} objects from a text/event-stream response body.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "event") event = val;
          else if (name === "data") data.push(val);
          else if (name === "id") id = val;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // the consumer stopped early: close the connection
  }
}

// Follow a job's stream until it is final, resuming with Last-Event-ID after a break.
async function follow(jobId) {
  const abort = new AbortController();
  state.abort = abort;
  setBusy(true);
  state.textNode.data = ""; // the stream replays the job's output from its start
  let lastId = null;
  let failures = 0;
  let finished = false;
  while (!finished && !abort.signal.aborted && state.job?.id === jobId) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId) extra["Last-Event-ID"] = lastId;
      const response = await fetch(`v1/jobs/${jobId}/stream`, {
        headers: headers(extra),
        signal: abort.signal,
        cache: "no-store",
      });
      if (!response.ok) throw await problemFrom(response);
      for await (const event of sseEvents(response.body)) {
        failures = 0;
        if (event.id) lastId = event.id;
        handleEvent(event);
        if (event.event === "done") {
          finished = true;
          break;
        }
      }
    } catch (error) {
      if (abort.signal.aborted) break;
      if (error instanceof ApiError) {
        showError(error);
        break;
      }
    }
    if (finished || abort.signal.aborted) break;
    // The stream broke or closed before the job ended: resume after a pause.
    failures += 1;
    if (failures > MAX_STREAM_RETRIES) {
      showError(new ApiError(0, { title: "Lost the connection to the server." }));
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** failures)));
  }
  if (state.abort === abort) state.abort = null;
  if (!abort.signal.aborted && state.job?.id === jobId) {
    try {
      showJob(await api("GET", `v1/jobs/${jobId}`));
    } catch (error) {
      showError(error);
    }
    setBusy(false);
  }
  refreshJobs();
}

function parseData(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return event.data;
  }
}

function handleEvent(event) {
  const data = parseData(event);
  if (event.event === "output") {
    const stream = typeof data === "object" ? data.stream ?? 0 : 0;
    const text = typeof data === "object" ? data.text ?? "" : String(data);
    if (stream === 0) appendText(text);
    if (typeof data === "object" && typeof data.done === "number") {
      renderProgress(data.done, state.job.progress?.total ?? 0, "running");
    }
  } else if (event.event === "status" || event.event === "done") {
    if (data && typeof data.status === "string") {
      renderStatus(data.status);
      if (data.status === "running") renderProgress(0, state.job.progress?.total ?? 0, "running");
    }
  }
}

function appendText(text) {
  const box = $("output");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  state.textNode.appendData(text);
  if (atBottom) box.scrollTop = box.scrollHeight; // follow the text unless the reader scrolled up
}

// ---------------------------------------------------------------- recent jobs

async function refreshJobs() {
  let jobs;
  try {
    jobs = listOf(await api("GET", "v1/jobs?limit=10"), ["jobs", "data", "items", "results"]);
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) showError(error);
    jobs = [];
  }
  const body = $("jobs-body");
  if (!jobs.length) {
    const cell = element("td", "No jobs yet.", "empty");
    cell.colSpan = 8;
    const row = document.createElement("tr");
    row.append(cell);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...jobs.map(jobRow));
  highlightRow();
}

function jobRow(job) {
  const m = job.metrics || {};
  const row = document.createElement("tr");
  row.dataset.id = job.id;
  const status = element("span", job.status.replace("_", " "), `badge ${job.status}`);
  const statusCell = document.createElement("td");
  statusCell.append(status);
  row.append(
    element("td", job.id.slice(0, 8), "mono"),
    element("td", job.model ?? job.input?.model ?? ""),
    statusCell,
    element("td", job.progress ? `${job.progress.done}/${job.progress.total}` : "", "num"),
    element("td", fmt(m.chars_per_s, 0) ?? "", "num"),
    element("td", seconds(m.queue_time_s) ?? "", "num"),
    element("td", seconds(m.total_time_s) ?? "", "num"),
    element("td", job.created_at ? new Date(job.created_at).toLocaleTimeString() : ""),
  );
  row.title = "Show this job";
  row.addEventListener("click", () => openJob(job.id));
  return row;
}

function highlightRow() {
  for (const row of $("jobs-body").rows) {
    row.classList.toggle("current", row.dataset.id !== undefined && row.dataset.id === state.job?.id);
  }
}

async function openJob(jobId) {
  clearError();
  if (state.abort) state.abort.abort();
  try {
    const job = await api("GET", `v1/jobs/${jobId}`);
    showJob(job);
    if (FINAL.has(job.status)) setBusy(false);
    else await follow(job.id);
  } catch (error) {
    showError(error);
  }
}

// ---------------------------------------------------------------- start

function saveKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  $("key-state").textContent = key ? "saved" : "cleared";
  clearError();
  loadModels();
  refreshJobs();
}

function start() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", saveKey);
  $("generate-form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("refresh-jobs").addEventListener("click", refreshJobs);
  $("model").addEventListener("change", (event) => showModel(event.target.value));
  $("temperature").addEventListener("input", (event) => {
    event.target.dataset.touched = "1";
    $("temperature-value").textContent = event.target.value;
  });
  for (const field of FIELDS) $(field).addEventListener("input", () => $(field).classList.remove("invalid"));
  loadModels();
  refreshJobs();
}

start();
