// The JavaScript client (api/static/lstmgen.js) against a real running stack.
//   LSTMGEN_URL=http://127.0.0.1:8000 LSTMGEN_MODEL=tiny node --test tests/js/
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import lstmgen, { ApiError, JobError, charRNN } from "../../api/static/lstmgen.js";
import { API_KEY, BASE_URL, CuttingProxy, MODEL, SKIP, direct, waitFor } from "./helpers.mjs";

const TIMEOUT = { timeout: 120_000 };
const LONG = 100_000; // characters per sample: many seconds with the tiny model

describe("lstmgen.js client", { skip: SKIP }, () => {
  let rnn;
  let info;

  before(async () => {
    info = await direct("GET", `/v1/models/${MODEL}`);
    rnn = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
  });

  function onlyVocab(text) {
    const known = new Set(info.vocab);
    return Array.from(text).every((char) => known.has(char));
  }

  test("the default export and the named exports are the same", () => {
    assert.equal(lstmgen.charRNN, charRNN);
    assert.equal(lstmgen.ApiError, ApiError);
  });

  test("ready resolves to the model with ml5's properties", TIMEOUT, async () => {
    assert.equal(rnn.model, MODEL);
    assert.deepEqual(rnn.vocab, info.vocab);
    assert.equal(rnn.vocabSize, rnn.vocab.length);
    assert.equal(rnn.vocabSize, info.vocab_size);
    assert.equal(rnn.cellsAmount, info.cells_amount);
    assert.ok(rnn.cellsAmount >= 1);
    assert.deepEqual(rnn.defaults, info.defaults);
    assert.deepEqual(Object.keys(rnn.defaults).sort(), ["length", "seed", "temperature"]);
  });

  test("ready calls back error-first, and rejects for an unknown model", TIMEOUT, async () => {
    const called = await new Promise((resolve) => {
      charRNN(BASE_URL, MODEL, { apiKey: API_KEY }, (err, model) => resolve({ err, model }));
    });
    assert.equal(called.err, null);
    assert.equal(called.model.vocabSize, info.vocab_size);

    const missing = charRNN(BASE_URL, "no-such-model", { apiKey: API_KEY });
    await assert.rejects(missing.ready, (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 404);
      assert.equal(error.problem.status, 404);
      return true;
    });
    await assert.rejects(missing.generate({ length: 5 }), ApiError); // methods wait on ready
  });

  test("generate returns exactly `length` characters of the model's vocabulary", TIMEOUT, async () => {
    const { sample, job } = await rnn.generate({ seed: "the ", length: 120, temperature: 0.8 });
    assert.equal(typeof sample, "string");
    assert.equal(Array.from(sample).length, 120);
    assert.ok(onlyVocab(sample), `characters outside the vocabulary in ${JSON.stringify(sample)}`);
    assert.equal(job.status, "succeeded");
    assert.equal(job.output, sample); // the seed is not part of the sample
    assert.equal(job.input.seed, "the ");
  });

  test("generate falls back to the model's defaults", TIMEOUT, async () => {
    const { sample, job } = await rnn.generate();
    assert.equal(sample.length, info.defaults.length);
    assert.equal(job.input.seed, info.defaults.seed);
    assert.equal(job.input.temperature, info.defaults.temperature);
  });

  test("generate calls back error-first on success", TIMEOUT, async () => {
    const called = await new Promise((resolve) => {
      const promise = rnn.generate({ seed: "a", length: 15 }, (err, result) => resolve({ err, result, promise }));
    });
    assert.equal(called.err, null);
    assert.equal(called.result.sample.length, 15);
    assert.equal((await called.promise).sample, called.result.sample); // the promise resolves too
  });

  test("a bad temperature rejects with an ApiError 422 naming the field", TIMEOUT, async () => {
    await assert.rejects(rnn.generate({ seed: "a", length: 10, temperature: 99 }), (error) => {
      assert.ok(error instanceof ApiError && error instanceof Error);
      assert.equal(error.name, "ApiError");
      assert.equal(error.status, 422);
      assert.equal(error.problem.status, 422);
      assert.equal(error.problem.title, "Invalid request");
      assert.ok(error.errors.some((e) => e.field === "temperature"), JSON.stringify(error.errors));
      assert.match(error.message, /Invalid request/);
      assert.match(error.message, /temperature/);
      return true;
    });
  });

  test("a bad temperature calls back with the error, with no unhandled rejection", TIMEOUT, async () => {
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const err = await new Promise((resolve) => {
        rnn.generate({ seed: "a", length: 10, temperature: -1 }, (error, result) => {
          assert.equal(result, undefined);
          resolve(error);
        });
      });
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 422);
      assert.ok(err.errors.some((e) => e.field === "temperature"));
      // Let any rejection of the (ignored) returned promise surface before checking.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    assert.deepEqual(unhandled, []);
  });

  test("stateful generations continue exactly where the last one stopped", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    const first = await model.generate({ seed: "the ", length: 30, temperature: 0, stateful: true });
    const second = await model.generate({ seed: "", length: 30, temperature: 0, stateful: true });
    const once = await model.generate({ seed: "the ", length: 60, temperature: 0 });
    assert.equal(first.sample.length, 30);
    assert.equal(second.sample.length, 30);
    assert.equal(first.sample + second.sample, once.sample);
    assert.equal(second.job.input.seed, `the ${first.sample}`); // the history is the seed prefix
  });

  test("as in ml5, a plain generate leaves the state at its end", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    await model.feed("zzz"); // forgotten: a generation without `stateful` starts from zero
    const first = await model.generate({ seed: "the ", length: 20, temperature: 0 });
    assert.equal(first.job.input.seed, "the ");
    const next = await model.generate({ length: 20, temperature: 0, stateful: true });
    const once = await model.generate({ seed: "the ", length: 40, temperature: 0 });
    assert.equal(first.sample + next.sample, once.sample);
  });

  test("a stateful generation after reset starts from the zero state", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    await model.feed("zzz");
    await model.reset();
    const { job } = await model.generate({ seed: "the ", length: 5, temperature: 0, stateful: true });
    assert.equal(job.input.seed, "the ");
  });

  test("predict returns a sorted distribution and a character drawn from it", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    const { sample, probabilities } = await model.predict(0.8);
    assert.equal(probabilities.length, info.vocab_size);
    const total = probabilities.reduce((sum, p) => sum + p.probability, 0);
    assert.ok(Math.abs(total - 1) < 1e-3, `probabilities sum to ${total}`);
    for (let i = 1; i < probabilities.length; i += 1) {
      assert.ok(probabilities[i - 1].probability >= probabilities[i].probability, "not sorted");
    }
    assert.ok(info.vocab.includes(sample), `sample ${JSON.stringify(sample)}`);
    assert.equal(sample.length, 1);
    // With nothing fed, the server predicts after the model's default seed.
    const expected = await direct("POST", `/v1/models/${MODEL}/predict`, { seed: "", temperature: 0.8 });
    assert.deepEqual(probabilities, expected.probabilities);
  });

  test("predict follows what was fed, and reset forgets it", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    const fed = await model.feed("th");
    assert.equal(fed, model);
    const afterFeed = await model.predict(1);
    const onTh = await direct("POST", `/v1/models/${MODEL}/predict`, { seed: "th", temperature: 1 });
    assert.deepEqual(afterFeed.probabilities, onTh.probabilities);

    await model.feed("e"); // feeds add up
    const onThe = await direct("POST", `/v1/models/${MODEL}/predict`, { seed: "the", temperature: 1 });
    assert.deepEqual((await model.predict(1)).probabilities, onThe.probabilities);

    await model.reset();
    const afterReset = await model.predict(1);
    const onDefault = await direct("POST", `/v1/models/${MODEL}/predict`, { seed: "", temperature: 1 });
    assert.deepEqual(afterReset.probabilities, onDefault.probabilities);
    assert.notDeepEqual(afterReset.probabilities, afterFeed.probabilities);
  });

  test("predict at temperature 0 always samples the most likely character", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    await model.feed("hello ");
    for (let i = 0; i < 3; i += 1) {
      const { sample, probabilities } = await model.predict(0);
      assert.equal(sample, probabilities[0].char);
    }
  });

  test("predict and feed take error-first callbacks too", TIMEOUT, async () => {
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    const fed = await new Promise((resolve) => model.feed("ab", (err, result) => resolve({ err, result })));
    assert.equal(fed.err, null);
    const predicted = await new Promise((resolve) => model.predict(0.5, (err, result) => resolve({ err, result })));
    assert.equal(predicted.err, null);
    assert.ok(info.vocab.includes(predicted.result.sample));
    const bad = await new Promise((resolve) => model.feed("ab\u00e9", (err) => resolve(err)));
    assert.match(bad.message, /not in the vocabulary/);
    const reset = await new Promise((resolve) => model.reset((err, result) => resolve({ err, result })));
    assert.equal(reset.err, null);
    assert.equal(reset.result, model);
  });

  test("submit + stream: the streamed text is the final job's output", TIMEOUT, async () => {
    const job = await rnn.submit({ seed: "the ", length: 3000, temperature: 0.7, random_seed: 7 });
    assert.ok(["queued", "running", "succeeded"].includes(job.status), job.status);
    assert.equal(job.model, MODEL);
    let text = "";
    let calls = 0;
    const final = await rnn.stream(job.id, (chunk, index) => {
      assert.equal(index, 0);
      text += chunk;
      calls += 1;
    });
    assert.equal(final.id, job.id);
    assert.equal(final.status, "succeeded");
    assert.equal(final.random_seed, 7);
    assert.equal(final.output.length, 3000);
    assert.equal(text, final.output);
    assert.ok(calls >= 1);
    assert.deepEqual(await rnn.get(job.id), final);
  });

  test("stream keeps samples apart (n > 1) and works as an async iterator", TIMEOUT, async () => {
    const job = await rnn.submit({ seed: "a", length: 500, n: 3, random_seed: 11 });
    const texts = ["", "", ""];
    const streamed = rnn.stream(job.id);
    let last = 0;
    for await (const { text, stream, done } of streamed) {
      texts[stream] += text;
      assert.ok(done >= last);
      last = done;
    }
    const final = await streamed;
    assert.equal(final.status, "succeeded");
    assert.deepEqual(texts, final.output);
    assert.equal(last, 1500);
  });

  test("leaving the async iterator early closes the stream", TIMEOUT, async () => {
    const job = await rnn.submit({ seed: "the ", length: LONG });
    const streamed = rnn.stream(job.id);
    let text = "";
    for await (const chunk of streamed) {
      text += chunk.text;
      if (text.length >= 10) break;
    }
    await assert.rejects(streamed, { name: "AbortError" });
    const canceled = await rnn.cancel(job.id);
    assert.ok(canceled.output.startsWith(text));
  });

  test("stream stops on an AbortSignal", TIMEOUT, async () => {
    const job = await rnn.submit({ seed: "the ", length: LONG });
    const abort = new AbortController();
    let text = "";
    const streamed = rnn.stream(job.id, {
      signal: abort.signal,
      onText: (chunk) => {
        text += chunk;
        if (text.length >= 10) abort.abort();
      },
    });
    await assert.rejects(streamed, { name: "AbortError" });
    await rnn.cancel(job.id);
    assert.ok(text.length >= 10);
  });

  test("cancel ends a long job `canceled`, keeping the text so far", TIMEOUT, async () => {
    // 16 samples of 100,000 characters: cannot finish in the time this test takes.
    const job = await rnn.submit({ seed: "the ", length: LONG, n: 16 });
    const answer = await rnn.cancel(job.id);
    assert.equal(answer.id, job.id);
    assert.ok(["queued", "running", "canceled"].includes(answer.status), answer.status);
    const final = await rnn.stream(job.id);
    assert.equal(final.status, "canceled");
    assert.ok(final.progress.done < LONG * 16);
    assert.equal((await rnn.get(job.id)).status, "canceled");
  });

  test("cancel and get of an unknown job reject with an ApiError 404", TIMEOUT, async () => {
    await assert.rejects(rnn.get("no-such-job"), (error) => error instanceof ApiError && error.status === 404);
    await assert.rejects(rnn.cancel("no-such-job"), (error) => error.status === 404);
    await assert.rejects(rnn.stream("no-such-job"), (error) => error.status === 404);
    const err = await new Promise((resolve) => rnn.get("no-such-job", (error) => resolve(error)));
    assert.equal(err.status, 404);
  });

  test("generate rejects with a JobError when the job does not succeed", TIMEOUT, async () => {
    // A job that is canceled while generate waits for it (Prefer: wait) ends `canceled`.
    const model = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    const running = model.generate({ seed: "the ", length: LONG, n: 16, metadata: { test: "job-error" } });
    const listed = await waitFor(async () => {
      const { jobs } = await direct("GET", "/v1/jobs?limit=20");
      return jobs.find((found) => found.metadata?.test === "job-error" && !["succeeded", "canceled"].includes(found.status));
    }, 30_000, "the generate job to be created");
    await model.cancel(listed.id);
    await assert.rejects(running, (error) => {
      assert.ok(error instanceof JobError);
      assert.equal(error.status, "canceled");
      assert.equal(error.job.id, listed.id);
      assert.match(error.message, /canceled/);
      return true;
    });
  });

  describe("a stream through a proxy that drops the connection", () => {
    let proxy;

    before(async () => {
      proxy = await new CuttingProxy(BASE_URL, { cutAfter: 1500 }).start();
    });

    after(async () => {
      await proxy.stop();
    });

    test("resumes with Last-Event-ID and loses nothing", TIMEOUT, async () => {
      // Cut only once text has arrived, so the client has an event id to resume from, while the
      // job (16 x 100,000 characters: many seconds) is still running; then cancel it.
      const manual = await new CuttingProxy(BASE_URL, { cutAfter: null }).start();
      try {
        const through = charRNN(manual.url, MODEL, { apiKey: API_KEY });
        const job = await through.submit({ seed: "the ", length: 100000, n: 16, random_seed: 3 });
        const texts = Array(16).fill("");
        let received = 0;
        const finished = through.stream(job.id, (chunk, index) => {
          texts[index] += chunk;
          received += chunk.length;
        });
        await waitFor(() => received > 0, 30_000, "the first text");
        manual.cutNow();
        const before = received;
        await waitFor(() => manual.seen.length === 2 && received > before, 30_000, "text after the cut");
        await direct("POST", `/v1/jobs/${job.id}/cancel`);
        const final = await finished;
        assert.equal(manual.cutDone, 1);
        assert.equal(manual.seen.length, 2, "one cut stream, one resumed stream");
        const [first, resumed] = manual.seen;
        assert.doesNotMatch(first, /last-event-id:/i);
        assert.match(resumed, /last-event-id: *\d+-\d+/i);
        assert.equal(final.status, "canceled");
        assert.deepEqual(texts, final.output);
      } finally {
        await manual.stop();
      }
    });

    test("gives up after several failed reconnects with a clear error", TIMEOUT, async () => {
      proxy.cutDone = 0;
      proxy.cuts = Infinity;
      proxy.cutAfter = 0; // every stream response is cut before its first byte
      proxy.seen = [];
      const through = charRNN(proxy.url, MODEL, { apiKey: API_KEY, maxReconnects: 3 });
      const job = await through.submit({ seed: "a", length: 50 });
      await assert.rejects(through.stream(job.id), (error) => {
        assert.match(error.message, /lost the stream of job/);
        assert.match(error.message, /3 reconnects/);
        return true;
      });
      assert.equal(proxy.seen.length, 4); // the first try and 3 reconnects
    });
  });
});
