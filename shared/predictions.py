"""Next-character predictions asked by the API and answered by a generation worker, over Redis.

The API holds no weights and no compiled kernels; a worker already has both. A request is a
JSON message pushed on the model's list `lstmgen:predict:{model}`; the worker that pops it
pushes the answer on the request's own reply list, which expires soon after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

PREFIX = "lstmgen:predict:"
REPLY_PREFIX = PREFIX + "reply:"
REPLY_TTL_S = 30  # an answer nobody waits for any more is dropped


def request_key(model: str) -> str:
    """Return the list a model's prediction requests wait in."""
    return PREFIX + model


def ask(client: redis.Redis, model: str, body: dict[str, Any], timeout_s: float) -> Any:
    """Push a request for `model` and return the worker's answer, or None after `timeout_s`."""
    reply = REPLY_PREFIX + uuid.uuid4().hex
    message = json.dumps({"reply": reply, "deadline_s": timeout_s, **body})
    pipe = client.pipeline(transaction=True)
    pipe.rpush(request_key(model), message)
    pipe.expire(request_key(model), max(1, int(timeout_s) + 1))  # unserved requests go away
    pipe.execute()
    found = client.blpop([reply], timeout=timeout_s)
    return None if found is None else json.loads(found[1])


def serve_one(
    client: redis.Redis,
    models: Sequence[str],
    answer: Callable[[str, dict[str, Any]], Any],
    wait_s: float,
) -> bool:
    """Answer one waiting request of `models` (waiting up to `wait_s`); return whether one came."""
    found = client.blpop([request_key(m) for m in models], timeout=wait_s)
    if found is None:
        return False
    key, message = found
    model = (key.decode() if isinstance(key, bytes) else key)[len(PREFIX) :]
    body = json.loads(message)
    pipe = client.pipeline(transaction=True)
    pipe.rpush(body["reply"], json.dumps(answer(model, body)))
    pipe.expire(body["reply"], REPLY_TTL_S)
    pipe.execute()
    return True
