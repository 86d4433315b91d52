"""Fair dispatch between owners against a real Redis: turns, weights, priorities, limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import redis

from shared.jobs.records import (
    ClaimOutcome,
    CreateOutcome,
    Final,
    JobInput,
    JobStatus,
    JobTTLs,
    NewJob,
    Progress,
    new_job_id,
)
from shared.jobs.store import JobStore
from shared.jobs.tenants import Priority
from shared.settings import Settings

SETTINGS = Settings(queue_ttl_s=3600, retention_s=600)


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, JobTTLs.from_settings(SETTINGS))


def job(owner: str, **fields: object) -> NewJob:
    spec = JobInput(model="tiny", seed="a", length=10, temperature=1.0)
    base = NewJob(new_job_id(), owner, "tiny", spec, 1, 42, 10, "fp")
    return replace(base, **fields)  # type: ignore[arg-type]


def create(store: JobStore, new: NewJob, owner_max_queued: int = 0) -> str:
    outcome, job_id = store.create(
        new, idempotency=None, max_queue_depth=100_000, owner_max_queued=owner_max_queued
    )
    assert outcome is CreateOutcome.CREATED
    return job_id


def owners_of_next(store: JobStore, count: int) -> list[str]:
    """Claim `count` jobs and return whose each was."""
    owners = []
    for _ in range(count):
        claim = store.claim("tiny", "w", SETTINGS)
        assert claim.outcome is ClaimOutcome.CLAIMED
        found = store.get(claim.job_id)
        assert found is not None
        owners.append(found.owner)
    return owners


def test_an_owner_with_one_job_waiting_is_next_behind_another_owners_hundreds(
    store: JobStore,
) -> None:
    for _ in range(300):
        create(store, job("flood"))
    assert owners_of_next(store, 5) == ["flood"] * 5
    create(store, job("one"))
    assert owners_of_next(store, 1) == ["one"]
    for _ in range(3):
        create(store, job("few"))
    # Owners with work waiting take turns: "few" gets every other slot until it has none.
    assert Counter(owners_of_next(store, 6)) == {"few": 3, "flood": 3}
    assert set(owners_of_next(store, 4)) == {"flood"}


def test_weights_share_the_slots(store: JobStore) -> None:
    for _ in range(100):
        create(store, job("heavy", weight=3.0))
        create(store, job("light"))
    shares = Counter(owners_of_next(store, 40))
    assert abs(shares["heavy"] - 30) <= 1 and abs(shares["light"] - 10) <= 1


def test_priority_orders_one_owners_jobs_then_age(store: JobStore) -> None:
    ids = {
        name: create(store, job("alice", rank=Priority(name).rank))
        for name in ["low", "normal", "high"]
    }
    later_high = create(store, job("alice", rank=Priority.HIGH.rank))
    claimed = [store.claim("tiny", "w", SETTINGS).job_id for _ in range(4)]
    assert claimed == [ids["high"], later_high, ids["normal"], ids["low"]]


def test_an_owner_at_its_queued_limit_is_refused_and_only_it(store: JobStore) -> None:
    for _ in range(3):
        create(store, job("alice"), owner_max_queued=3)
    outcome, _ = store.create(
        job("alice"), idempotency=None, max_queue_depth=100, owner_max_queued=3
    )
    assert outcome is CreateOutcome.OWNER_FULL
    create(store, job("bob"), owner_max_queued=3)
    store.claim("tiny", "w", SETTINGS)  # alice's first starts: she may queue one more
    create(store, job("alice"), owner_max_queued=3)
    assert store.usage("alice") == (3, 1, 1)


def test_an_owner_at_its_running_limit_is_passed_over_until_a_job_ends(store: JobStore) -> None:
    first, second, third = (create(store, job("alice", n=2, max_running=4)) for _ in range(3))
    assert [store.claim("tiny", "w", SETTINGS).job_id for _ in range(2)] == [first, second]
    assert store.claim("tiny", "w", SETTINGS).outcome is ClaimOutcome.LIMITED
    bob = create(store, job("bob"))
    assert store.claim("tiny", "w", SETTINGS).job_id == bob
    update = Progress(first, 1, 20, ("", ""), (0, 0))
    store.finish([Final(update, JobStatus.SUCCEEDED, ("length", "length"))])
    assert store.usage("alice") == (1, 1, 2)
    assert store.claim("tiny", "w", SETTINGS).job_id == third
    assert store.claim("tiny", "w", SETTINGS).outcome is ClaimOutcome.EMPTY


def test_the_submission_bucket_allows_a_burst_then_the_rate(store: JobStore) -> None:
    assert [store.take_submission("alice", 1.0, 2) for _ in range(2)] == [0.0, 0.0]
    wait = store.take_submission("alice", 1.0, 2)
    assert 0.5 < wait <= 1.0
    assert store.take_submission("bob", 1.0, 2) == 0.0  # buckets are per owner
    assert store.take_submission("alice", 0.0, 1) == 0.0  # a rate of 0: no limit


def test_canceled_and_expired_jobs_leave_the_fair_queues(store: JobStore) -> None:
    canceled = create(store, job("alice"))
    kept = create(store, job("alice"))
    assert store.cancel(canceled, 1) == "canceled"
    assert store.usage("alice") == (1, 0, 0)
    assert store.claim("tiny", "w", SETTINGS).job_id == kept
    assert store.claim("tiny", "w", SETTINGS).outcome is ClaimOutcome.EMPTY
    assert store.client.exists("lstmgen:fair:tiny") == 0
