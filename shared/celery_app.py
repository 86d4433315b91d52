"""The Celery application: broker settings, task names and queue names.

The API enqueues by task name (it never imports `worker/`); workers register the tasks.
Job state lives in our own records (`shared.jobs`), so no result backend is used.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import redis
from celery import Celery

from shared.redis_connection import is_sentinel
from shared.settings import Settings

GENERATE_TASK = "lstmgen.generate"
WEBHOOK_TASK = "lstmgen.deliver_webhook"
WEBHOOK_QUEUE = "lstmgen.webhooks"
GENERATION_QUEUE_PREFIX = "lstmgen.gen."
CHECK_MODEL_TASK = "lstmgen.check_model"
# Uploaded models share one queue that every worker consumes (its message names the model),
# so a worker serves a model uploaded after it started without any change to its consumers.
UPLOADED_QUEUE = "lstmgen.uploaded"
MODELS_QUEUE = "lstmgen.models"  # checks of uploads, taken by any generation worker
TRAIN_TASK = "lstmgen.train"
TRAINING_QUEUE = "lstmgen.training"  # taken only by `--training` workers (they import TensorFlow)
UNACKED_INDEX = "unacked_index"  # kombu's sorted set of delivered, unacknowledged messages


def generation_queue(model: str) -> str:
    """Return the queue of the generation jobs for a model."""
    return GENERATION_QUEUE_PREFIX + model


def make_celery(settings: Settings) -> Celery:
    """Return a Celery app that talks to the settings' Redis, with reliable delivery."""
    app = Celery("lstmgen", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        # A job is acknowledged only once its final state is recorded, and requeued if the
        # worker process dies; the attempt counter in the job record caps redeliveries.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # A worker renews the broker messages of its running jobs at every heartbeat (see
            # renew_unacked), so only the jobs of a worker that stopped come back.
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_index_key": UNACKED_INDEX,
            # kombu sweeps for messages of dead workers only every interval * throttle
            # seconds (100 s by default); sweep at least every tenth of the timeout instead.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
            **_sentinel_options(settings),
        },
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=generation_queue("default"),
        broker_connection_retry_on_startup=True,
        # Tasks survive a broker restart: their records are guarded by compare-and-set.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Fail fast when Redis is down so the API can answer 503 instead of hanging.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        worker_pool="threads",
        worker_concurrency=settings.worker_slots,
    )
    return app


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """Return kombu's transport options for a Sentinel URL (none for a plain one)."""
    if not is_sentinel(settings.redis_url):
        return {}
    # kombu asks the sentinels for the primary on every (re)connection, so the broker
    # follows a failover; its default timeouts would wait minutes on a dead primary.
    return {
        "master_name": settings.redis_sentinel_master,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 30.0,
        "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
    }


def enqueue(app: Celery, job_id: str, model: str, *, uploaded: bool = False) -> None:
    """Send the message of a queued job: a worker of the model that takes it runs the job that
    is next by fair share then, this one or another (see JobStore.claim). Jobs of uploaded
    models go to the queue all workers share."""
    queue = UPLOADED_QUEUE if uploaded else generation_queue(model)
    app.send_task(GENERATE_TASK, args=[job_id], kwargs={"model": model}, queue=queue)


def enqueue_training(app: Celery, training_id: str) -> None:
    """Send the message of a queued training to the training workers."""
    app.send_task(TRAIN_TASK, args=[training_id], queue=TRAINING_QUEUE)


def request_check(app: Celery, token: str) -> None:
    """Ask a worker to check the staged upload `token` (see shared.catalog.inspect)."""
    app.send_task(CHECK_MODEL_TASK, args=[token], queue=MODELS_QUEUE)


def restore_unacked(app: Celery, delivery_tag: str) -> bool:
    """Put a delivered, unacknowledged message back at the head of its queue, now rather than
    after the visibility timeout; return False if the broker holds no such message."""
    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        if not delivery_tag or not channel.client.hexists(channel.unacked_key, delivery_tag):
            return False
        channel.qos.restore_by_tag(delivery_tag)
        return True


def renew_unacked(client: redis.Redis, delivery_tags: Collection[str]) -> None:
    """Tell the broker that these delivered messages are still being worked on.

    kombu's Redis transport hands a delivered, unacknowledged message to another worker once
    its entry in the unacked index is older than the visibility timeout. Renewing the entries
    of running jobs keeps them with their worker however long they run, while the jobs of a
    worker that died (and stopped renewing) come back after one visibility timeout.
    Acknowledged messages have no entry left, and are not added back.
    """
    if delivery_tags:
        client.zadd(UNACKED_INDEX, dict.fromkeys(delivery_tags, time.time()), xx=True)
