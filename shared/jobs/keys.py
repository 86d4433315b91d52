"""Redis keys of the job store, all under one prefix.

- `job:{id}`               hash: the record (status, input, progress, timestamps, attempts, ...)
- `job:{id}:events`        stream: `status`, `output` and `done` events (SSE ids are stream ids)
- `job:{id}:out:{i}`       string: output of sample i, appended as it is generated
- `job:{id}:prefix`        string: JSON list, per sample, of the text the job continues
- `jobs:queued`            sorted set: queued job ids by enqueue time (queue depth, expiry)
- `jobs:running`           sorted set: running job ids by claim time (dead-worker sweep)
- `owner:{owner}:jobs`     sorted set: job ids by creation time, per API key (listing)
- `idem:{owner}:{sha256}`  string: the job id created with that Idempotency-Key
- `fair:{model}`           sorted set: owners with jobs of the model waiting, by pass (next: lowest)
- `fair:{model}:{owner}`   sorted set: an owner's waiting jobs of the model, by priority and age
- `fair:{model}:vtime`     string: the pass of the last job claimed (a newly waiting owner joins)
- `owner:{owner}:queued`   sorted set: an owner's waiting jobs of every model (its queued limit)
- `owner:{owner}:running`  hash: an owner's running jobs and their samples (its running limit)
- `owner:{owner}:bucket`   hash: the owner's token bucket of submissions
- `replicated`             string: written before a `WAIT`, so that it covers the writes before it

The scripts find the `fair:` and `owner:` keys of a job from its owner and model (lua/prelude.lua
spells the prefix out again), so the store needs one Redis, not a cluster.
"""

from __future__ import annotations

import hashlib

PREFIX = "lstmgen:"
QUEUED_KEY = PREFIX + "jobs:queued"
RUNNING_KEY = PREFIX + "jobs:running"
REPLICATED_KEY = PREFIX + "replicated"


def job_key(job_id: str) -> str:
    """Return the key of a job's record hash."""
    return f"{PREFIX}job:{job_id}"


def events_key(job_id: str) -> str:
    """Return the key of a job's event stream."""
    return f"{PREFIX}job:{job_id}:events"


def output_key(job_id: str, index: int) -> str:
    """Return the key of output `index` of a job."""
    return f"{PREFIX}job:{job_id}:out:{index}"


def prefix_key(job_id: str) -> str:
    """Return the key of the text a job continues (`continue_from`)."""
    return f"{PREFIX}job:{job_id}:prefix"


def owner_key(owner: str) -> str:
    """Return the key of an owner's job index."""
    return f"{PREFIX}owner:{owner}:jobs"


def owner_queued_key(owner: str) -> str:
    """Return the key of an owner's waiting jobs."""
    return f"{PREFIX}owner:{owner}:queued"


def owner_running_key(owner: str) -> str:
    """Return the key of an owner's running jobs and their samples."""
    return f"{PREFIX}owner:{owner}:running"


def bucket_key(owner: str) -> str:
    """Return the key of an owner's token bucket of submissions."""
    return f"{PREFIX}owner:{owner}:bucket"


def idempotency_key(owner: str, key: str) -> str:
    """Return the Redis key that maps an owner's Idempotency-Key to its job."""
    return f"{PREFIX}idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def job_keys(job_id: str, n: int) -> list[str]:
    """Return the KEYS of the per-job scripts: hash, events, queued set, running set, outputs."""
    return [job_key(job_id), events_key(job_id), QUEUED_KEY, RUNNING_KEY] + [
        output_key(job_id, i) for i in range(n)
    ]
