"""The Python client against the real stack: gunicorn API, a Celery worker, redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from shared.client import ApiError, Client, Event, Job, parse_sse
from tests.conftest import wait_for
from tests.integration.client.cutting_proxy import CuttingProxy
from tests.integration.conftest import ApiHandle, StartApi, WorkerHandle, wait_record

LONG = 10_000_000  # characters: runs for many seconds with the tiny model
KEYS = ("key-alice", "key-bob")


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle) -> ApiHandle:
    """Start an open API in front of the worker, accepting LONG jobs."""
    return start_api(max_length=LONG)


@pytest.fixture(scope="module")
def keyed_stack(stack: ApiHandle, start_api: StartApi) -> ApiHandle:
    """Start a second API, on the same Redis and worker, that requires API keys."""
    return start_api(api_keys=",".join(KEYS))


@pytest.fixture
def client(stack: ApiHandle, redis_client: redis.Redis) -> Iterator[Client]:
    """Return a client of the open API over a flushed job store."""
    with Client(stack.url, timeout=60) as found:
        yield found


def test_submit_and_wait_reports_progress_until_done(client: Client) -> None:
    job = client.submit("tiny", seed="the ", length=300, temperature=0.8, random_seed=5)
    assert job.status in ("queued", "running") and job.model == "tiny"
    seen: list[Job] = []
    final = client.wait(job.id, timeout=60, on_progress=seen.append, poll_interval=0.05)
    assert final.status == "succeeded" and final.final
    assert len(final.text) == 300 and final.texts == [final.text]
    assert final.progress is not None and (final.progress.done, final.progress.total) == (300, 300)
    assert final.progress.fraction == 1.0
    assert final.random_seed == 5 and final.finish_reason == "length"
    assert final.metrics["chars_per_s"] and final.metrics["total_time_s"] is not None
    assert seen[-1] == final and all(isinstance(j, Job) for j in seen)


def test_prefer_wait_and_samples(client: Client) -> None:
    job = client.submit("tiny", seed="a", length=40, n=3, random_seed=1, wait=30)
    assert job.status == "succeeded"
    assert len(job.texts) == 3 and all(len(text) == 40 for text in job.texts)
    assert job.text == job.texts[0]


def test_stream_carries_the_whole_output_then_stops(client: Client) -> None:
    job = client.submit("tiny", seed="the ", length=500)
    events = list(client.stream(job.id))
    assert events[-1].event == "done" and events[-1].status == "succeeded"
    assert "running" in [event.status for event in events if event.event == "status"]
    streamed = "".join(event.text for event in events)
    assert streamed == client.get(job.id).text
    assert all(event.id for event in events)


def test_stream_resumes_from_an_event_id_without_loss(client: Client) -> None:
    job = client.submit("tiny", seed="the ", length=400)
    first: list[Event] = []
    for event in client.stream(job.id):
        first.append(event)
        if event.text:
            break  # leave after the first chunk, as a dropped connection would
    rest = list(client.stream(job.id, last_event_id=first[-1].id))
    assert "".join(e.text for e in first + rest) == client.get(job.id).text
    assert {e.id for e in first}.isdisjoint(e.id for e in rest)


def test_stream_reconnects_after_the_connection_is_cut(stack: ApiHandle, client: Client) -> None:
    job = client.submit("tiny", seed="the ", length=3000)
    proxy = CuttingProxy(stack.port, cut_after=700).start()
    try:
        with Client(proxy.url, timeout=10) as through_proxy:
            events = list(through_proxy.stream(job.id))
    finally:
        proxy.stop()
    assert proxy.cut_done == 1 and len(proxy.seen) == 2
    assert b"last-event-id:" in proxy.seen[1].lower()
    assert events[-1].event == "done"
    assert "".join(event.text for event in events) == client.get(job.id).text
    ids = [event.id for event in events]
    assert len(ids) == len(set(ids))  # nothing delivered twice


def test_cancel_keeps_the_partial_output(
    client: Client, worker: WorkerHandle, redis_client: redis.Redis
) -> None:
    job = client.submit("tiny", seed="the ", length=LONG)
    wait_for(lambda: client.get(job.id).text, 30, "the first characters")
    # The tiny model needs many seconds for LONG characters, and the cancel is recorded while
    # the worker is stopped: the job cannot have finished first.
    with worker.paused():
        client.cancel(job.id)
        wait_record(redis_client, job.id, status="running", cancel_requested="1")
    final = client.wait(job.id, timeout=10, poll_interval=0.05)
    assert final.status == "canceled"
    assert 0 < len(final.text) < LONG


def test_list_filters_by_status(client: Client) -> None:
    done = client.wait(client.submit("tiny", seed="a", length=10).id, timeout=30)
    queued = client.submit("tiny3", seed="a", length=10)  # no worker serves tiny3
    listed = client.list()
    assert [job.id for job in listed.jobs][:2] == [queued.id, done.id]
    assert [job.id for job in client.list(status="queued").jobs] == [queued.id]
    assert client.list(limit=1).next_cursor is not None
    client.cancel(queued.id)


def test_models_model_and_predict(client: Client) -> None:
    names = [model.name for model in client.models()]
    assert {"tiny", "tiny2", "tiny3"} <= set(names)
    info = client.model("tiny")
    assert info.name == "tiny" and info.properties["vocab_size"] == 33
    ranked = client.predict("tiny", "the ", temperature=1.0)
    assert len(ranked) == 33
    assert abs(sum(p.probability for p in ranked) - 1.0) < 1e-4
    assert ranked == sorted(ranked, key=lambda p: -p.probability)


def test_errors_carry_the_problem_details(client: Client) -> None:
    with pytest.raises(ApiError) as bad:
        client.submit("tiny", seed="a", length=0, temperature=99)
    assert bad.value.status == 422
    assert {e.field for e in bad.value.errors} == {"length", "temperature"}
    assert "temperature" in str(bad.value)
    with pytest.raises(ApiError) as unknown:
        client.submit("no-such-model", seed="a")
    assert [e.field for e in unknown.value.errors] == ["model"]
    with pytest.raises(ApiError) as missing:
        client.get("0123456789abcdef")
    assert missing.value.status == 404 and missing.value.title == "Not found"


def test_api_keys_authorize_and_isolate(keyed_stack: ApiHandle, redis_client: redis.Redis) -> None:
    with Client(keyed_stack.url) as anonymous, pytest.raises(ApiError) as denied:
        anonymous.list()
    assert denied.value.status == 401
    with (
        Client(keyed_stack.url, api_key=KEYS[0]) as alice,
        Client(keyed_stack.url, api_key=KEYS[1]) as bob,
    ):
        job = alice.submit("tiny", seed="a", length=5, wait=30)
        assert job.status == "succeeded"
        with pytest.raises(ApiError) as hidden:
            bob.get(job.id)
        assert hidden.value.status == 404
        assert bob.list().jobs == []


def test_sse_parser_follows_the_format() -> None:
    lines = ["retry: 1000", "", ": keepalive", "id: 1-0", "event: output", "data: a", "data: b", ""]
    lines += ['data: {"status": "running"}', "", "id: 2-0", "event: done", "data:x", ""]
    events = list(parse_sse(iter(lines)))
    assert events == [
        Event("output", "a\nb", "1-0"),
        Event("message", '{"status": "running"}', "1-0"),
        Event("done", "x", "2-0"),
    ]
    assert events[1].status == "running"
