"""A training's webhook events: queued as job events are, delivered and signed by the webhook
worker (`start` when it runs, `completed` when it ends; the body has `"kind": "training"`)."""

from __future__ import annotations

import json
import logging
import time

from shared.trainings.records import Training
from shared.trainings.serialize import serialize_training
from shared.trainings.store import TrainingStore
from shared.webhooks.deliveries import Delivery, DeliveryStore, new_delivery_id
from shared.webhooks.events import WebhookEvent

log = logging.getLogger(__name__)


def emit_training_event(
    store: TrainingStore, training: Training, event: WebhookEvent, base_url: str
) -> str | None:
    """Queue a webhook delivery of a training event if it has a webhook (never raises)."""
    if not training.webhook:
        return None
    body = {"event": event.value, "kind": "training", **serialize_training(training)}
    body["url"] = f"{base_url}/v1/trainings/{training.id}"
    now = time.time()
    delivery = Delivery(
        id=new_delivery_id(now),
        job_id=training.id,
        event=event,
        url=training.webhook,
        payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        created_at=now,
        next_attempt_at=now,
    )
    try:
        DeliveryStore(store.client, store.ttls.final_s).add(delivery, throttle=False)
    except Exception:
        log.warning(
            "could not queue the %s webhook of training %s", event, training.id, exc_info=True
        )
        return None
    return delivery.id
