// A p5.js-style sketch with lstmgen: setup() once, draw() on every frame that has news, and
// the generated text written onto the canvas (word-wrapped) as the job streams in.
//
// URL parameters: ?api=<the API's URL, default this page's origin>&model=<a model name,
// default the server's first>&key=<an API key, if the server needs one>.
// The client comes from the API itself: `await import(api + "/lstmgen.js")`.

const params = new URLSearchParams(location.search);
const API = (params.get("api") || location.origin).replace(/\/+$/, "");
const KEY = params.get("key") || "";

const $ = (id) => document.getElementById(id);

let lstmgen = null; // the client module
let rnn = null; // the model (lstmgen.charRNN)

// ---------------------------------------------------------------- the sketch

const FONT = '18px ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, monospace';
const LINE_HEIGHT = 24;
const MARGIN = 20;
const BACKGROUND = "#fffdf7";
const INK = "#1d2430";
const CURSOR = "#2f6fde";

let ctx = null;
let lines = [""]; // the text, wrapped to the canvas width (the last line grows)
let textNode = null; // #text's Text node: exactly the characters generated
let streaming = false;
let dirty = true; // something changed since the last frame

function setup() {
  const canvas = $("canvas");
  ctx = canvas.getContext("2d");
  ctx.font = FONT;
  ctx.textBaseline = "top";
  textNode = document.createTextNode("");
  $("text").replaceChildren(textNode);
}

function draw() {
  const { width, height } = ctx.canvas;
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(0, 0, width, height);
  // Show the last lines that fit: the text scrolls up as it grows.
  const visible = Math.max(1, Math.floor((height - 2 * MARGIN) / LINE_HEIGHT));
  const first = Math.max(0, lines.length - visible);
  ctx.fillStyle = INK;
  for (let i = first; i < lines.length; i += 1) {
    ctx.fillText(lines[i], MARGIN, MARGIN + (i - first) * LINE_HEIGHT);
  }
  if (streaming) {
    const last = lines[lines.length - 1];
    const x = MARGIN + ctx.measureText(last).width + 1;
    const y = MARGIN + (lines.length - 1 - first) * LINE_HEIGHT;
    ctx.fillStyle = CURSOR;
    ctx.fillRect(x, y, 9, LINE_HEIGHT - 6);
  }
}

function loop() {
  if (dirty) {
    dirty = false;
    draw();
  }
  requestAnimationFrame(loop);
}

/** Start over with no text. */
function clearText() {
  lines = [""];
  textNode.data = "";
  dirty = true;
}

/** Add generated characters: to #text as they are, to the canvas word-wrapped. */
function appendText(chunk) {
  textNode.appendData(chunk);
  const maxWidth = ctx.canvas.width - 2 * MARGIN - 12; // room for the cursor
  for (const char of chunk) {
    if (char === "\n") {
      lines.push("");
      continue;
    }
    const last = lines.length - 1;
    const line = lines[last] + char;
    if (lines[last] === "" || ctx.measureText(line).width <= maxWidth) {
      lines[last] = line;
    } else if (char === " ") {
      lines.push(""); // the space that ends a full line is where it wraps
    } else {
      const space = lines[last].lastIndexOf(" ");
      if (space >= 0) {
        lines[last] = line.slice(0, space); // the word moves down to the next line
        lines.push(line.slice(space + 1));
      } else {
        lines.push(char); // a word longer than the line breaks where it must
      }
    }
  }
  dirty = true;
}

// ---------------------------------------------------------------- the page

function setStatus(state, message, jobId = null) {
  const status = $("status");
  status.dataset.state = state;
  if (jobId) status.dataset.jobId = jobId;
  else delete status.dataset.jobId;
  status.textContent = message;
}

function showError(error) {
  let message = error?.message || String(error);
  const crossOrigin = new URL(API, location.href).origin !== location.origin;
  if (error?.status === 0 && crossOrigin) {
    message += ` (is this page's origin, ${location.origin}, in the API's LSTMGEN_CORS_ORIGINS?)`;
  }
  setStatus("error", `Error: ${message}`);
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("quick").disabled = busy;
}

function readOptions() {
  const length = $("length").value.trim();
  return {
    seed: $("seed").value,
    length: length === "" ? undefined : Number(length), // empty: the model's default
    temperature: Number($("temperature").value),
  };
}

function jobLine(job) {
  const done = job.progress ? ` (${job.progress.done} characters)` : "";
  const error = job.error ? `: ${job.error.message}` : "";
  return `Job ${job.id}: ${job.status}${done}${error}`;
}

/** Generate: submit a job, then draw its text as it streams in. */
async function generateStreamed(event) {
  event.preventDefault();
  setBusy(true);
  clearText();
  try {
    const job = await rnn.submit(readOptions());
    setStatus(job.status, jobLine(job), job.id);
    streaming = true;
    const final = await rnn.stream(job.id, {
      onText: (chunk, sample) => {
        if (sample === 0) appendText(chunk);
      },
      onStatus: (status) => setStatus(status, `Job ${job.id}: ${status}`, job.id),
    });
    setStatus(final.status, jobLine(final), final.id);
  } catch (error) {
    showError(error);
  } finally {
    streaming = false;
    dirty = true;
    setBusy(false);
  }
}

/** Quick: one generate() call that answers with the whole text, as ml5's generate does. */
async function generateQuick() {
  setBusy(true);
  setStatus("running", "Generating…");
  try {
    const { sample, job } = await rnn.generate(readOptions());
    clearText();
    appendText(sample);
    setStatus("succeeded", `Quick: ${jobLine(job)}`, job.id);
  } catch (error) {
    showError(error);
  } finally {
    setBusy(false);
  }
}

function showTemperature() {
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
}

async function main() {
  setup();
  requestAnimationFrame(loop);
  $("api-url").textContent = API;
  $("temperature").addEventListener("input", showTemperature);
  $("controls").addEventListener("submit", generateStreamed);
  $("quick").addEventListener("click", generateQuick);

  setStatus("loading", `Loading ${API}/lstmgen.js…`);
  try {
    lstmgen = await import(`${API}/lstmgen.js`);
  } catch (error) {
    setStatus("error", `Error: could not load ${API}/lstmgen.js (${error.message})`);
    return;
  }
  try {
    let name = params.get("model");
    if (!name) {
      const found = await lstmgen.models(API, { apiKey: KEY });
      if (!found.length) throw new Error(`the server at ${API} runs no model`);
      name = found[0].name;
    }
    setStatus("loading", `Loading model ${name}…`);
    rnn = await lstmgen.charRNN(API, name, { apiKey: KEY }).ready;
  } catch (error) {
    showError(error);
    return;
  }
  $("model-name").textContent = `${rnn.model} (${rnn.vocabSize} characters, ${rnn.cellsAmount} layer(s))`;
  $("seed").placeholder = rnn.defaults.seed;
  $("temperature").value = String(rnn.defaults.temperature);
  showTemperature();
  setBusy(false);
  setStatus("ready", `Ready: model ${rnn.model}`);
}

main();
