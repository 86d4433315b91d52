"""Celery worker entry point: `celery -A worker.celery_worker worker`.

Consumes the queues of the models in LSTMGEN_WORKER_MODELS (all models when empty) with a
thread pool of LSTMGEN_WORKER_SLOTS; `-Q` overrides the queues.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from kombu.entity import Queue

from shared.celery_app import GENERATION_QUEUE_PREFIX, generation_queue, make_celery
from shared.engine.registry import ModelRegistry
from shared.jobs.store import JobStore
from shared.logs import setup_logging
from shared.settings import get_settings
from worker.runtime import Runtime
from worker.tasks import register_tasks
from worker.webhook_worker import install as install_webhooks

settings = get_settings()
setup_logging(settings.log_format)
models = ModelRegistry(settings.model_dir)
served = list(settings.worker_models) or list(models.names())

app = make_celery(settings)
app.conf.task_queues = [Queue(generation_queue(name)) for name in served]  # type: ignore[no-untyped-call]
runtime = Runtime(settings, JobStore.from_settings(settings), models)
register_tasks(app, lambda: runtime)
install_webhooks(app, settings)  # `--webhooks`: deliver webhooks instead of generating


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any, **_: Any) -> None:
    """Load the models of the consumed queues, then start the heartbeat."""
    queues = sender.app.amqp.queues.consume_from or {}
    names = [
        q[len(GENERATION_QUEUE_PREFIX) :] for q in queues if q.startswith(GENERATION_QUEUE_PREFIX)
    ]
    if names:
        runtime.start(str(sender.hostname), sorted(names))


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _hand_back_jobs(**_: Any) -> None:
    """Put running jobs back in the queue so another worker continues them."""
    runtime.begin_shutdown()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_runtime(**_: Any) -> None:
    """Stop the loops and withdraw the heartbeat."""
    runtime.stop()
