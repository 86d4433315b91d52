"""Prometheus metrics kept in Redis, so the API and any number of workers on any machine add up.

Processes record into Redis hashes (counters and histogram buckets); the API's `/metrics` reads
them at scrape time through `RedisCollector`. Recording never raises: a metric lost to a Redis
hiccup must not fail a job.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared.jobs.keys import owner_queued_key, owner_running_key

log = logging.getLogger(__name__)

PREFIX = "lstmgen:metrics:"
JOBS_KEY = PREFIX + "jobs"  # hash: status -> jobs that reached it
CHARS_KEY = PREFIX + "chars"  # hash: model -> characters generated
DELIVERIES_KEY = PREFIX + "webhook_deliveries"  # hash: outcome -> delivery attempts
KEY_REJECTIONS_KEY = PREFIX + "key_rejections"  # hash: "<key name>|<limit>" -> 429s
TRAININGS_KEY = PREFIX + "trainings"  # hash: status -> trainings that reached it
KOMBU_SEP = "\x06\x16"  # kombu's separator in priority queue names
KOMBU_PRIORITIES = (0, 3, 6, 9)  # kombu's default priority steps: one Redis list each

# Workers report liveness as keys "<WORKER_PREFIX><name>" that expire (see heartbeat()), listed
# in a set so that counting them never scans the keyspace (Celery hostnames contain "@", so no
# worker is named "index").
WORKER_PREFIX = "lstmgen:worker:"
WORKER_INDEX = WORKER_PREFIX + "index"


@dataclass(frozen=True)
class Histogram:
    """A histogram whose bucket counters live in one Redis hash."""

    name: str  # metric name without the _bucket/_sum/_count suffix
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    @property
    def key(self) -> str:
        """Return the Redis hash holding this histogram."""
        return f"{PREFIX}hist:{self.name}"

    def bucket_index(self, value: float) -> int:
        """Return the index of the smallest bucket holding `value` (len(buckets) for +Inf)."""
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                return index
        return len(self.buckets)


CHARS_PER_SECOND = Histogram(
    "lstmgen_job_chars_per_second",
    "Generation speed of finished jobs, characters per second of generation time.",
    ("model",),
    (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000),
)
TIME_TO_FINISH = Histogram(
    "lstmgen_job_time_to_finish_seconds",
    "Seconds from submit to a final status, by final status.",
    ("model", "status"),
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
HISTOGRAMS = (CHARS_PER_SECOND, TIME_TO_FINISH)


def _field(labels: Sequence[str], suffix: str) -> str:
    # Label values as JSON, then the bucket index / "sum" / "count": split on the last "|".
    return f"{json.dumps(list(labels))}|{suffix}"


def _observe(
    pipe: redis.client.Pipeline, hist: Histogram, labels: Sequence[str], value: float
) -> None:
    pipe.hincrby(hist.key, _field(labels, str(hist.bucket_index(value))), 1)
    pipe.hincrbyfloat(hist.key, _field(labels, "sum"), value)
    pipe.hincrby(hist.key, _field(labels, "count"), 1)


def _execute(pipe: redis.client.Pipeline, what: str) -> bool:
    try:
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics: could not record %s: %s", what, exc)
        return False
    return True


def record_status(client: redis.Redis, status: str) -> None:
    """Count one job entering `status` (the API counts `queued`; endings use record_finished)."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(JOBS_KEY, status, 1)
    _execute(pipe, f"status {status}")


def record_finished(
    client: redis.Redis,
    *,
    model: str,
    status: str,
    chars: int,
    generation_s: float | None,
    total_s: float | None,
) -> None:
    """Record a job that reached a final status: its count, characters, speed and time."""
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(JOBS_KEY, status, 1)
    if chars > 0:
        pipe.hincrby(CHARS_KEY, model, chars)
        if generation_s is not None and generation_s > 0:
            _observe(pipe, CHARS_PER_SECOND, (model,), chars / generation_s)
    if total_s is not None and math.isfinite(total_s) and total_s >= 0:
        _observe(pipe, TIME_TO_FINISH, (model, status), total_s)
    _execute(pipe, f"finished job ({model}, {status})")


def record_training(client: redis.Redis, status: str) -> None:
    """Count one training entering `status` (queued at create, then its final status)."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(TRAININGS_KEY, status, 1)
    _execute(pipe, f"training {status}")


def record_key_rejection(client: redis.Redis, key_name: str, limit: str) -> None:
    """Count one submission refused because its API key reached `limit`."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(KEY_REJECTIONS_KEY, f"{key_name}|{limit}", 1)
    _execute(pipe, f"key rejection ({key_name}, {limit})")


def record_delivery(client: redis.Redis, outcome: str) -> None:
    """Count one webhook delivery attempt by outcome (e.g. delivered, retry, failed, gone)."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(DELIVERIES_KEY, outcome, 1)
    _execute(pipe, f"webhook delivery {outcome}")


def heartbeat(
    client: redis.Redis,
    worker: str,
    ttl_s: float,
    batches: Mapping[str, Mapping[str, int]] | None = None,
    *,
    uploads: bool = False,
) -> bool:
    """Mark `worker` alive for `ttl_s` seconds (call it more often than that); return whether
    Redis took it.

    The value is JSON: `{"batches": {model: {"size": ..., "peak": ...}}, "uploads": ...}`, the
    sequences in each model's batch now and the most it has stepped together, and whether it
    serves uploaded models, for the API (predictions), operators and tests to read.
    """
    value = json.dumps({"batches": batches or {}, "uploads": uploads})
    pipe = client.pipeline(transaction=True)
    pipe.set(WORKER_PREFIX + worker, value, px=max(1, int(ttl_s * 1000)))
    pipe.sadd(WORKER_INDEX, worker)
    return _execute(pipe, f"heartbeat of {worker}")


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _counts(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {_decode(key): float(value) for key, value in raw.items()}


def queue_depths(client: redis.Redis, names: Iterable[str]) -> dict[str, int]:
    """Return the messages waiting in each named queue, summed over kombu's priority lists."""
    names = sorted(set(names))
    pipe = client.pipeline(transaction=False)
    for name in names:
        for priority in KOMBU_PRIORITIES:
            pipe.llen(f"{name}{KOMBU_SEP}{priority}" if priority else name)
    lengths = pipe.execute()
    steps = len(KOMBU_PRIORITIES)
    return {name: sum(lengths[i * steps : (i + 1) * steps]) for i, name in enumerate(names)}


def live_workers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Return each worker with a live heartbeat and what it reported; forget the dead ones."""
    names = sorted(_decode(name) for name in client.smembers(WORKER_INDEX))
    beats = client.mget([WORKER_PREFIX + name for name in names]) if names else []
    dead = [name for name, beat in zip(names, beats, strict=True) if beat is None]
    if dead:
        client.srem(WORKER_INDEX, *dead)
    return {
        name: _report(beat) for name, beat in zip(names, beats, strict=True) if beat is not None
    }


def _report(beat: bytes | str) -> dict[str, Any]:
    try:
        found = json.loads(beat)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def workers_up(client: redis.Redis) -> int:
    """Return how many workers have a live heartbeat."""
    return len(live_workers(client))


def _histogram_family(hist: Histogram, raw: dict[bytes, bytes]) -> HistogramMetricFamily:
    series: dict[tuple[str, ...], dict[str, float]] = {}
    for key, value in raw.items():
        labels_json, _, suffix = _decode(key).rpartition("|")
        series.setdefault(tuple(json.loads(labels_json)), {})[suffix] = float(value)
    family = HistogramMetricFamily(hist.name, hist.doc, labels=list(hist.labels))
    bounds = [*(_bound(b) for b in hist.buckets), "+Inf"]
    for labels, values in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for index, bound in enumerate(bounds):
            cumulative += values.get(str(index), 0.0)
            buckets.append((bound, cumulative))
        family.add_metric(list(labels), buckets, values.get("sum", 0.0))
    return family


def _bound(value: float) -> str:
    return repr(float(value))


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily,
    values: Iterable[tuple[str | tuple[str, ...], float]],
) -> CounterMetricFamily | GaugeMetricFamily:
    for labels, value in sorted(values):
        family.add_metric([labels] if isinstance(labels, str) else list(labels), value)
    return family


class RedisCollector(Collector):
    """Read the service's metrics from Redis at scrape time."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        queues: Callable[[], Iterable[str]],
        tenants: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._connect = connect
        self._queues = queues  # the Celery queues to report the depth of
        self._tenants = tenants  # owner id -> the name of its API key (a bounded set)

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family; only `lstmgen_redis_up 0` when Redis is unreachable."""
        up = GaugeMetricFamily("lstmgen_redis_up", "Whether Redis answered this scrape.")
        try:
            families = self._read(self._connect())
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable at scrape: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, client: redis.Redis) -> list[Metric]:
        pipe = client.pipeline(transaction=False)
        keys = (
            JOBS_KEY,
            CHARS_KEY,
            DELIVERIES_KEY,
            KEY_REJECTIONS_KEY,
            TRAININGS_KEY,
            *(h.key for h in HISTOGRAMS),
        )
        for key in keys:
            pipe.hgetall(key)
        jobs, chars, deliveries, rejections, trainings, *hists = pipe.execute()
        workers = live_workers(client)
        families: list[Metric] = [
            _labelled(
                CounterMetricFamily(
                    "lstmgen_jobs", "Jobs created (queued) and ended, by status.", labels=["status"]
                ),
                _counts(jobs).items(),
            ),
            _labelled(
                CounterMetricFamily(
                    "lstmgen_trainings",
                    "Trainings created (queued) and ended, by status.",
                    labels=["status"],
                ),
                _counts(trainings).items(),
            ),
            _labelled(
                CounterMetricFamily(
                    "lstmgen_characters_generated",
                    "Characters generated, by model.",
                    labels=["model"],
                ),
                _counts(chars).items(),
            ),
            _labelled(
                CounterMetricFamily(
                    "lstmgen_webhook_deliveries",
                    "Webhook delivery attempts, by outcome.",
                    labels=["outcome"],
                ),
                _counts(deliveries).items(),
            ),
            _labelled(
                GaugeMetricFamily(
                    "lstmgen_queue_depth", "Messages waiting in each queue.", labels=["queue"]
                ),
                (
                    (name, float(depth))
                    for name, depth in queue_depths(client, self._queues()).items()
                ),
            ),
            GaugeMetricFamily(
                "lstmgen_workers_up", "Workers with a live heartbeat.", value=len(workers)
            ),
            _batch_sizes(workers),
            _labelled(
                CounterMetricFamily(
                    "lstmgen_key_rejections",
                    "Submissions refused with 429 because their API key reached a limit.",
                    labels=["key", "limit"],
                ),
                ((tuple(name.split("|", 1)), n) for name, n in _counts(rejections).items()),
            ),
            *_tenant_gauges(client, self._tenants()),
        ]
        families.extend(_histogram_family(h, raw) for h, raw in zip(HISTOGRAMS, hists, strict=True))
        return families


def _tenant_gauges(client: redis.Redis, tenants: Mapping[str, str]) -> list[Metric]:
    """Return each API key's jobs queued and samples running, by the key's name."""
    queued = GaugeMetricFamily(
        "lstmgen_key_jobs_queued", "Jobs waiting to start, by API key name.", labels=["key"]
    )
    running = GaugeMetricFamily(
        "lstmgen_key_samples_running", "Samples running, by API key name.", labels=["key"]
    )
    owners = list(tenants.items())
    pipe = client.pipeline(transaction=False)
    for owner, _ in owners:
        pipe.zcard(owner_queued_key(owner))
        pipe.hvals(owner_running_key(owner))
    replies = pipe.execute()
    for index, (_, name) in enumerate(owners):
        queued.add_metric([name], float(replies[2 * index]))
        running.add_metric([name], float(sum(int(n) for n in replies[2 * index + 1])))
    return [queued, running]


def _batch_sizes(workers: Mapping[str, Mapping[str, Any]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "lstmgen_batch_sequences",
        "Sequences generating together in each worker's batch of a model.",
        labels=["worker", "model"],
    )
    for worker, report in sorted(workers.items()):
        batches = report.get("batches")
        for model, batch in sorted(batches.items() if isinstance(batches, Mapping) else []):
            if isinstance(batch, Mapping) and isinstance(batch.get("size"), int | float):
                family.add_metric([worker, str(model)], float(batch["size"]))
    return family
