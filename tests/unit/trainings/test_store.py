"""TrainingStore against a real Redis: claim, progress, cancel and finish."""

from __future__ import annotations

import redis

from shared.jobs.records import JobStatus, JobTTLs
from shared.trainings.records import EpochMetrics, Progress, Training
from shared.trainings.store import TrainingStore, training_key

TTLS = JobTTLs(active_s=600, final_s=60)


def make(client: redis.Redis, training_id: str = "t1") -> TrainingStore:
    store = TrainingStore(client, TTLS)
    assert store.create(Training(id=training_id, owner="alice", name="m", params={"epochs": 1}))
    return store


def test_a_record_round_trips_and_is_seen_only_by_its_owner(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    assert store.owned("t1", "alice") == store.get("t1")
    assert store.owned("t1", "bob") is None
    assert not store.create(Training(id="t1", owner="bob", name="x", params={}))


def test_a_claimed_training_reports_progress_and_finishes_once(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    claimed = store.claim("t1")
    assert claimed is not None and claimed.status is JobStatus.RUNNING
    assert store.claim("t1") is None  # a second delivery of the message does nothing
    store.report("t1", Progress(1, 1, 5, 5), (EpochMetrics(1, 2.5, 2.75),))
    ended = store.finish("t1", JobStatus.SUCCEEDED)
    assert ended.progress == Progress(1, 1, 5, 5) and ended.metrics[0].val_loss_bpc == 2.75
    assert store.finish("t1", JobStatus.FAILED, "late").status is JobStatus.SUCCEEDED
    assert 0 < redis_client.ttl(training_key("t1")) <= TTLS.final_s


def test_cancel_ends_a_queued_training_and_flags_a_running_one(redis_client: redis.Redis) -> None:
    store = make(redis_client, "queued")
    canceled = store.cancel("queued")
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert store.claim("queued") is None  # never starts

    make(redis_client, "running")
    store.claim("running")
    still = store.cancel("running")
    assert still is not None and still.status is JobStatus.RUNNING
    assert store.cancel_requested("running")
