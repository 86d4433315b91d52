"""The job store against a real Redis: compare-and-set transitions, TTLs, indexes, events."""

from __future__ import annotations

import json

import pytest
import redis

from shared.jobs.keys import QUEUED_KEY, RUNNING_KEY, events_key, job_key, output_key
from shared.jobs.records import (
    CancelOutcome,
    Claim,
    ClaimOutcome,
    CreateOutcome,
    Final,
    FlushOutcome,
    JobError,
    JobInput,
    JobStatus,
    JobTTLs,
    NewJob,
    Progress,
    new_job_id,
)
from shared.jobs.serialize import serialize_job
from shared.jobs.store import JobStore
from shared.settings import Settings

SETTINGS = Settings(max_attempts=2, queue_ttl_s=3600, retention_s=600)


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    """Return a store over the flushed session Redis."""
    return JobStore(redis_client, JobTTLs.from_settings(SETTINGS))


def new_job(owner: str = "alice", n: int = 1, job_id: str | None = None) -> NewJob:
    """Return a job as the API would store it."""
    spec = JobInput(model="tiny", seed="a", length=10, temperature=1.0, n=n)
    return NewJob(job_id or new_job_id(), owner, "tiny", spec, n, 42, 10 * n, "fp-" + owner)


def create(store: JobStore, job: NewJob, depth: int = 100) -> str:
    """Store a job and return its id."""
    outcome, job_id = store.create(job, idempotency=None, max_queue_depth=depth)
    assert outcome is CreateOutcome.CREATED
    return job_id


BEATS = "test:beat:"  # heartbeat keys of the workers in these tests


def claim(store: JobStore, worker: str, settings: Settings = SETTINGS, **options: str) -> Claim:
    """Claim the next job of model `tiny` for a worker."""
    return store.claim("tiny", worker, settings, **options)


def progress(
    job_id: str, attempt: int, done: int, *chunks: str, bases: tuple[int, ...]
) -> Progress:
    """Return an update that appends `chunks` after `bases` stored characters."""
    return Progress(job_id, attempt, done, chunks, bases)


def events(store: JobStore, job_id: str) -> list[tuple[str, dict[str, object]]]:
    """Return a job's events as (type, data)."""
    return [(e.event, json.loads(e.data)) for e in store.read_events(job_id)]


def test_create_queues_the_job_with_an_event_and_a_ttl(store: JobStore) -> None:
    job_id = create(store, new_job())
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.outputs == ("",) and job.total == 10 and job.attempts == 0
    assert store.queue_depth() == 1
    assert events(store, job_id) == [("status", {"status": "queued"})]
    ttl = store.client.ttl(job_key(job_id))
    assert 0 < ttl <= store.ttls.active_s
    assert job.expires_at == pytest.approx(job.created_at + store.ttls.active_s, abs=1)


def test_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first = store.create(new_job(), idempotency="key-1", max_queue_depth=10)
    again = store.create(new_job(), idempotency="key-1", max_queue_depth=10)
    other_owner = store.create(new_job("bob"), idempotency="key-1", max_queue_depth=10)
    assert first[0] is CreateOutcome.CREATED
    assert again == (CreateOutcome.EXISTING, first[1])
    assert other_owner[0] is CreateOutcome.CREATED and other_owner[1] != first[1]


def test_a_client_id_is_created_once_and_the_queue_has_a_limit(store: JobStore) -> None:
    assert create(store, new_job(job_id="mine-1"), depth=2) == "mine-1"
    assert store.create(new_job(job_id="mine-1"), idempotency=None, max_queue_depth=2) == (
        CreateOutcome.EXISTS,
        "mine-1",
    )
    create(store, new_job(), depth=2)
    outcome, _ = store.create(new_job(), idempotency=None, max_queue_depth=2)
    assert outcome is CreateOutcome.FULL
    assert store.queue_depth() == 2


def test_claim_flush_finish_records_output_once(store: JobStore) -> None:
    job_id = create(store, new_job(n=2))
    claimed = claim(store, "w1")
    assert claimed.outcome is ClaimOutcome.CLAIMED and claimed.attempt == 1
    assert claimed.job_id == job_id
    assert store.queue_depth() == 0 and store.client.zscore(RUNNING_KEY, job_id) is not None
    assert store.flush([progress(job_id, 1, 3, "abc", "x", bases=(0, 0))]) == [FlushOutcome.OK]
    last = progress(job_id, 1, 6, "d", "yz", bases=(3, 1))
    final = Final(last, JobStatus.SUCCEEDED, ("length", "stop"))
    assert store.finish([final]) == [FlushOutcome.OK]
    assert store.finish([final]) == [FlushOutcome.GONE]  # a second result is refused
    late = progress(job_id, 1, 9, "late", "", bases=(4, 3))
    assert store.flush([late]) == [FlushOutcome.GONE]
    assert store.client.zscore(RUNNING_KEY, job_id) is None
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert job.outputs == ("abcd", "xyz") and job.done == 6
    assert job.finish_reasons == ("length", "stop")
    body = serialize_job(job, "http://h")
    assert body["output"] == ["abcd", "xyz"] and body["finish_reason"] == ["length", "stop"]
    assert body["urls"]["cancel"] == f"http://h/v1/jobs/{job_id}/cancel"
    types = [event for event, _ in events(store, job_id)]
    assert types == ["status", "status", "output", "output", "output", "output", "status", "done"]
    assert claim(store, "w2").outcome is ClaimOutcome.EMPTY


def test_get_reads_jobs_of_one_sample_and_of_several_as_get_many_does(store: JobStore) -> None:
    one, two = create(store, new_job()), create(store, new_job(n=2))
    claim(store, "w1")
    claim(store, "w1")
    updates = [progress(one, 1, 2, "hi", bases=(0,)), progress(two, 1, 3, "ab", "c", bases=(0, 0))]
    assert store.flush(updates) == [FlushOutcome.OK, FlushOutcome.OK]
    for job_id, outputs in [(one, ("hi",)), (two, ("ab", "c"))]:
        job = store.get(job_id)
        assert job is not None and job.outputs == outputs
        assert [job] == store.get_many([job_id])
    assert store.get("no-such-job") is None


def test_final_state_starts_retention_on_every_key(store: JobStore) -> None:
    job_id = create(store, new_job())
    claim(store, "w1")
    update = progress(job_id, 1, 2, "hi", bases=(0,))
    store.finish([Final(update, JobStatus.SUCCEEDED, ("length",))])
    for key in (job_key(job_id), events_key(job_id), output_key(job_id, 0)):
        assert 0 < store.client.ttl(key) <= SETTINGS.retention_s
    job = store.get(job_id)
    assert job is not None and job.completed_at is not None and job.expires_at is not None
    assert job.expires_at == pytest.approx(job.completed_at + SETTINGS.retention_s)


def test_a_requeued_job_supersedes_the_old_attempt(store: JobStore) -> None:
    job_id = create(store, new_job())
    claim(store, "w1")  # w1 has no heartbeat: it is lost
    store.flush([progress(job_id, 1, 4, "abcd", bases=(0,))])
    assert store.requeue_lost(BEATS) == [(job_id, "")]
    second = claim(store, "w2")
    assert second.attempt == 2 and store.stored_lengths(job_id, 1) == [4]
    assert store.flush([progress(job_id, 1, 5, "e", bases=(4,))]) == [FlushOutcome.GONE]
    assert store.flush([progress(job_id, 2, 5, "e", bases=(4,))]) == [FlushOutcome.OK]
    # The attempt cap: a job whose worker died max_attempts times fails instead of looping.
    assert store.requeue_lost(BEATS) == [(job_id, "")]
    third = claim(store, "w3")
    assert third.outcome is ClaimOutcome.EMPTY and third.ended == (job_id,)
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.outputs == ("abcde",)
    assert job.error == JobError("worker_lost", "worker lost 2 times while running this job")


def test_cancel_queued_is_final_and_running_is_cooperative(store: JobStore) -> None:
    queued = create(store, new_job())
    assert store.cancel(queued, 1) == "canceled"
    assert claim(store, "w1").outcome is ClaimOutcome.EMPTY  # its message starts nothing
    assert store.queue_depth() == 0
    running = create(store, new_job())
    assert claim(store, "w1").job_id == running
    assert store.cancel(running, 1) == "requested"
    assert store.flush([progress(running, 1, 2, "ab", bases=(0,))]) == [FlushOutcome.CANCEL]
    store.finish([Final(progress(running, 1, 3, "c", bases=(2,)), JobStatus.CANCELED)])
    job = store.get(running)
    assert job is not None and job.status is JobStatus.CANCELED and job.outputs == ("abc",)
    assert store.cancel(running, 1) is CancelOutcome.FINAL
    assert store.cancel(queued, 1) is CancelOutcome.FINAL
    assert store.cancel("no-such-job", 1) is CancelOutcome.MISSING


def test_expiry_by_claim_and_by_sweep(store: JobStore) -> None:
    impatient = Settings(queue_ttl_s=0.001)
    first, second = create(store, new_job()), create(store, new_job())
    store.client.hset(job_key(first), "queued_at", "0")
    store.client.hset(job_key(second), "queued_at", "0")
    expired = claim(store, "w1", impatient)
    assert expired.outcome is ClaimOutcome.EMPTY and expired.ended == (first, second)
    second = create(store, new_job())
    store.client.zadd(QUEUED_KEY, {second: 0})
    store.client.hset(job_key(second), "queued_at", "0")
    assert store.expire_stale(impatient.queue_ttl_s) == [second]
    for job_id in (first, second):
        job = store.get(job_id)
        assert job is not None and job.status is JobStatus.EXPIRED
        assert job.error is not None and job.error.type == "expired"
    assert store.queue_depth() == 0


def test_release_puts_the_job_back_uncounted(store: JobStore) -> None:
    job_id = create(store, new_job())
    claim(store, "w1")
    assert store.release(job_id, 1, 1)
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
    assert store.queue_depth() == 1
    again = claim(store, "w2")
    assert (again.job_id, again.attempt) == (job_id, 1)


def test_a_write_after_a_lost_or_unanswered_one_is_refused_until_it_starts_from_the_store(
    store: JobStore,
) -> None:
    job_id = create(store, new_job(n=2))
    claim(store, "w1")
    assert store.flush([progress(job_id, 1, 4, "ab", "ĉd", bases=(0, 0))]) == [FlushOutcome.OK]
    # The writer thinks less is stored (its last answer was lost) or more (a failover lost
    # the write): nothing is written, and it learns the stored lengths, in characters.
    for bases in [(0, 0), (2, 5)]:
        update = progress(job_id, 1, 6, "ef", "g", bases=bases)
        assert store.flush([update]) == [FlushOutcome.REBASE]
        assert store.finish([Final(update, JobStatus.SUCCEEDED)]) == [FlushOutcome.REBASE]
    assert store.stored_lengths(job_id, 2) == [2, 2]
    update = progress(job_id, 1, 7, "ef", "g", bases=(2, 2))
    assert store.finish([Final(update, JobStatus.SUCCEEDED, ("length", "length"))]) == [
        FlushOutcome.OK
    ]
    job = store.get(job_id)
    assert job is not None and job.outputs == ("abef", "ĉdg")


def test_the_jobs_of_a_worker_without_heartbeat_are_requeued_counted_and_fenced(
    store: JobStore,
) -> None:
    alive, lost = create(store, new_job()), create(store, new_job())
    store.client.set(BEATS + "w-alive", "{}")
    assert claim(store, "w-alive", delivery="tag-a").job_id == alive
    assert claim(store, "w-lost", delivery="tag-l").job_id == lost
    store.flush([progress(lost, 1, 2, "ab", bases=(0,))])
    assert store.requeue_lost(BEATS) == [(lost, "tag-l")]
    assert store.requeue_lost(BEATS) == []  # once
    job = store.get(lost)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 1
    assert job.outputs == ("ab",) and job.worker is None
    assert store.queue_depth() == 1 and store.client.zscore(RUNNING_KEY, alive) is not None
    assert events(store, lost)[-1] == ("status", {"status": "queued", "reason": "worker_lost"})
    # The lost worker, if it was only paused, can no longer write.
    assert store.flush([progress(lost, 1, 3, "c", bases=(2,))]) == [FlushOutcome.GONE]
    assert claim(store, "w-alive").attempt == 2
    assert store.flush([progress(lost, 1, 3, "c", bases=(2,))]) == [FlushOutcome.GONE]
    # Lost as often as max_attempts allows: the next claim fails the job.
    assert store.requeue_lost(BEATS) == []  # w-alive beats
    store.client.delete(BEATS + "w-alive")
    assert {job_id for job_id, _ in store.requeue_lost(BEATS)} == {alive, lost}
    assert claim(store, "w3").job_id == alive  # the older of the two first
    last = claim(store, "w3")
    assert (last.outcome, last.ended) == (ClaimOutcome.EMPTY, (lost,))
    failed = store.get(lost)
    assert failed is not None and failed.status is JobStatus.FAILED


def test_jobs_a_live_worker_no_longer_holds_are_requeued(store: JobStore) -> None:
    held, dropped, other = (create(store, new_job()) for _ in range(3))
    for job_id, worker, tag in ((held, "w1", "tag-h"), (dropped, "w1", "tag-d"), (other, "w2", "")):
        assert claim(store, worker, delivery=tag).job_id == job_id
    fresh = create(store, new_job())
    store.client.zadd(RUNNING_KEY, {held: 1.0, dropped: 1.0, other: 1.0})  # claimed long ago
    assert claim(store, "w1").job_id == fresh  # just claimed: its answer may be on its way
    assert store.requeue_unheld("w1", {held}, grace_s=60) == [(dropped, "tag-d")]
    assert store.requeue_unheld("w1", {held}, grace_s=60) == []  # once
    job = store.get(dropped)
    assert job is not None and job.status is JobStatus.QUEUED and job.worker is None
    assert claim(store, "w3").job_id == dropped  # another attempt takes it up


def test_queued_before_lists_the_jobs_that_waited(store: JobStore) -> None:
    old, new = create(store, new_job()), create(store, new_job())
    store.client.zadd(QUEUED_KEY, {old: 1.0})
    assert store.queued_before(60) == [(old, "tiny")]
    assert {job_id for job_id, _ in store.queued_before(0)} == {old, new}


def test_the_text_a_job_continues_is_stored_with_it(store: JobStore) -> None:
    job = new_job(n=2)
    job = NewJob(**{**job.__dict__, "prefix": ("first", "sécond")})
    job_id = create(store, job)
    assert store.prefix(job_id) == ("first", "sécond")
    assert store.prefix(create(store, new_job())) == ()


def test_listing_pages_newest_first_with_a_status_filter(store: JobStore) -> None:
    ids = [create(store, new_job()) for _ in range(7)]
    create(store, new_job("bob"))
    store.cancel(ids[2], 1)
    page, cursor = store.list_jobs("alice", limit=3)
    seen = [job.id for job in page]
    while cursor is not None:
        page, cursor = store.list_jobs("alice", limit=3, before=cursor)
        seen += [job.id for job in page]
    assert seen == ids[::-1]
    canceled, _ = store.list_jobs("alice", statuses=[JobStatus.CANCELED])
    assert [job.id for job in canceled] == [ids[2]]
    store.client.delete(job_key(ids[0]))  # expired records drop out of the index
    assert ids[0] not in [job.id for job in store.list_jobs("alice", limit=50)[0]]


def test_abandon_fails_a_job_that_could_not_be_enqueued(store: JobStore) -> None:
    job_id = create(store, new_job())
    assert store.abandon(job_id, 1, "enqueue_failed", "broker down")
    job = store.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert not store.abandon(job_id, 1, "enqueue_failed", "again")
