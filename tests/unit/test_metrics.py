"""Metrics recorded into Redis by any process add up in one scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from scripts.redis_server import RedisServer
from shared import metrics


@pytest.fixture(scope="module")
def metrics_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start a redis-server for this module."""
    with RedisServer(tmp_path_factory.mktemp("metrics-redis"), appendonly=False) as server:
        yield server


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def client(
    metrics_redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[redis.Redis]:
    """Return a client of a flushed Redis, with and without decoded responses."""
    connection = redis.Redis.from_url(metrics_redis_server.url, decode_responses=request.param)
    connection.flushall()
    yield connection
    connection.flushall()
    connection.close()


QUEUES = ("lstmgen.gen.a", "lstmgen.gen.b")


def scrape(client: redis.Redis) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of one scrape, keyed by (name, sorted labels)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RedisCollector(lambda: client, lambda: QUEUES))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_from_many_recorders_add_up(client: redis.Redis) -> None:
    for _ in range(3):
        metrics.record_status(client, "queued")
    metrics.record_finished(
        client, model="a", status="succeeded", chars=100, generation_s=2.0, total_s=2.5
    )
    metrics.record_finished(
        client, model="a", status="succeeded", chars=300, generation_s=1.0, total_s=1.5
    )
    metrics.record_finished(
        client, model="b", status="canceled", chars=0, generation_s=None, total_s=0.2
    )
    metrics.record_delivery(client, "delivered")
    metrics.record_delivery(client, "retry")
    metrics.record_delivery(client, "retry")
    metrics.record_training(client, "queued")
    metrics.record_training(client, "succeeded")
    found = scrape(client)
    assert found[("lstmgen_redis_up", ())] == 1
    assert found[("lstmgen_trainings_total", (("status", "queued"),))] == 1
    assert found[("lstmgen_trainings_total", (("status", "succeeded"),))] == 1
    assert found[("lstmgen_jobs_total", (("status", "queued"),))] == 3
    assert found[("lstmgen_jobs_total", (("status", "succeeded"),))] == 2
    assert found[("lstmgen_jobs_total", (("status", "canceled"),))] == 1
    assert found[("lstmgen_characters_generated_total", (("model", "a"),))] == 400
    assert ("lstmgen_characters_generated_total", (("model", "b"),)) not in found
    assert found[("lstmgen_webhook_deliveries_total", (("outcome", "retry"),))] == 2
    speed = ("model", "a")
    assert found[("lstmgen_job_chars_per_second_count", (speed,))] == 2
    assert found[("lstmgen_job_chars_per_second_sum", (speed,))] == 350  # 50 + 300
    assert found[("lstmgen_job_chars_per_second_bucket", (("le", "50.0"), speed))] == 1
    assert found[("lstmgen_job_chars_per_second_bucket", (("le", "250.0"), speed))] == 1
    assert found[("lstmgen_job_chars_per_second_bucket", (("le", "500.0"), speed))] == 2
    assert found[("lstmgen_job_chars_per_second_bucket", (("le", "+Inf"), speed))] == 2
    done = (("model", "a"), ("status", "succeeded"))
    assert found[("lstmgen_job_time_to_finish_seconds_count", done)] == 2
    assert found[("lstmgen_job_time_to_finish_seconds_bucket", (("le", "1.0"), *done))] == 0
    assert found[("lstmgen_job_time_to_finish_seconds_bucket", (("le", "2.5"), *done))] == 2


def test_queue_depth_counts_every_priority_list_of_the_named_queues(
    client: redis.Redis,
) -> None:
    client.rpush("lstmgen.gen.a", "m1", "m2")
    client.rpush(f"lstmgen.gen.a{metrics.KOMBU_SEP}3", "m3")
    client.rpush("lstmgen.gen.unnamed", "x")
    found = scrape(client)
    assert found[("lstmgen_queue_depth", (("queue", "lstmgen.gen.a"),))] == 3
    assert found[("lstmgen_queue_depth", (("queue", "lstmgen.gen.b"),))] == 0
    assert ("lstmgen_queue_depth", (("queue", "lstmgen.gen.unnamed"),)) not in found


def test_workers_up_follows_heartbeats_and_reports_batches(client: redis.Redis) -> None:
    batches = {"tiny": {"size": 3, "peak": 5}}
    metrics.heartbeat(client, "gen1@host", ttl_s=30, batches=batches)
    metrics.heartbeat(client, "gen2@host", ttl_s=30)
    metrics.heartbeat(client, "gen1@host", ttl_s=30, batches=batches)  # a refresh: one worker
    found = scrape(client)
    assert found[("lstmgen_workers_up", ())] == 2
    assert found[("lstmgen_batch_sequences", (("model", "tiny"), ("worker", "gen1@host")))] == 3
    client.delete(metrics.WORKER_PREFIX + "gen2@host")  # stopped, or its heartbeat expired
    assert metrics.workers_up(client) == 1
    assert client.smembers(metrics.WORKER_INDEX) in ({b"gen1@host"}, {"gen1@host"})


def test_unreachable_redis_scrapes_as_down_and_recording_does_not_raise() -> None:
    gone = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    metrics.record_status(gone, "queued")
    metrics.record_finished(gone, model="a", status="failed", chars=1, generation_s=1, total_s=1)
    metrics.record_delivery(gone, "failed")
    metrics.heartbeat(gone, "w", ttl_s=1)
    assert scrape(gone) == {("lstmgen_redis_up", ()): 0}


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    hist = metrics.CHARS_PER_SECOND
    assert hist.bucket_index(10) == 0
    assert hist.bucket_index(10.5) == 1
    assert hist.bucket_index(1e9) == len(hist.buckets)
