"""TrainingStore against a real Redis: claim, progress, cancel, finish, lost workers."""

from __future__ import annotations

import json

import redis

from shared.jobs.records import JobStatus, JobTTLs
from shared.trainings.records import EpochMetrics, Progress, Training
from shared.trainings.store import RUNNING_KEY, TrainingStore, events_key, training_key

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
    claimed = store.claim("t1", "w1")
    assert claimed is not None and claimed.status is JobStatus.RUNNING
    assert (claimed.worker, claimed.attempts) == ("w1", 1)
    assert store.claim("t1", "w2") is None  # a second delivery of the message does nothing
    assert store.report("t1", "w1", Progress(1, 1, 5, 5), (EpochMetrics(1, 2.5, 2.75),))
    assert not store.report("t1", "w2", Progress(1, 1, 9, 9), ())  # not w2's to write
    assert store.finish("t1", JobStatus.FAILED, "not mine", worker="w2") is None
    ended = store.finish("t1", JobStatus.SUCCEEDED, worker="w1")
    assert ended is not None
    assert ended.progress == Progress(1, 1, 5, 5) and ended.metrics[0].val_loss_bpc == 2.75
    assert store.finish("t1", JobStatus.FAILED, "late", worker="w1") is None
    assert store.get("t1").status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert 0 < redis_client.ttl(training_key("t1")) <= TTLS.final_s
    assert redis_client.zcard(RUNNING_KEY) == 0


def test_cancel_ends_a_queued_training_and_flags_a_running_one(redis_client: redis.Redis) -> None:
    store = make(redis_client, "queued")
    canceled = store.cancel("queued")
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert store.claim("queued", "w1") is None  # never starts

    make(redis_client, "running")
    store.claim("running", "w1")
    still = store.cancel("running")
    assert still is not None and still.status is JobStatus.RUNNING
    assert store.cancel_requested("running")


def test_the_trainings_of_a_silent_worker_go_back_then_fail(redis_client: redis.Redis) -> None:
    store = make(redis_client, "lost")
    make(redis_client, "kept")
    store.beat("alive", 60)
    store.claim("kept", "alive")
    store.claim("lost", "dead")
    store.report("lost", "dead", Progress(1, 2, 3, 3), (EpochMetrics(1, 2.5, None),))
    requeued, failed = store.requeue_lost(max_attempts=2)
    assert [t.id for t in requeued] == ["lost"] and failed == []
    again = store.get("lost")
    assert again is not None and again.status is JobStatus.QUEUED and again.worker is None
    assert again.progress == Progress() and again.metrics == ()  # it starts from the top
    assert store.requeue_lost(max_attempts=2) == ([], [])  # once
    assert not store.report("lost", "dead", Progress(2, 2, 3, 3), ())  # the old run is fenced
    assert store.claim("lost", "alive") is not None  # attempt 2
    store.withdraw("alive")
    requeued, failed = store.requeue_lost(max_attempts=2)
    assert [t.id for t in requeued] == ["kept"] and [t.id for t in failed] == ["lost"]
    assert failed[0].error == "training worker lost 2 times while running this training"
    assert failed[0].status is JobStatus.FAILED


def test_every_change_is_appended_to_the_event_stream_in_order(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    store.claim("t1", "w1")
    store.report("t1", "w1", Progress(0, 2, 3, 10), ())
    store.report("t1", "w1", Progress(1, 2, 10, 10), (EpochMetrics(1, 2.5, None),))
    store.report("t1", "w1", Progress(1, 2, 10, 10), (EpochMetrics(1, 2.5, None),))  # the same
    store.finish("t1", JobStatus.FAILED, "boom", worker="w1")
    events = store.read_events("t1")
    assert [(e.event, json.loads(e.data)) for e in events] == [
        ("status", {"status": "queued"}),
        ("status", {"status": "running"}),
        ("progress", {"epoch": 0, "epochs": 2, "step": 3, "steps": 10}),
        ("metrics", {"epoch": 1, "loss_bpc": 2.5, "val_loss_bpc": None}),
        ("progress", {"epoch": 1, "epochs": 2, "step": 10, "steps": 10}),
        ("status", {"status": "failed", "error": "boom"}),
        ("done", {"status": "failed"}),
    ]
    assert [e.id for e in store.read_events("t1", events[3].id)] == [e.id for e in events[4:]]
    assert 0 < redis_client.ttl(events_key("t1")) <= TTLS.final_s
    store.finish("t1", JobStatus.SUCCEEDED, worker="w1")  # a final record stays: nothing is told
    assert len(store.read_events("t1")) == len(events)


def test_a_training_canceled_while_queued_tells_its_end(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    store.cancel("t1")
    assert [e.event for e in store.read_events("t1")] == ["status", "status", "done"]
    assert 0 < redis_client.ttl(events_key("t1")) <= TTLS.final_s


def test_a_training_requeued_from_a_lost_worker_tells_its_restart(
    redis_client: redis.Redis,
) -> None:
    store = make(redis_client)
    store.claim("t1", "dead")
    store.report("t1", "dead", Progress(0, 1, 4, 10), ())
    requeued, _ = store.requeue_lost(max_attempts=3)
    assert [t.id for t in requeued] == ["t1"]
    told = [(e.event, json.loads(e.data)) for e in store.read_events("t1")][3:]
    assert told == [
        ("status", {"status": "queued"}),
        ("progress", {"epoch": 0, "epochs": 0, "step": 0, "steps": 0}),
    ]
