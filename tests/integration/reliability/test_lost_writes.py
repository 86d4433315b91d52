"""Writes Redis acknowledged and then lost, as a failover or a restart from a snapshot loses
them: the job store is what the workers repair from, not the messages.

- A Redis restarted from a snapshot taken while a job ran has the job running on its worker,
  which has long finished it: the worker requeues it, and the next attempt resumes the stored
  output to the text of an undisturbed run.
- A queued job whose broker message is gone is claimed by a worker that has a slot free.

The visibility timeout is set far beyond the tests' waits: it is not what brings them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from scripts.redis_server import RedisServer
from shared.celery_app import generation_queue
from tests.conftest import wait_for
from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.reliability.conftest import (
    broker_messages,
    calibrated_length,
    expected_texts,
    final_events,
    record,
)
from tests.integration.service.helpers import submit, wait_progress, wait_status

VISIBILITY_S = 3600  # a lost message would come back only after this
REPAIR_S = 90  # far longer than the few heartbeats a repair takes, far shorter than the above


@pytest.fixture(scope="module")
def snapshot_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start a redis-server that persists only the snapshots it is told to take (SAVE)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-rdb"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(snapshot_redis: RedisServer, start_api: StartApi) -> ApiHandle:
    """Start the API on the module's Redis."""
    return start_api(redis_url=snapshot_redis.url)


def test_a_queued_job_whose_message_is_lost_is_claimed_by_a_free_worker(
    snapshot_redis: RedisServer, api: ApiHandle, start_worker: StartWorker, model_dir: Path
) -> None:
    client = api.client(timeout=30)
    store = redis.Redis.from_url(snapshot_redis.url, decode_responses=True)
    job = submit(client, model="tiny", length=300, random_seed=7)
    store.delete(generation_queue("tiny"))  # no worker runs yet: the message was waiting there
    assert broker_messages(store, job["id"], "tiny") == 0

    worker = start_worker(
        redis_url=snapshot_redis.url, worker_models="tiny", visibility_timeout_s=VISIBILITY_S
    )
    done = wait_status(client, job["id"], timeout=REPAIR_S)
    assert done["status"] == "succeeded", done
    assert done["output"] == expected_texts(model_dir, "tiny", 300, [7])[0]
    assert final_events(store, job["id"]) == ["succeeded"]
    assert "job adopted" in worker.log()
    worker.stop()


def test_a_job_whose_end_is_lost_is_resumed_by_its_worker(
    snapshot_redis: RedisServer, api: ApiHandle, start_worker: StartWorker, model_dir: Path
) -> None:
    worker = start_worker(
        redis_url=snapshot_redis.url, worker_models="tiny", visibility_timeout_s=VISIBILITY_S
    )
    client = api.client(timeout=30)
    length = calibrated_length(client, "tiny", 3.0)
    job = submit(client, model="tiny", length=length, random_seed=11)
    wait_progress(client, job["id"], done=1)
    store = redis.Redis.from_url(snapshot_redis.url, decode_responses=True)
    store.save()  # what the restarted Redis will hold: the job running, part of its output
    saved = record(store, job["id"])
    assert saved["status"] == "running" and saved["attempts"] == "1", saved
    assert wait_status(client, job["id"])["status"] == "succeeded"
    store.close()

    snapshot_redis.kill()
    snapshot_redis.start()  # same port and folder: it loads the snapshot
    store = redis.Redis.from_url(snapshot_redis.url, decode_responses=True)

    def resumed() -> dict[str, str] | None:
        found = record(store, job["id"])
        return found if found.get("status") == "succeeded" else None

    ended = wait_for(resumed, REPAIR_S, "the job to end again")
    assert ended["attempts"] == "2", ended
    assert (
        wait_status(client, job["id"])["output"]
        == expected_texts(model_dir, "tiny", length, [11])[0]
    )
    assert final_events(store, job["id"]) == ["succeeded"]  # the first end was lost
    assert "the store had it running here" in worker.log()
