"""Next-character predictions asked by the API and answered by a generation worker, over Redis.

The API holds no weights and no compiled kernels; a worker already has both. A request is a
JSON message pushed on the model's list `lstmgen:predict:{model}`; the worker that pops it
pushes the answer on the request's own reply list, which expires soon after. Requests for
uploaded (and trained) models share one list, `lstmgen:predict-uploaded`, which every worker
serving the uploads queue pops; the message names the model and its version (the archive's
digest), which that worker loads through its model cache.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

PREFIX = "lstmgen:predict:"
REPLY_PREFIX = PREFIX + "reply:"
UPLOADED_KEY = "lstmgen:predict-uploaded"  # apart from every model's `lstmgen:predict:<name>`
REPLY_TTL_S = 30  # an answer nobody waits for any more is dropped


def request_key(model: str) -> str:
    """Return the list a model's prediction requests wait in."""
    return PREFIX + model


def ask(
    client: redis.Redis,
    model: str,
    body: dict[str, Any],
    timeout_s: float,
    *,
    version: str | None = None,
) -> Any:
    """Push a request for `model` (an upload of this `version`, if given) and return the
    worker's answer, or None after `timeout_s`."""
    reply = REPLY_PREFIX + uuid.uuid4().hex
    key = request_key(model) if version is None else UPLOADED_KEY
    named = {} if version is None else {"model": model, "version": version}
    message = json.dumps({"reply": reply, "deadline_s": timeout_s, **body, **named})
    pipe = client.pipeline(transaction=True)
    pipe.rpush(key, message)
    pipe.expire(key, max(1, int(timeout_s) + 1))  # unserved requests go away
    pipe.execute()
    found = client.blpop([reply], timeout=timeout_s)
    return None if found is None else json.loads(found[1])


def serve_one(
    client: redis.Redis,
    models: Sequence[str],
    answer: Callable[[str, dict[str, Any]], Any],
    wait_s: float,
    *,
    uploads: bool = False,
) -> bool:
    """Answer one waiting request of `models`, or with `uploads` of any uploaded model
    (waiting up to `wait_s`); return whether one came."""
    keys = [request_key(m) for m in models] + ([UPLOADED_KEY] if uploads else [])
    if not keys:
        time.sleep(wait_s)
        return False
    found = client.blpop(keys, timeout=wait_s)
    if found is None:
        return False
    key, message = found
    key = key.decode() if isinstance(key, bytes) else key
    body = json.loads(message)
    model = str(body["model"]) if key == UPLOADED_KEY else key[len(PREFIX) :]
    pipe = client.pipeline(transaction=True)
    pipe.rpush(body["reply"], json.dumps(answer(model, body)))
    pipe.expire(body["reply"], REPLY_TTL_S)
    pipe.execute()
    return True
