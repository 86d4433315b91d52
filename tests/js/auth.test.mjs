// The JavaScript client against an API that requires keys (LSTMGEN_API_KEY is one of them).
//   LSTMGEN_URL=http://127.0.0.1:8000 LSTMGEN_API_KEY=some-key node --test tests/js/auth.test.mjs
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ApiError, charRNN } from "../../api/static/lstmgen.js";
import { API_KEY, BASE_URL, CuttingProxy, MODEL, SKIP } from "./helpers.mjs";

const TIMEOUT = { timeout: 120_000 };
const skip = SKIP || (API_KEY ? false : "LSTMGEN_API_KEY is not set (a key of a keyed API)");

function unauthorized(error) {
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.status, 401);
  assert.equal(error.problem.title, "Unauthorized");
  assert.match(error.message, /Unauthorized \(401\)/);
  return true;
}

describe("lstmgen.js client with API keys", { skip }, () => {
  test("a wrong key, or none, is refused with an ApiError 401", TIMEOUT, async () => {
    await assert.rejects(charRNN(BASE_URL, MODEL, { apiKey: `${API_KEY}-wrong` }).ready, unauthorized);
    const keyless = charRNN(BASE_URL, MODEL);
    await assert.rejects(keyless.ready, unauthorized);
    await assert.rejects(keyless.submit({ seed: "a", length: 5 }), unauthorized);
    await assert.rejects(keyless.predict(1), unauthorized);
    const err = await new Promise((resolve) => {
      charRNN(BASE_URL, MODEL, { apiKey: "nope" }, (error) => resolve(error));
    });
    unauthorized(err);
  });

  test("the right key is sent with every kind of request", TIMEOUT, async () => {
    const rnn = await charRNN(BASE_URL, MODEL, { apiKey: API_KEY }).ready;
    assert.equal(rnn.vocabSize, rnn.vocab.length);
    const { sample } = await rnn.generate({ seed: "the ", length: 25, temperature: 0 });
    assert.equal(sample.length, 25);
    await rnn.feed("th");
    const { probabilities } = await rnn.predict(0.5);
    assert.ok(probabilities.length === rnn.vocabSize);

    const job = await rnn.submit({ seed: "a", length: 400 });
    let text = "";
    const final = await rnn.stream(job.id, (chunk) => {
      text += chunk;
    });
    assert.equal(final.status, "succeeded");
    assert.equal(text, final.output);
    assert.equal((await rnn.get(job.id)).output, text);
    assert.equal((await rnn.cancel(job.id)).status, "succeeded"); // too late to cancel

    // Another key's client cannot see the job: jobs belong to their key.
    const other = charRNN(BASE_URL, MODEL, { apiKey: `${API_KEY}-wrong` });
    await assert.rejects(other.get(job.id), unauthorized);
  });

  test("a resumed stream sends the key again", TIMEOUT, async () => {
    const proxy = await new CuttingProxy(BASE_URL, { cutAfter: 800 }).start();
    try {
      const rnn = charRNN(proxy.url, MODEL, { apiKey: API_KEY });
      const job = await rnn.submit({ seed: "a", length: 3000 });
      let text = "";
      const final = await rnn.stream(job.id, (chunk) => {
        text += chunk;
      });
      assert.equal(proxy.cutDone, 1);
      assert.equal(proxy.seen.length, 2);
      for (const request of proxy.seen) assert.match(request, new RegExp(`authorization: bearer ${API_KEY}`, "i"));
      assert.equal(text, final.output);
    } finally {
      await proxy.stop();
    }
  });
});
