"""Celery worker entry point: `celery -A worker.celery_worker worker [--webhooks|--training]`.

Consumes the queues of the models in LSTMGEN_WORKER_MODELS (all models when empty), and, unless
LSTMGEN_WORKER_UPLOADS is off, the queue of uploaded models and the checks of uploads, with a
thread pool of LSTMGEN_WORKER_SLOTS; `-Q` overrides the queues. Every Celery signal this
process handles is connected here.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import signals
from kombu.entity import Queue

from shared import logs
from shared.catalog.archive import ArchiveLimits
from shared.catalog.catalog import ModelCatalog
from shared.celery_app import (
    GENERATION_QUEUE_PREFIX,
    MODELS_QUEUE,
    UPLOADED_QUEUE,
    enqueue,
    generation_queue,
    make_celery,
    restore_unacked,
)
from shared.engine.registry import ModelRegistry
from shared.jobs.store import JobStore
from shared.settings import get_settings
from worker.checks import check_upload
from worker.models import WorkerModels
from worker.runtime import Runtime
from worker.tasks import register_tasks
from worker.training_worker import TrainingRole
from worker.webhook_worker import WebhookRole

settings = get_settings()
logs.setup_logging(settings.log_format)
registry = ModelRegistry(settings.model_dir)
served = list(settings.worker_models) or list(registry.names())
catalog = ModelCatalog.from_url(settings.redis_url, settings.redis_sentinel_master)
limits = ArchiveLimits.from_settings(settings)
models = WorkerModels(registry, catalog, settings.model_cache_dir, limits)

app = make_celery(settings)
queues = [generation_queue(name) for name in served]
if settings.worker_uploads:
    queues += [UPLOADED_QUEUE, MODELS_QUEUE]
app.conf.task_queues = [Queue(name) for name in queues]  # type: ignore[no-untyped-call]


def _redeliver(job_id: str, model: str, delivery_tag: str) -> None:
    """Hand a lost job's message back to its queue, or send a new one if the broker has none."""
    if not restore_unacked(app, delivery_tag):
        enqueue(app, job_id, model, uploaded=models.uploaded(model))


def _check(token: str) -> None:
    """Check an upload the API staged, and answer it."""
    ttl = settings.model_check_timeout_s
    check_upload(catalog, token, limits, settings.max_model_vocab, ttl)


runtime = Runtime(settings, JobStore.from_settings(settings), models, redeliver=_redeliver)
register_tasks(app, lambda: runtime, _check)
webhooks = WebhookRole(app, settings)  # `--webhooks`: deliver webhooks instead of generating
trainings = TrainingRole(app, settings, catalog)  # `--training`: train models instead


@signals.setup_logging.connect  # type: ignore[untyped-decorator]
def _keep_our_logging(**_: Any) -> None:
    """Keep the logging set up above (Celery would reset it to its own --loglevel)."""


@signals.task_prerun.connect  # type: ignore[untyped-decorator]
def _bind_job(task_id: str, task: Any, args: Any = (), **_: Any) -> None:
    """Tag the log lines of a running task with its job id."""
    logs.bind_task_job(task_id, task, args)


@signals.task_postrun.connect  # type: ignore[untyped-decorator]
def _unbind_job(task_id: str, **_: Any) -> None:
    """Stop tagging once the task has ended."""
    logs.unbind_task_job(task_id)


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _choose_queues(sender: Any, **_: Any) -> None:
    """Consume only the webhook queue under `--webhooks`, the training queue under `--training`."""
    webhooks.select_queue(sender)
    trainings.select_queue(sender)


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start(sender: Any, **_: Any) -> None:
    """Load the models of the consumed queues and start the heartbeat, or the webhook scheduler."""
    webhooks.start(sender)
    trainings.start(sender)
    consumed = sender.app.amqp.queues.consume_from or {}
    names = [
        q[len(GENERATION_QUEUE_PREFIX) :] for q in consumed if q.startswith(GENERATION_QUEUE_PREFIX)
    ]
    if names or UPLOADED_QUEUE in consumed:
        # One id per process: a worker restarted under the same name must not look alive to
        # the jobs its predecessor was running.
        worker_id = f"{sender.hostname}/{uuid.uuid4().hex[:8]}"
        runtime.start(worker_id, sorted(names), uploads=UPLOADED_QUEUE in consumed)


@signals.worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _hand_back_jobs(**_: Any) -> None:
    """Put running jobs back in the queue so another worker continues them."""
    runtime.begin_shutdown()


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop(**_: Any) -> None:
    """Stop the loops, withdraw the heartbeats, stop the webhook scheduler."""
    runtime.stop()
    webhooks.stop()
    trainings.stop()
