"""Celery tasks of the generation worker: thin wrappers around the runtime."""

from __future__ import annotations

from collections.abc import Callable

import redis
from celery import Celery, Task
from celery.exceptions import Reject

from shared.celery_app import CHECK_MODEL_TASK, GENERATE_TASK
from worker.batch_loop import RunOutcome
from worker.runtime import Runtime


def register_tasks(
    app: Celery, runtime: Callable[[], Runtime], check: Callable[[str], None]
) -> None:
    """Register the generation task and the check of uploads on the app."""

    @app.task(name=GENERATE_TASK, ignore_result=True, bind=True)  # type: ignore[untyped-decorator]
    def generate(task: Task, job_id: str, model: str | None = None) -> str:
        """Run the model's next job (by fair share) to its end; the message is acknowledged
        only after that (acks_late). `job_id` is the job whose submission sent the message."""
        # kombu's virtual transports (Redis among them) carry the tag in the properties.
        delivery = (task.request.properties or {}).get("delivery_tag")
        try:
            outcome = runtime().run(job_id, model, delivery_tag=delivery)
        except redis.RedisError as error:
            # Redis failing over, say: the message goes back for the next claim. A job this
            # one had claimed, and no longer holds, is requeued by the worker's heartbeat
            # (Runtime._requeue_unheld); a spare message finds nothing queued and is dropped.
            raise Reject(f"job store unavailable: {error}", requeue=True) from error
        if outcome is RunOutcome.RELEASED:
            raise Reject("worker shutting down", requeue=True)
        return outcome.value

    @app.task(name=CHECK_MODEL_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def check_model(token: str) -> None:
        """Load a staged upload and answer the API that waits for the verdict."""
        check(token)
