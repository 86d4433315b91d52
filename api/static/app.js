// The lstmgen web page: talks to the public JSON API of the server that serves it.
// No build step and no third-party code: plain DOM, fetch() and a small SSE reader
// (EventSource cannot send the Authorization header, so the stream is read with fetch).
"use strict";

const KEY_STORAGE = "lstmgen.apiKey";
const MODEL_STORAGE = "lstmgen.model";
const FINAL = new Set(["succeeded", "failed", "canceled", "timed_out", "expired"]);
const FIELDS = ["model", "seed", "temperature", "length", "n", "top_k", "top_p", "random_seed", "stop"];
const UPLOAD_FIELDS = ["name", "file", "vocab", "description"]; // inputs `upload-<field>`
const TRAIN_FIELDS = [ // inputs `train-<field>`: the fields of POST /v1/trainings
  "name", "text", "layers", "epochs", "seq_len", "batch_size", "learning_rate", "validation_split", "base_model",
];
const TRAIN_POLL_MS = 500; // how often a running training is looked at
const NO_TRAINING = { status: "idle", progress: { epoch: 0, epochs: 1, step: 0, steps: 0 }, metrics: [] };
const CURVE_SERIES = [
  { key: "loss_bpc", label: "training", color: "#2f6fde" },
  { key: "val_loss_bpc", label: "validation", color: "#d9822b" },
];
const MAX_STREAM_RETRIES = 6;
const PREDICT_DELAY_MS = 150; // typing pause before the next-character chart is asked for
const PREDICT_TOP = 20; // bars in the chart
const SAMPLE_SEPARATOR = "\n\n"; // between samples in the copied or downloaded output
const PIECE_CHARS = 16384; // a sample's text goes on in a new block at the next line break past this
const VISIBLE = { " ": "␣", "\n": "⏎", "\t": "⇥" };

const $ = (id) => document.getElementById(id);

const state = {
  job: null, // the job shown in the output panel
  abort: null, // AbortController of the stream being followed
  texts: [], // one SampleText per sample, that its generated characters are appended to
  models: [],
  predict: { timer: 0, ticket: 0, abort: null }, // the chart's pending and latest requests
  training: { id: null, timer: 0, canceling: false, ended: false, shown: NO_TRAINING }, // the one followed
};

// A sample's generated text, appended to as it streams in. Appending to one text node lays out
// all of it again, which a fast stream makes slower every time: the text is kept in blocks that
// each end at a line break past PIECE_CHARS, so an append lays out the last block only (the page
// shows the same lines, a line break ending each block).
class SampleText {
  constructor(parent, text) {
    this.parent = parent;
    this.reset(text);
  }

  reset(text) {
    this.last = document.createTextNode("");
    this.parent.replaceChildren(this.last);
    this.append(text);
  }

  append(text) {
    while (text) {
      const cut = text.indexOf("\n", Math.max(0, PIECE_CHARS - this.last.length));
      if (cut < 0 || cut === text.length - 1) {
        this.last.appendData(text);
        return;
      }
      this.last.appendData(text.slice(0, cut + 1));
      text = text.slice(cut + 1);
      const piece = element("span", "", "piece");
      this.last = document.createTextNode("");
      piece.append(this.last);
      this.parent.append(piece);
    }
  }

  get data() {
    return this.parent.textContent;
  }
}

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
async function api(method, path, body, signal) {
  const init = { method, headers: headers(), cache: "no-store", signal };
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

// The input a problem's field names: the generate form's, else the upload form's.
function pageInput(field) {
  if (FIELDS.includes(field)) return $(field);
  return UPLOAD_FIELDS.includes(field) ? $(`upload-${field}`) : null;
}

// The training form has a `name` too, so its errors are looked up in it alone.
function trainInput(field) {
  return TRAIN_FIELDS.includes(field) ? $(`train-${field}`) : null;
}

function showError(error, inputFor = pageInput) {
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
    const base = field.replace(/\[.*$/, ""); // "stop[2]" marks the stop sequences box
    const input = inputFor(base);
    if (input) markInvalid(input, message || "invalid value");
  }
  $("error").hidden = false;
}

// Outline the input and say what is wrong right under it.
function markInvalid(input, message) {
  input.classList.add("invalid");
  const note = element("div", message, "field-error small");
  note.dataset.for = input.id;
  input.after(note);
}

function clearInvalid(input) {
  input.classList.remove("invalid");
  for (const note of document.querySelectorAll(`.field-error[data-for="${input.id}"]`)) note.remove();
}

function clearError() {
  $("error").hidden = true;
  $("error-fields").replaceChildren();
  for (const field of FIELDS) clearInvalid($(field));
  for (const field of UPLOAD_FIELDS) clearInvalid($(`upload-${field}`));
  for (const field of TRAIN_FIELDS) clearInvalid($(`train-${field}`));
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
  schedulePredict();
}

// The server's sample limit is in its OpenAPI document; the input keeps 16 if it cannot be read.
async function loadLimits() {
  try {
    const spec = await api("GET", "openapi.json");
    const max = spec?.components?.schemas?.JobRequest?.properties?.n?.maximum;
    if (Number.isInteger(max) && max >= 1) $("n").max = String(max);
  } catch {
    // an old server or a proxy without the document: the server still checks n
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
    n: numberField("n", (v) => Number(v)),
    top_k: numberField("top_k", (v) => Number(v)),
    top_p: numberField("top_p", (v) => Number(v)),
    random_seed: numberField("random_seed", (v) => Number(v)),
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) body[key] = value;
  const stop = stopSequences($("stop").value);
  if (stop.length) body.stop = stop;
  return body;
}

// One stop sequence per line, empty lines skipped; limits are left to the server, which names them.
function stopSequences(raw) {
  return raw.split(/\r\n|\r|\n/).filter((line) => line !== "").map(unescapeStop);
}

// A textarea line cannot hold a newline, so "\n" and "\t" stand for one ("\\" for a backslash).
function unescapeStop(line) {
  const meaning = { n: "\n", t: "\t", "\\": "\\" };
  return line.replace(/\\([nt\\])/g, (_, letter) => meaning[letter]);
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
  renderOutputs(job);
  renderStatus(job.status);
  renderProgress(job.progress?.done ?? 0, job.progress?.total ?? 0, job.status);
  renderMetrics(FINAL.has(job.status) ? job : null);
  highlightRow();
}

// The job's samples as a list: `output` is a string when n == 1 and a list when n > 1.
function outputsOf(job) {
  const n = job.input?.n ?? (Array.isArray(job.output) ? job.output.length : 1);
  const given = Array.isArray(job.output) ? job.output : [job.output ?? ""];
  return Array.from({ length: Math.max(1, n) }, (_, i) => given[i] ?? "");
}

function finishReasons(job) {
  if (Array.isArray(job.finish_reason)) return job.finish_reason;
  return job.finish_reason ? [job.finish_reason] : [];
}

// One sample keeps the single output box; several get one pane each, side by side.
function renderOutputs(job) {
  const outputs = outputsOf(job);
  const seed = job.input?.seed ?? "";
  const several = outputs.length > 1;
  $("output").hidden = several;
  $("panes").hidden = !several;
  if (several) {
    const reasons = finishReasons(job);
    const panes = outputs.map((text, i) => samplePane(job.id, i, seed, text, reasons[i]));
    state.texts = panes.map((pane) => pane.text);
    $("panes").replaceChildren(...panes.map((pane) => pane.node));
    $("output-seed").textContent = "";
    $("output-text").replaceChildren();
  } else {
    $("output-seed").textContent = seed;
    state.texts = [new SampleText($("output-text"), outputs[0])];
    $("panes").replaceChildren();
  }
  $("copy-output").disabled = false;
  $("download-output").disabled = false;
  $("copy-state").textContent = "";
}

// A pane of one sample: title, finish reason once known, text, its own copy and download buttons.
function samplePane(jobId, index, seed, text, reason) {
  const node = document.createElement("article");
  node.className = "pane";
  node.dataset.index = String(index);
  const finish = element("span", reason ?? "", `badge finish ${reason ?? ""}`);
  finish.hidden = !reason;
  finish.title = reason === "stop" ? "ended on a stop sequence" : "reached the length";
  const status = element("span", "", "copy-state muted small");
  status.setAttribute("aria-live", "polite");
  const generated = element("span", "", "pane-output");
  const sample = new SampleText(generated, text);
  const copy = element("button", "Copy", "secondary compact");
  copy.type = "button";
  copy.addEventListener("click", () => copyText(sample.data, status));
  const download = element("button", "Download", "secondary compact");
  download.type = "button";
  const filename = `lstmgen-${jobId}-${index + 1}.txt`;
  download.addEventListener("click", () => downloadText(sample.data, filename));
  const head = document.createElement("div");
  head.className = "pane-head";
  head.append(element("span", `Sample ${index + 1}`, "pane-title"), finish);
  const box = document.createElement("pre");
  box.className = "text pane-text";
  box.append(element("span", seed, "seed"), generated);
  const foot = document.createElement("div");
  foot.className = "pane-foot";
  foot.append(copy, download, status);
  node.append(head, box, foot);
  return { node, text: sample };
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
  for (const text of state.texts) text.reset(""); // the stream replays the job's output from its start
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
    appendText(stream, text);
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

function appendText(stream, text) {
  const sample = state.texts[stream];
  if (!sample) return;
  const box = sample.parent.closest("pre");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  sample.append(text);
  if (atBottom) box.scrollTop = box.scrollHeight; // follow the text unless the reader scrolled up
}

// ---------------------------------------------------------------- copy and download

function wholeOutput() {
  return state.texts.map((text) => text.data).join(SAMPLE_SEPARATOR);
}

// The clipboard needs a secure context and the reader's permission: say so when it is refused.
async function copyText(text, status) {
  try {
    if (!navigator.clipboard?.writeText) throw new Error("no clipboard API");
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch {
    status.textContent = "Copying is not allowed here: select the text and press Ctrl+C.";
  }
}

function downloadText(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download may read the blob after click()
}

// ---------------------------------------------------------------- next-character chart

// Ask again once typing pauses, rather than on every keystroke.
function schedulePredict() {
  clearTimeout(state.predict.timer);
  $("chart").classList.add("stale");
  state.predict.timer = setTimeout(predictNext, PREDICT_DELAY_MS);
}

// Only the latest request may draw: older ones are aborted, and their ticket no longer matches.
async function predictNext() {
  const model = $("model").value;
  if (!model) {
    $("chart").classList.remove("stale");
    return;
  }
  state.predict.abort?.abort();
  const abort = new AbortController();
  state.predict.abort = abort;
  const ticket = ++state.predict.ticket;
  const body = { seed: $("seed").value, temperature: Number($("temperature").value), top: PREDICT_TOP };
  try {
    const path = `v1/models/${encodeURIComponent(model)}/predict`;
    const answer = await api("POST", path, body, abort.signal);
    if (ticket === state.predict.ticket) drawChart(answer);
  } catch (error) {
    if (ticket === state.predict.ticket && !abort.signal.aborted) chartProblem(error);
  }
}

// Errors stay in the chart area: a seed the model cannot read is normal while typing.
function chartProblem(error) {
  let words;
  const fields = error instanceof ApiError ? fieldErrors(error.problem) : [];
  if (fields.length) words = fields.map(({ field, message }) => `${field || "request"}: ${message}`);
  else words = error instanceof ApiError ? plainWords(error).filter(Boolean) : [String(error)];
  words = words.join(" ");
  $("chart").replaceChildren();
  $("chart").classList.remove("stale");
  $("chart-caption").textContent = "";
  $("chart-message").textContent = words;
  $("chart-message").hidden = false;
}

function visibleChar(char) {
  if (VISIBLE[char]) return VISIBLE[char];
  const code = char.codePointAt(0);
  if (code < 32 || code === 127) return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return char;
}

function percent(probability) {
  return `${(probability * 100).toFixed(1)}%`;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

// Horizontal bars, most likely first; bar lengths are relative to the likeliest character.
function drawChart(answer) {
  const rows = answer.probabilities ?? [];
  const area = $("chart");
  const width = Math.max(240, area.clientWidth || 340);
  const rowHeight = 18;
  const chart = svg("svg", {
    class: "chart-svg",
    viewBox: `0 0 ${width} ${rows.length * rowHeight}`,
    role: "img",
    "aria-label": rows.map((row) => `${visibleChar(row.char)} ${percent(row.probability)}`).join(", "),
  });
  const largest = rows[0]?.probability || 1;
  rows.forEach((row, i) => chart.append(barRow(row, row.probability / largest, i, width, rowHeight)));
  area.replaceChildren(chart);
  area.classList.remove("stale");
  const seed = [...(answer.seed ?? "")];
  const tail = seed.slice(-18).map(visibleChar).join("");
  const cut = seed.length > 18 ? "…" : "";
  const temperature = Number(answer.temperature).toFixed(2);
  $("chart-caption").textContent = `after “${cut}${tail}” · temp. ${temperature}`;
  $("chart-message").hidden = rows.length > 0;
  $("chart-message").textContent = rows.length ? "" : "The model gave no characters.";
}

function barRow({ char, probability }, share, index, width, height) {
  const labelWidth = 34;
  const percentWidth = 54;
  const barWidth = width - labelWidth - percentWidth;
  const middle = height / 2;
  const group = svg("g", { class: index ? "bar" : "bar top", transform: `translate(0 ${index * height})` });
  const title = svg("title");
  title.textContent = `${JSON.stringify(char)}: ${(probability * 100).toFixed(3)}%`;
  const label = svg("text", { class: "bar-label", x: labelWidth - 8, y: middle, "text-anchor": "end" });
  label.textContent = visibleChar(char);
  const box = { x: labelWidth, y: 3, height: height - 6, rx: 3 };
  const track = svg("rect", { ...box, class: "bar-track", width: barWidth });
  const fill = svg("rect", { ...box, class: "bar-fill", width: Math.max(1, share * barWidth).toFixed(1) });
  const value = svg("text", { class: "bar-pct", x: width - 2, y: middle, "text-anchor": "end" });
  value.textContent = percent(probability);
  group.append(title, label, track, fill, value);
  return group;
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

// ---------------------------------------------------------------- uploads

// POST /v1/models adds a model (409 if the name is taken); PUT replaces the caller's own.
async function upload(event) {
  event.preventDefault();
  clearError();
  const name = $("upload-name").value.trim();
  const form = new FormData();
  form.append("name", name);
  const file = $("upload-file").files[0];
  if (file) form.append("file", file);
  const vocab = $("upload-vocab").files[0];
  if (vocab) form.append("vocab", vocab);
  const description = $("upload-description").value.trim();
  if (description) form.append("description", description);
  const replace = $("upload-replace").checked;
  const path = replace ? `v1/models/${encodeURIComponent(name)}` : "v1/models";
  $("upload").disabled = true;
  $("upload-state").textContent = "uploading and checking…";
  try {
    let response;
    try {
      response = await fetch(path, { method: replace ? "PUT" : "POST", headers: headers(), body: form, cache: "no-store" });
    } catch {
      throw new ApiError(0, { title: "Cannot reach the server" });
    }
    if (!response.ok) throw await problemFrom(response);
    const model = await response.json();
    localStorage.setItem(MODEL_STORAGE, model.name);
    $("model").value = model.name;
    await loadModels();
    $("upload-state").textContent = `${model.name}: ready to generate`;
  } catch (error) {
    $("upload-state").textContent = "";
    showError(error);
  } finally {
    $("upload").disabled = false;
  }
}

// ---------------------------------------------------------------- training

// "128, 128" is [128, 128]; anything else is sent as typed, for the server to name the field.
function layersField(raw) {
  const parts = raw.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) return undefined;
  const layers = parts.map(Number);
  return layers.every(Number.isInteger) ? layers : raw;
}

// A chosen file is read here and sent instead of the pasted text.
async function trainingText() {
  const file = $("train-file").files[0];
  return file ? file.text() : $("train-text").value;
}

async function trainingBody() {
  const body = { name: $("train-name").value.trim(), text: await trainingText() };
  const optional = {
    layers: layersField($("train-layers").value),
    epochs: numberField("train-epochs", Number),
    seq_len: numberField("train-seq_len", Number),
    batch_size: numberField("train-batch_size", Number),
    learning_rate: numberField("train-learning_rate", Number),
    validation_split: numberField("train-validation_split", Number),
    base_model: $("train-base_model").value.trim() || undefined,
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) body[key] = value;
  return body;
}

async function train(event) {
  event.preventDefault();
  clearError();
  $("train").disabled = true;
  let training;
  try {
    training = await api("POST", "v1/trainings", await trainingBody());
  } catch (error) {
    showError(error, trainInput);
    $("train").disabled = false;
    return;
  }
  clearTimeout(state.training.timer);
  state.training = { id: training.id, timer: 0, canceling: false, ended: false, shown: training };
  showTraining(training);
}

// Show a record of the followed training, then look again soon unless it has ended.
function showTraining(training) {
  const followed = state.training;
  if (training.id !== followed.id || followed.ended) return;
  const ended = FINAL.has(training.status);
  followed.ended = ended;
  followed.shown = training;
  renderTraining(training);
  drawCurve(training);
  $("train").disabled = !ended;
  $("train-cancel").disabled = ended || followed.canceling;
  clearTimeout(followed.timer);
  if (ended) trainingEnded(training);
  else followed.timer = setTimeout(pollTraining, TRAIN_POLL_MS);
}

async function pollTraining() {
  const followed = state.training;
  try {
    showTraining(await api("GET", `v1/trainings/${followed.id}`));
  } catch (error) {
    if (followed !== state.training) return;
    showError(error);
    // A server that is briefly away is asked again; any other answer stops the polling.
    if (error instanceof ApiError && (error.status === 0 || error.status >= 500)) {
      followed.timer = setTimeout(pollTraining, 4 * TRAIN_POLL_MS);
    } else {
      $("train").disabled = false;
      $("train-cancel").disabled = true;
    }
  }
}

async function cancelTraining() {
  const followed = state.training;
  if (!followed.id) return;
  followed.canceling = true;
  $("train-cancel").disabled = true;
  try {
    showTraining(await api("POST", `v1/trainings/${followed.id}/cancel`));
  } catch (error) {
    showError(error);
    followed.canceling = false;
    $("train-cancel").disabled = followed.ended;
  }
}

// A trained model is selected at once; a failed training says why.
async function trainingEnded(training) {
  if (training.status === "succeeded") {
    localStorage.setItem(MODEL_STORAGE, training.name);
    $("model").value = training.name;
    await loadModels();
  } else if (training.status !== "canceled") {
    const title = `The training ${training.status.replace("_", " ")}.`;
    showError(new ApiError(-1, { title, detail: training.error ?? "" }));
  }
}

// Epochs done, counting the running epoch's finished steps.
function epochsDone({ epoch, step, steps }) {
  return steps > 0 && step < steps ? epoch + step / steps : epoch;
}

function trainingWords(training) {
  const { epoch, epochs, step, steps } = training.progress;
  if (training.status === "queued") return "waiting for a training worker…";
  const running = steps > 0 && step < steps;
  const current = running || !steps ? Math.min(epoch + 1, epochs) : epoch;
  const words = `epoch ${current} of ${epochs} · ${steps ? `step ${step} of ${steps}` : "starting"}`;
  if (training.status === "succeeded") return `${words} · ${training.name}: ready to generate`;
  if (state.training.canceling && !FINAL.has(training.status)) return `${words} · stopping…`;
  return words;
}

function renderTraining(training) {
  const status = $("train-status");
  status.textContent = training.status.replace("_", " ");
  status.className = `badge ${training.status}`;
  $("train-id").textContent = training.id;
  const epochs = training.progress.epochs;
  const share = training.status === "succeeded" ? 1 : epochs ? epochsDone(training.progress) / epochs : 0;
  const percent = Math.min(100, 100 * share);
  const bar = $("train-progress-bar").parentElement;
  $("train-progress-bar").style.width = `${percent}%`;
  bar.setAttribute("aria-valuenow", String(Math.round(percent)));
  bar.classList.toggle("done", training.status === "succeeded");
  bar.classList.toggle("stopped", FINAL.has(training.status) && training.status !== "succeeded");
  $("train-progress-text").textContent = trainingWords(training);
}

// ---------------------------------------------------------------- the loss curve

// The canvas's backing store matches its CSS size times the screen's pixel ratio.
function sizedCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 480;
  const height = canvas.clientHeight || 240;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { context, width, height };
}

function curveSeries(metrics) {
  return CURVE_SERIES.map(({ key, label, color }) => ({
    label,
    color,
    points: metrics.filter((m) => typeof m[key] === "number").map((m) => [m.epoch, m[key]]),
  }));
}

// Pixel positions of epochs (0 to the epochs asked for) and losses (0 to a whole number of bits).
function curveScale(width, height, epochs, series) {
  const losses = series.flatMap((s) => s.points.map(([, loss]) => loss));
  const top = Math.max(1, Math.ceil(Math.max(0, ...losses)));
  const plot = { left: 44, right: width - 14, top: 28, bottom: height - 36 };
  return {
    plot,
    epochs,
    top,
    x: (epoch) => plot.left + (epoch / epochs) * (plot.right - plot.left),
    y: (loss) => plot.bottom - (loss / top) * (plot.bottom - plot.top),
  };
}

function drawAxes(context, scale) {
  const { plot, epochs, top, x, y } = scale;
  context.strokeStyle = "#dde1e7";
  context.fillStyle = "#6b7483";
  context.font = "11px system-ui, sans-serif";
  context.lineWidth = 1;
  context.textAlign = "right";
  context.textBaseline = "middle";
  const lossStep = Math.ceil(top / 5);
  for (let loss = 0; loss <= top; loss += lossStep) {
    context.beginPath();
    context.moveTo(plot.left, y(loss));
    context.lineTo(plot.right, y(loss));
    context.stroke();
    context.fillText(String(loss), plot.left - 6, y(loss));
  }
  context.textAlign = "center";
  context.textBaseline = "top";
  const epochStep = Math.ceil(epochs / 10);
  for (let epoch = 0; epoch <= epochs; epoch += epochStep) {
    context.fillText(String(epoch), x(epoch), plot.bottom + 5);
  }
  context.fillText("epoch", (plot.left + plot.right) / 2, plot.bottom + 20);
  context.save();
  context.translate(11, (plot.top + plot.bottom) / 2);
  context.rotate(-Math.PI / 2);
  context.fillText("bits per character", 0, -6);
  context.restore();
}

// A dashed line where the running training is now.
function drawNow(context, scale, done) {
  const { plot, x } = scale;
  context.save();
  context.strokeStyle = "#8a93a3";
  context.setLineDash([4, 4]);
  context.beginPath();
  context.moveTo(x(done), plot.top);
  context.lineTo(x(done), plot.bottom);
  context.stroke();
  context.restore();
}

// Lines between the epochs' losses and a dot on each; returns where the dots were drawn.
function drawSeries(context, scale, { label, color, points }) {
  const placed = points.map(([epoch, loss]) => {
    return { series: label, color, epoch, loss, x: scale.x(epoch), y: scale.y(loss) };
  });
  context.strokeStyle = color;
  context.fillStyle = color;
  context.lineWidth = 2;
  context.beginPath();
  placed.forEach((p, i) => (i ? context.lineTo(p.x, p.y) : context.moveTo(p.x, p.y)));
  context.stroke();
  for (const p of placed) {
    context.beginPath();
    context.arc(p.x, p.y, 3.5, 0, 2 * Math.PI);
    context.fill();
  }
  return placed;
}

// The legend sits above the plot, where no point can be drawn.
function drawLegend(context, scale) {
  let left = scale.plot.left;
  context.font = "12px system-ui, sans-serif";
  context.textAlign = "left";
  context.textBaseline = "middle";
  for (const { label, color } of CURVE_SERIES) {
    context.fillStyle = color;
    context.fillRect(left, 10, 16, 3);
    context.fillStyle = "#1d2430";
    context.fillText(label, left + 21, 12);
    left += 34 + context.measureText(label).width;
  }
}

// Redraw the whole curve from the record; the dots drawn are kept in data-points.
function drawCurve(training) {
  const canvas = $("train-curve");
  const { context, width, height } = sizedCanvas(canvas);
  const series = curveSeries(training.metrics ?? []);
  const scale = curveScale(width, height, Math.max(1, training.progress.epochs), series);
  context.clearRect(0, 0, width, height);
  drawAxes(context, scale);
  if (training.status === "running") drawNow(context, scale, epochsDone(training.progress));
  const placed = series.flatMap((s) => drawSeries(context, scale, s));
  drawLegend(context, scale);
  canvas.dataset.points = JSON.stringify(placed);
  const said = series.map(({ label, points }) => {
    return `${label} ${points.map(([, loss]) => loss.toFixed(2)).join(", ") || "none yet"}`;
  });
  canvas.setAttribute("aria-label", `Loss per epoch in bits per character: ${said.join("; ")}`);
}

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
  $("upload-form").addEventListener("submit", upload);
  for (const field of UPLOAD_FIELDS) {
    $(`upload-${field}`).addEventListener("input", () => clearInvalid($(`upload-${field}`)));
  }
  $("cancel").addEventListener("click", cancel);
  $("train-form").addEventListener("submit", train);
  $("train-cancel").addEventListener("click", cancelTraining);
  $("train-file").addEventListener("change", () => {
    $("train-file-note").hidden = !$("train-file").files.length;
    clearInvalid($("train-text"));
  });
  for (const field of TRAIN_FIELDS) {
    $(`train-${field}`).addEventListener("input", () => clearInvalid($(`train-${field}`)));
  }
  $("copy-output").addEventListener("click", () => copyText(wholeOutput(), $("copy-state")));
  $("download-output").addEventListener("click", () => {
    if (state.job) downloadText(wholeOutput(), `lstmgen-${state.job.id}.txt`);
  });
  $("seed").addEventListener("input", schedulePredict);
  $("refresh-jobs").addEventListener("click", refreshJobs);
  $("model").addEventListener("change", (event) => showModel(event.target.value));
  $("temperature").addEventListener("input", (event) => {
    event.target.dataset.touched = "1";
    $("temperature-value").textContent = event.target.value;
    schedulePredict();
  });
  for (const field of FIELDS) $(field).addEventListener("input", () => clearInvalid($(field)));
  loadLimits();
  loadModels();
  refreshJobs();
  drawCurve(NO_TRAINING);
  window.addEventListener("resize", () => drawCurve(state.training.shown));
}

start();
