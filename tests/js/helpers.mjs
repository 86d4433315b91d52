// Shared by the node --test files: where the real stack is, and a cutting TCP proxy.
import net from "node:net";

/** The API under test (a real stack: gunicorn API, Celery worker, Redis). */
export const BASE_URL = (process.env.LSTMGEN_URL || "").replace(/\/+$/, "");
export const MODEL = process.env.LSTMGEN_MODEL || "tiny";
export const API_KEY = process.env.LSTMGEN_API_KEY || "";

/** Why the tests cannot run, or "" when they can. */
export const SKIP = BASE_URL ? false : "LSTMGEN_URL is not set (the URL of a running lstmgen API)";

/** fetch the API directly (not through the client under test); returns the parsed JSON. */
export async function direct(method, path, body, { apiKey = API_KEY } = {}) {
  const headers = { Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(BASE_URL + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** Poll `condition` until it returns something truthy, or fail after `timeoutMs`. */
export async function waitFor(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 100);
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of the API that cuts the responses to the first `cuts`
 * requests naming `match` (also on a reused keep-alive connection) after `cutAfter` bytes,
 * destroying both sides mid-response. `seen` holds the request bytes that named `match`.
 */
export class CuttingProxy {
  constructor(targetUrl, { match = "/stream", cutAfter = 1500, cuts = 1 } = {}) {
    const target = new URL(targetUrl);
    this.targetHost = target.hostname;
    this.targetPort = Number(target.port || 80);
    this.match = match;
    this.cutAfter = cutAfter;
    this.cuts = cuts;
    this.cutDone = 0;
    this.seen = [];
    this.armed = []; // cut functions of the connections armed with `cutAfter: null`
    this.sockets = new Set();
    this.server = net.createServer((downstream) => this.serve(downstream));
  }

  /** Listen on a free port; resolves to this proxy. */
  start() {
    return new Promise((resolve) => {
      this.server.listen(0, "127.0.0.1", () => resolve(this));
    });
  }

  /** Cut the connections armed with `cutAfter: null` now, mid-response. */
  cutNow() {
    for (const cut of this.armed.splice(0)) cut();
  }

  get url() {
    return `http://127.0.0.1:${this.server.address().port}`;
  }

  serve(downstream) {
    const upstream = net.connect(this.targetPort, this.targetHost);
    for (const socket of [downstream, upstream]) {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => {});
    }
    let budget = null; // response bytes still let through on this connection; null: no limit
    const cut = () => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("data", (data) => {
      const text = data.toString("latin1");
      if (text.includes(this.match)) {
        this.seen.push(text);
        if (this.cutDone < this.cuts) {
          this.cutDone += 1;
          budget = this.cutAfter ?? Infinity; // null: cut when the test calls cutNow()
          if (this.cutAfter === null) this.armed.push(cut);
        }
      }
      upstream.write(data);
    });
    upstream.on("data", (data) => {
      if (budget === null) {
        downstream.write(data);
        return;
      }
      const part = data.subarray(0, budget);
      budget -= part.length;
      if (part.length) downstream.write(part);
      if (budget === 0) {
        if (part.length) downstream.end(cut);
        else cut();
      }
    });
    downstream.on("end", () => upstream.end());
    upstream.on("end", () => downstream.end());
    downstream.on("close", () => upstream.destroy());
    upstream.on("close", () => downstream.destroy());
  }

  /** Stop listening and drop every connection. */
  stop() {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
