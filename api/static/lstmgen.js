// lstmgen.js: a browser and Node (18+) client of the lstmgen API, shaped like ml5 0.x's charRNN.
//
// One ES module, no dependencies, no build step:
//
//   import { charRNN } from "http://127.0.0.1:8000/lstmgen.js"; // or a local copy
//   const rnn = await charRNN("http://127.0.0.1:8000", "default").ready;
//   const { sample } = await rnn.generate({ seed: "def ", length: 200, temperature: 0.5 });
//
// Every method returns a Promise and also takes an optional error-first callback
// `(err, result)`, as ml5 0.x does. Only fetch, TextDecoder, AbortController and the fetch
// body's ReadableStream are used, and only when a method runs: importing the module touches
// nothing browser-specific. Server-Sent Events are read with fetch (not EventSource) so that
// the Authorization header can be sent.

const FINAL = new Set(["succeeded", "failed", "canceled", "timed_out", "expired"]);

/** Longest seed the server accepts (its LSTMGEN_MAX_SEED_CHARS default). */
export const MAX_SEED_CHARS = 10_000;

/** Seconds `generate` asks the server to hold its answer until the job is final. */
const GENERATE_WAIT_S = 60;

/** Consecutive failed reconnects after which `stream` gives up. */
const DEFAULT_MAX_RECONNECTS = 6;

/** The server sends a keep-alive comment every 15 s: a longer silence means a dead link. */
const STREAM_IDLE_MS = 45_000;

// ---------------------------------------------------------------- errors

/**
 * An error answer of the API (an RFC 9457 problem+json document), or a request that never
 * got an answer (`status` 0: the server is unreachable, or the browser refused the request,
 * e.g. for CORS).
 *
 * @property {number} status HTTP status (0 when there was no answer).
 * @property {{type?: string, title?: string, status?: number, detail?: string,
 *   errors?: {field: string, message: string}[]}} problem The problem document.
 * @property {{field: string, message: string}[]} errors The invalid fields, if any.
 * @property {string|null} retryAfter The Retry-After header (429, 503), if sent.
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {object} problem
   * @param {{retryAfter?: string|null, cause?: unknown}} [extra]
   */
  constructor(status, problem, { retryAfter = null, cause } = {}) {
    const errors = Array.isArray(problem?.errors) ? problem.errors : [];
    super(problemMessage(status, problem, errors), cause === undefined ? undefined : { cause });
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    this.errors = errors;
    this.retryAfter = retryAfter;
  }
}

function problemMessage(status, problem, errors) {
  const title = problem?.title || (status ? `HTTP ${status}` : "Request failed");
  const detail = problem?.detail ? String(problem.detail) : "";
  let message = status ? `${title} (${status})` : title;
  if (detail) message += `: ${detail}`;
  // The API's 422 detail already lists the fields; add only the ones it does not name.
  const extra = errors
    .map((e) => `${e?.field ?? ""}: ${e?.message ?? ""}`)
    .filter((text) => !detail.includes(text));
  if (extra.length) message += `${detail ? "; " : ": "}${extra.join("; ")}`;
  return message;
}

/**
 * A job that ended other than `succeeded` (failed, canceled, timed_out, expired), as
 * `generate` reports it.
 *
 * @property {object} job The final job.
 * @property {string} status The job's status.
 * @property {{type: string, message: string}|null} jobError The job's `error`.
 */
export class JobError extends Error {
  /** @param {object} job */
  constructor(job) {
    const error = job?.error;
    let message = `job ${job?.id} ended ${job?.status}`;
    if (error) message += `: ${error.type}: ${error.message}`;
    super(message);
    this.name = "JobError";
    this.job = job;
    this.status = job?.status;
    this.jobError = error ?? null;
  }
}

// ---------------------------------------------------------------- small helpers

/** Call an error-first callback when the promise settles; a callback means "handled". */
function withCallback(promise, callback) {
  if (typeof callback !== "function") return promise;
  promise.then(
    (result) => callback(null, result),
    (error) => callback(error),
  );
  promise.catch(() => {}); // the callback got the error: no unhandledrejection for it
  return promise;
}

/** Return the last `limit` characters (code points, as the server counts) of a text. */
function lastChars(text, limit) {
  if (text.length <= limit) return text; // UTF-16 units >= code points
  const chars = Array.from(text);
  return chars.length <= limit ? text : chars.slice(chars.length - limit).join("");
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

function abortError(signal) {
  const reason = signal?.reason;
  if (reason instanceof Error) return reason;
  const error = new Error("the stream was aborted");
  error.name = "AbortError";
  return error;
}

async function problemFrom(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // no body to show
  }
  let problem;
  try {
    problem = JSON.parse(text);
  } catch {
    problem = null;
  }
  if (typeof problem !== "object" || problem === null || Array.isArray(problem)) {
    problem = { title: response.statusText || `HTTP ${response.status}`, detail: text.slice(0, 500) };
  }
  return new ApiError(response.status, problem, { retryAfter: response.headers.get("Retry-After") });
}

/**
 * Yield `{event, data, id}` messages of a text/event-stream body (the WHATWG SSE parsing
 * rules; `id` is the last event id set so far, as EventSource keeps it). `onBytes` runs on
 * every chunk that arrives (keep-alives too) and `onRetry` on a `retry:` field.
 */
async function* sseMessages(body, { onBytes, onRetry } = {}) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data = [];
  let lastId = null;
  let pendingId = null;
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        return; // an unfinished message at the end is dropped, as the spec says
      }
      onBytes?.();
      buffer += decoder.decode(value, { stream: true });
      // A "\r" at the end may be the first half of "\r\n": keep it for the next chunk.
      const held = buffer.endsWith("\r") ? "\r" : "";
      const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
      buffer = lines.pop() + held; // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (pendingId !== null) lastId = pendingId;
          pendingId = null;
          if (data.length) yield { event: event || "message", data: data.join("\n"), id: lastId };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment (keep-alive)
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "event") event = value;
        else if (name === "data") data.push(value);
        else if (name === "id" && !value.includes("\0")) pendingId = value;
        else if (name === "retry" && /^\d+$/.test(value)) onRetry?.(Number(value));
      }
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {}); // stopped early: close the connection
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A push/pull queue behind the async iterator of `stream`. */
class ChunkQueue {
  constructor() {
    this.items = [];
    this.waiting = null;
    this.ended = false;
    this.error = null;
  }
  push(item) {
    this.items.push(item);
    this.wake();
  }
  end(error = null, keep = true) {
    if (!keep) this.items = [];
    this.ended = true;
    this.error = error;
    this.wake();
  }
  wake() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }
  async next() {
    while (!this.items.length && !this.ended) {
      await new Promise((resolve) => {
        this.waiting = resolve;
      });
    }
    if (this.items.length) return { value: this.items.shift(), done: false };
    if (this.error) throw this.error;
    return { value: undefined, done: true };
  }
}

// ---------------------------------------------------------------- the model object

/** The HTTP side: base URL, API key, JSON requests, problem+json errors. */
class ApiClient {
  /**
   * @param {string} baseUrl
   * @param {{apiKey?: string, fetch?: typeof fetch}} options
   */
  constructor(baseUrl, options) {
    /** @type {string} The API's base URL (no trailing slash). */
    this.baseUrl = String(baseUrl ?? "").replace(/\/+$/, "");
    this._apiKey = options.apiKey || "";
    this._fetch = options.fetch ?? null;
  }

  _headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (this._apiKey) headers.Authorization = `Bearer ${this._apiKey}`;
    return headers;
  }

  async _send(method, path, { body, headers = {}, signal } = {}) {
    const init = { method, headers: this._headers(headers), signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const fetcher = this._fetch ?? globalThis.fetch;
    try {
      return await fetcher(this.baseUrl + path, init);
    } catch (error) {
      if (signal?.aborted) throw abortError(signal);
      const detail = `${method} ${this.baseUrl + path}: ${error?.cause?.message || error?.message || error}`;
      throw new ApiError(0, { title: "Cannot reach the server", detail }, { cause: error });
    }
  }

  async _request(method, path, body, headers) {
    const response = await this._send(method, path, { body, headers });
    if (!response.ok) throw await problemFrom(response);
    return response.json();
  }
}

/**
 * A character-level LSTM model served by lstmgen, with ml5 0.x charRNN's methods.
 *
 * The model's state (ml5's `stateful` generation, `feed`, `predict`) is kept as the text fed
 * to it so far: a stateful LSTM fed the same text from the zero state reaches the same state,
 * so sending that text as the seed prefix continues exactly where the last call stopped.
 */
class CharRNN extends ApiClient {
  /**
   * @param {string} baseUrl
   * @param {string} model
   * @param {{apiKey?: string, maxReconnects?: number, fetch?: typeof fetch}} options
   */
  constructor(baseUrl, model, options) {
    super(baseUrl, options);
    /** @type {string} The model's name. */
    this.model = model;
    /** @type {string[]} The model's characters (filled in once `ready`). */
    this.vocab = [];
    /** @type {number} How many characters the model knows. */
    this.vocabSize = 0;
    /** @type {number} How many LSTM layers the model has (the API's `cells_amount`). */
    this.cellsAmount = 0;
    /** @type {{seed: string, length: number, temperature: number}} */
    this.defaults = { seed: "", length: 0, temperature: 0 };
    /** @type {object|null} Every property the API reported (`GET /v1/models/{model}`). */
    this.properties = null;
    this._maxReconnects = options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
    this._history = ""; // the text fed to the model since the last reset
    this._queue = Promise.resolve(); // generate/feed/predict/reset run one at a time
    /** @type {Promise<CharRNN>} Resolves to this object once the model's properties are in. */
    this.ready = this._load();
    // Whoever awaits `ready` gets its error, and so does every ml5 method (they await it):
    // a client used only for jobs (submit, stream...) gets no unhandled rejection from it.
    this.ready.catch(() => {});
  }

  async _load() {
    const info = await this._request("GET", `/v1/models/${encodeURIComponent(this.model)}`);
    this.properties = info;
    this.vocab = Array.isArray(info.vocab) ? info.vocab : [];
    this.vocabSize = info.vocab_size ?? this.vocab.length;
    this.cellsAmount = info.cells_amount ?? 0;
    const defaults = info.defaults ?? {};
    this.defaults = {
      seed: defaults.seed ?? "",
      length: defaults.length ?? 20,
      temperature: defaults.temperature ?? 0.5,
    };
    return this;
  }

  /** Run `task` after the calls that change or read the model's state before it. */
  _serial(task) {
    const run = this._queue.then(task, task);
    this._queue = run.catch(() => {});
    return run;
  }

  /** Return the job's seed for a stateful call: the history, then `seed`, capped. */
  _continued(seed) {
    // The server refuses seeds longer than MAX_SEED_CHARS characters: past that, only the
    // last MAX_SEED_CHARS characters of the history are sent, so a very long stateful session
    // continues from the state of that shorter text (close, but no longer exact).
    return lastChars(this._history + seed, MAX_SEED_CHARS);
  }

  // -------------------------------------------------------------- ml5 charRNN methods

  /**
   * Generate text (ml5's `generate`). Missing options fall back to the model's `defaults`.
   * With `stateful: true` the generation continues from the state the previous calls left
   * (the text fed, seeded and generated since the last `reset`); without it, it starts from
   * the zero state with `seed`. Either way the model's state afterwards is the end of this
   * generation, as in ml5. Other job fields (top_k, top_p, stop, random_seed,
   * unknown_chars, ...) are passed on to the API.
   *
   * @param {{seed?: string, length?: number, temperature?: number, stateful?: boolean,
   *   [field: string]: unknown}} [options]
   * @param {(err: Error|null, result?: {sample: string, job: object}) => void} [callback]
   * @returns {Promise<{sample: string, job: object}>} The generated text (without the seed).
   */
  generate(options = {}, callback) {
    if (typeof options === "function") [options, callback] = [{}, options];
    const run = this._serial(async () => {
      await this.ready;
      const { seed, length, temperature, stateful = false, ...rest } = options ?? {};
      const given = seed == null ? "" : String(seed);
      const continuing = stateful && this._history !== "";
      const fullSeed = continuing ? this._continued(given) : given || this.defaults.seed;
      const body = {
        ...rest,
        model: this.model,
        seed: fullSeed,
        length: length ?? this.defaults.length,
        temperature: temperature ?? this.defaults.temperature,
      };
      let job = await this._request("POST", "/v1/jobs", body, {
        Prefer: `wait=${GENERATE_WAIT_S}`,
      });
      if (!FINAL.has(job.status)) {
        job = await this._follow(job.id, {}, new AbortController(), () => {});
      }
      if (job.status !== "succeeded") throw new JobError(job);
      const sample = Array.isArray(job.output) ? job.output[0] : job.output;
      this._history = lastChars(fullSeed + sample, MAX_SEED_CHARS);
      return { sample, job };
    });
    return withCallback(run, callback);
  }

  /**
   * The distribution of the next character after the text fed so far, most likely first,
   * and one character drawn from it (ml5's `predict`). The state does not change. With
   * nothing fed yet the server uses the model's default seed.
   *
   * @param {number} [temperature] Defaults to the model's; 0 is greedy.
   * @param {(err: Error|null, result?: {sample: string,
   *   probabilities: {char: string, probability: number}[]}) => void} [callback]
   * @returns {Promise<{sample: string, probabilities: {char: string, probability: number}[]}>}
   */
  predict(temperature, callback) {
    if (typeof temperature === "function") [temperature, callback] = [undefined, temperature];
    const run = this._serial(async () => {
      await this.ready;
      const body = {
        seed: lastChars(this._history, MAX_SEED_CHARS),
        temperature: temperature ?? this.defaults.temperature,
      };
      const path = `/v1/models/${encodeURIComponent(this.model)}/predict`;
      const answer = await this._request("POST", path, body);
      const probabilities = answer.probabilities ?? [];
      return { sample: drawChar(probabilities), probabilities };
    });
    return withCallback(run, callback);
  }

  /**
   * Feed text to the model (ml5's `feed`): later stateful `generate` and `predict` calls
   * continue after it.
   *
   * @param {string} seed
   * @param {(err: Error|null, result?: CharRNN) => void} [callback]
   * @returns {Promise<CharRNN>}
   */
  feed(seed, callback) {
    const run = this._serial(async () => {
      await this.ready;
      const text = String(seed ?? "");
      const known = new Set(this.vocab);
      const unknown = [...new Set(Array.from(text).filter((char) => !known.has(char)))];
      if (unknown.length) {
        const shown = unknown.map((char) => JSON.stringify(char)).join(", ");
        throw new Error(`feed: ${unknown.length} character(s) not in the vocabulary of model ${JSON.stringify(this.model)}: ${shown}`);
      }
      this._history = this._continued(text);
      return this;
    });
    return withCallback(run, callback);
  }

  /**
   * Forget what was fed and generated: back to the zero state (ml5's `reset`).
   *
   * @param {(err: Error|null, result?: CharRNN) => void} [callback]
   * @returns {Promise<CharRNN>}
   */
  reset(callback) {
    const run = this._serial(async () => {
      this._history = "";
      return this;
    });
    return withCallback(run, callback);
  }

  // -------------------------------------------------------------- jobs (long generations)

  /**
   * Create a job without waiting for it (`POST /v1/jobs`). The options are the API's job
   * fields: seed, length, temperature, top_k, top_p, stop, n, random_seed, unknown_chars,
   * webhook, webhook_events_filter, metadata; `model` defaults to this model.
   *
   * @param {object} [options]
   * @param {(err: Error|null, job?: object) => void} [callback]
   * @returns {Promise<object>} The job as created (usually `queued`).
   */
  submit(options = {}, callback) {
    if (typeof options === "function") [options, callback] = [{}, options];
    const run = this._request("POST", "/v1/jobs", { model: this.model, ...options });
    return withCallback(run, callback);
  }

  /**
   * Return a job with its output so far (`GET /v1/jobs/{id}`).
   *
   * @param {string} id
   * @param {(err: Error|null, job?: object) => void} [callback]
   * @returns {Promise<object>}
   */
  get(id, callback) {
    return withCallback(this._request("GET", `/v1/jobs/${encodeURIComponent(id)}`), callback);
  }

  /**
   * Cancel a job (`POST /v1/jobs/{id}/cancel`): a queued one never starts, a running one
   * stops within a second (the answer may still say `running`; `stream` or `get` it to see
   * it end `canceled`).
   *
   * @param {string} id
   * @param {(err: Error|null, job?: object) => void} [callback]
   * @returns {Promise<object>}
   */
  cancel(id, callback) {
    const path = `/v1/jobs/${encodeURIComponent(id)}/cancel`;
    return withCallback(this._request("POST", path), callback);
  }

  /**
   * Follow a job's output as it is generated (`GET /v1/jobs/{id}/stream`, Server-Sent
   * Events read with fetch). `onText(chunk, streamIndex)` runs as characters arrive
   * (`streamIndex` is the sample, 0 to n - 1). After a dropped connection it reconnects with
   * `Last-Event-ID`, so nothing is lost or repeated; after `maxReconnects` failed reconnects
   * in a row it rejects. Resolves to the final job.
   *
   * The returned promise is also an async iterable of the output chunks:
   * `for await (const {text, stream, done} of rnn.stream(id)) ...` (ending the loop early
   * closes the connection).
   *
   * @param {string} id
   * @param {((text: string, streamIndex: number) => void) | {onText?: (text: string,
   *   streamIndex: number) => void, onStatus?: (status: string) => void,
   *   signal?: AbortSignal, maxReconnects?: number}} [onText]
   * @param {(err: Error|null, job?: object) => void} [callback]
   * @returns {Promise<object> & AsyncIterable<{text: string, stream: number, done: number}>}
   */
  stream(id, onText, callback) {
    const options = typeof onText === "function" ? { onText } : { ...(onText ?? {}) };
    const abort = new AbortController();
    const outer = options.signal;
    if (outer) {
      if (outer.aborted) abort.abort(outer.reason);
      else outer.addEventListener("abort", () => abort.abort(outer.reason), { once: true });
    }
    const queue = new ChunkQueue();
    let iterated = false;
    // Chunks wait in the queue until the iterator takes them (or the job ends un-iterated).
    const run = this._follow(id, options, abort, (chunk) => queue.push(chunk)).then(
      (job) => {
        queue.end(null, iterated);
        return job;
      },
      (error) => {
        queue.end(error, iterated);
        throw error;
      },
    );
    withCallback(run, callback);
    run[Symbol.asyncIterator] = () => {
      if (iterated) throw new Error("a stream can be iterated once");
      iterated = true;
      run.catch(() => {}); // the iterator reports the error
      return {
        next: () => queue.next(),
        return: async () => {
          abort.abort();
          queue.end();
          return { value: undefined, done: true };
        },
        [Symbol.asyncIterator]() {
          return this;
        },
      };
    };
    return run;
  }

  async _follow(id, options, abort, push) {
    const { signal } = abort;
    const maxReconnects = options.maxReconnects ?? this._maxReconnects;
    const path = `/v1/jobs/${encodeURIComponent(id)}/stream`;
    let lastId = null;
    let retryMs = 1000;
    let failures = 0;
    let cause = null;
    for (;;) {
      // Each connection has its own controller: a silent (dead) link is aborted and resumed.
      const connection = new AbortController();
      const stop = () => connection.abort(signal.reason);
      signal.addEventListener("abort", stop, { once: true });
      let idle = null;
      const alive = () => {
        clearTimeout(idle);
        idle = setTimeout(() => connection.abort(new Error("no data for 45 s")), STREAM_IDLE_MS);
      };
      try {
        alive();
        // Only Last-Event-ID (on a resume) and Authorization need a CORS preflight.
        const headers = { Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await this._send("GET", path, { headers, signal: connection.signal });
        if (!response.ok) {
          const error = await problemFrom(response);
          // A 4xx will not get better; a 5xx (e.g. 503 while Redis restarts) may.
          if (error.status < 500) throw error;
          cause = error;
        } else {
          const messages = sseMessages(response.body, {
            onBytes: alive,
            onRetry: (ms) => {
              retryMs = ms;
            },
          });
          for await (const message of messages) {
            failures = 0;
            if (message.id !== null) lastId = message.id;
            const data = parseJson(message.data);
            if (message.event === "output" && data && typeof data === "object") {
              const chunk = {
                text: String(data.text ?? ""),
                stream: Number(data.stream ?? 0),
                done: Number(data.done ?? 0),
              };
              options.onText?.(chunk.text, chunk.stream);
              push(chunk);
            } else if (message.event === "status" && data && typeof data === "object") {
              options.onStatus?.(data.status);
            } else if (message.event === "done") {
              return await this.get(id);
            }
          }
          cause = new Error("the server closed the stream before the job ended");
        }
      } catch (error) {
        if (signal.aborted) throw abortError(signal);
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
        cause = error; // a dropped connection or a dead link: resume from lastId
      } finally {
        clearTimeout(idle);
        signal.removeEventListener("abort", stop);
      }
      failures += 1;
      if (failures > maxReconnects) {
        const why = cause?.cause?.message || cause?.message || String(cause);
        throw new Error(
          `lstmgen: lost the stream of job ${id}: ${failures - 1} reconnects in a row failed (${why})`,
          { cause },
        );
      }
      await sleep(Math.min(retryMs, 100 * 2 ** (failures - 1)), signal).catch(() => {
        throw abortError(signal);
      });
    }
  }
}

/** Draw one character from `{char, probability}` entries (inverse CDF, Math.random). */
function drawChar(probabilities) {
  if (!probabilities.length) return "";
  const total = probabilities.reduce((sum, p) => sum + Math.max(0, p.probability), 0);
  let left = Math.random() * total;
  for (const p of probabilities) {
    left -= Math.max(0, p.probability);
    if (left < 0) return p.char;
  }
  // Rounding left a sliver past the end: the last character with any probability.
  for (let i = probabilities.length - 1; i >= 0; i -= 1) {
    if (probabilities[i].probability > 0) return probabilities[i].char;
  }
  return probabilities[0].char;
}

// ---------------------------------------------------------------- entry point

/**
 * Connect to a model of an lstmgen server, as ml5 0.x's `ml5.charRNN(path, callback)` does.
 *
 * @param {string} baseUrl The API's URL, e.g. "http://127.0.0.1:8000" ("" in a page the API
 *   serves).
 * @param {string} model The model's name (see `GET /v1/models`).
 * @param {{apiKey?: string, maxReconnects?: number, fetch?: typeof fetch}} [options]
 *   `apiKey` is sent as `Authorization: Bearer <apiKey>`; `maxReconnects` bounds how often
 *   `stream` reconnects in a row; `fetch` replaces the global fetch.
 * @param {(err: Error|null, model?: CharRNN) => void} [callback] Called once the model's
 *   properties are loaded (or could not be).
 * @returns {CharRNN} The model; `await model.ready` before reading its properties.
 */
export function charRNN(baseUrl, model, options = {}, callback) {
  if (typeof options === "function") [options, callback] = [{}, options];
  const rnn = new CharRNN(baseUrl, model, options ?? {});
  withCallback(rnn.ready, callback);
  return rnn;
}

/**
 * List the models an lstmgen server runs (`GET /v1/models`), each with its properties
 * (`name`, `vocab`, `vocab_size`, `cells_amount`, `defaults`, ...).
 *
 * @param {string} baseUrl The API's URL.
 * @param {{apiKey?: string, fetch?: typeof fetch}} [options]
 * @param {(err: Error|null, models?: object[]) => void} [callback]
 * @returns {Promise<object[]>}
 */
export function models(baseUrl, options = {}, callback) {
  if (typeof options === "function") [options, callback] = [{}, options];
  const client = new ApiClient(baseUrl, options ?? {});
  const run = client._request("GET", "/v1/models").then((answer) => answer.models ?? []);
  return withCallback(run, callback);
}

export { CharRNN };

export default { charRNN, models, ApiError, JobError };
