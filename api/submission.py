"""Accepting a job: validate against the model, store it, enqueue it, optionally wait."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from api.problems import FieldError, Problem, invalid
from api.services import KnownModel, Services
from api.validation import check_metadata, validate
from shared import metrics
from shared.celery_app import enqueue
from shared.engine.model import EmptySeedError, UnknownCharactersError, UnknownChars
from shared.engine.seeds import derive_random_seed
from shared.jobs.records import (
    CreateOutcome,
    Job,
    JobInput,
    JobStatus,
    NewJob,
    fingerprint,
    new_job_id,
)
from shared.jobs.tenants import Priority, label, limits_for
from shared.webhooks.ssrf import validate_webhook_url

log = logging.getLogger(__name__)

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class Submitted:
    """A job after a create call, and whether this call created it."""

    job: Job
    created: bool


def check_seed(model: KnownModel, seed: str, unknown: UnknownChars, field: str = "seed") -> None:
    """Refuse a seed with characters outside the vocabulary (as the policy says), or none known."""
    try:
        model.encode_seed(seed, unknown)
    except UnknownCharactersError as error:
        shown = ", ".join(repr(c) for c in error.chars)
        message = (
            f"{len(error.chars)} character(s) not in the vocabulary of model {model.name!r}: "
            f"{shown} (set unknown_chars to 'drop' or 'lowercase' to accept them)"
        )
        raise invalid([FieldError(field, message)], unknown_characters=error.chars) from None
    except EmptySeedError as error:
        raise invalid([FieldError(field, str(error))]) from None


@dataclass(frozen=True)
class Continued:
    """What a job with `continue_from` takes over from the job it continues."""

    model: str
    seed: str
    unknown_chars: UnknownChars
    n: int
    random_seed: int
    prefix: tuple[str, ...]  # each sample's text so far


def continued(services: Services, owner: str, payload: dict[str, Any], job_id: str) -> Continued:
    """Return what a continuation of the caller's job `job_id` goes on from, or a 422."""
    field = "continue_from"
    source = services.store.owned(job_id, owner)
    if source is None:
        raise invalid([FieldError(field, f"no job {job_id!r}")])
    if source.status is not JobStatus.SUCCEEDED:
        message = f"job {job_id!r} is {source.status.value}; only a succeeded job goes on"
        raise invalid([FieldError(field, message)])
    given = {name: value for name, value in payload.items() if value not in ("", None)}
    clashes = [
        FieldError(name, f"is taken from the continued job; leave it out or give {value!r}")
        for name, value in (("seed", source.input.seed), ("random_seed", source.random_seed))
        if name in given and given[name] != value
    ]
    clashes += [
        FieldError(name, f"must be the continued job's {value!r}")
        for name, value in (("n", source.n),)
        if name in payload and payload[name] != value
    ]
    if "model" in payload and services.resolve(str(payload["model"])) != source.model:
        clashes.append(FieldError("model", f"must be the continued job's {source.model!r}"))
    if clashes:
        raise invalid(clashes)
    earlier = services.store.prefix(source.id) or ("",) * source.n
    prefix = tuple(a + b for a, b in zip(earlier, source.outputs, strict=True))
    longest = max(len(text) for text in prefix)
    if longest > services.settings.max_length:
        message = (
            f"the text to continue has {longest} characters, more than the "
            f"{services.settings.max_length} one job may have"
        )
        raise invalid([FieldError(field, message)])
    return Continued(
        model=source.model,
        seed=source.input.seed,
        unknown_chars=source.input.unknown_chars,
        n=source.n,
        random_seed=source.random_seed,
        prefix=prefix,
    )


def new_job(services: Services, owner: str, payload: dict[str, Any], job_id: str) -> NewJob:
    """Validate a create request and return the job to store."""
    request = validate(services.job_request, payload)
    check_metadata(request.metadata)
    origin = None
    if request.continue_from is not None:
        origin = continued(services, owner, payload, request.continue_from)
        request.model, request.seed, request.n = origin.model, origin.seed, origin.n
        request.unknown_chars, request.random_seed = origin.unknown_chars, origin.random_seed
    model = services.load_model(request.model, owner=owner, field="model")
    if origin is not None and not model.reversible:
        message = (
            f"model {model.name!r} has vocabulary entries that are not single characters, "
            "so the ids of its text cannot be told and the text cannot be continued exactly"
        )
        raise invalid([FieldError("continue_from", message)])
    check_seed(model, request.seed, request.unknown_chars)
    if request.webhook is not None:
        try:
            validate_webhook_url(request.webhook, services.settings)
        except ValueError as error:
            raise invalid([FieldError("webhook", str(error))]) from None
    length = request.length or model.defaults.length
    temperature = model.defaults.temperature if request.temperature is None else request.temperature
    job_input = JobInput(
        model=request.model,
        seed=request.seed,
        length=length,
        temperature=temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        stop=tuple(request.stop),
        n=request.n,
        unknown_chars=request.unknown_chars,
        random_seed=None if origin is not None else request.random_seed,
        continue_from=request.continue_from,
        priority=request.priority,
    )
    limits = limits_for(services.settings, owner)
    random_seed = request.random_seed
    return NewJob(
        id=job_id,
        owner=owner,
        model=services.resolve(request.model),
        input=job_input,
        n=request.n,
        random_seed=derive_random_seed() if random_seed is None else random_seed,
        total=length * request.n,
        fingerprint=fingerprint(payload),
        webhook=request.webhook,
        webhook_events_filter=tuple(dict.fromkeys(request.webhook_events_filter)),
        metadata=request.metadata,
        prefix=() if origin is None else origin.prefix,
        rank=Priority(request.priority).rank,
        weight=limits.weight,
        max_running=limits.max_running_samples,
    )


def submit(
    services: Services,
    owner: str,
    payload: dict[str, Any],
    *,
    job_id: str | None = None,
    idempotency: str | None = None,
) -> Submitted:
    """Create and enqueue a job, or return the one a retried request created."""
    job = new_job(services, owner, payload, job_id or new_job_id())
    store = services.store
    settings = services.settings
    limits = limits_for(settings, owner)
    wait_s = store.take_submission(owner, limits.submit_rate, limits.submit_burst)
    if wait_s > 0:
        detail = (
            f"key {label(settings, owner)!r} submits more than its {limits.submit_rate:g} "
            f"jobs per second (bursts of {limits.submit_burst})"
        )
        raise _limited(services, owner, "submit_rate", detail, math.ceil(wait_s))
    outcome, found_id = store.create(
        job,
        idempotency=idempotency,
        max_queue_depth=settings.max_queue_depth,
        owner_max_queued=limits.max_queued,
    )
    if outcome is CreateOutcome.OWNER_FULL:
        detail = (
            f"key {label(settings, owner)!r} has {limits.max_queued} jobs queued, as many as it "
            "may; retry once some have started"
        )
        raise _limited(services, owner, "max_queued", detail, settings.retry_after_s)
    if outcome is CreateOutcome.FULL:
        retry = str(settings.retry_after_s)
        detail = f"more than {settings.max_queue_depth} jobs are queued; retry later"
        raise Problem(
            429, "Too many queued jobs", detail, "queue-full", headers={"Retry-After": retry}
        )
    if outcome is not CreateOutcome.CREATED:
        existing = _existing(services, owner, found_id, job, outcome)
        _confirm_replicated(services, existing.id)  # a retry may follow a 503 of this check
        return Submitted(existing, created=False)
    _enqueue(services, job)
    _confirm_replicated(services, job.id)
    created = store.get(job.id)
    if created is None:  # retention shorter than a request: nothing sensible to show
        raise Problem(500, "Job vanished", "the job expired as it was created", "internal")
    return Submitted(created, created=True)


def _limited(services: Services, owner: str, limit: str, detail: str, retry_s: int) -> Problem:
    """Return the 429 of a key past one of its limits (and count it, by the key's name)."""
    metrics.record_key_rejection(services.store.client, label(services.settings, owner), limit)
    return Problem(
        429,
        "Key limit reached",
        detail,
        "key-limit",
        headers={"Retry-After": str(max(1, retry_s))},
        extra={"limit": limit},
    )


def _existing(
    services: Services, owner: str, job_id: str, job: NewJob, outcome: CreateOutcome
) -> Job:
    existing = services.store.get(job_id)
    if existing is None or existing.owner != owner:
        detail = f"job id {job_id!r} is already in use"
        raise Problem(409, "Conflict", detail, "id-in-use", [FieldError("id", detail)])
    if services.store.fingerprint_of(job_id) != job.fingerprint:
        if outcome is CreateOutcome.EXISTING:
            message = "was used before with a different request body"
            raise invalid([FieldError("Idempotency-Key", message)])
        detail = f"job {job_id!r} exists with a different request body"
        raise Problem(409, "Conflict", detail, "id-in-use", [FieldError("id", detail)])
    return existing


def _enqueue(services: Services, job: NewJob) -> None:
    try:
        enqueue(services.celery, job.id, job.model, uploaded=services.is_uploaded(job.model))
    except Exception:
        log.exception("could not enqueue job %s", job.id, extra={"job_id": job.id})
        services.store.abandon(job.id, job.n, "enqueue_failed", "the job could not be enqueued")
        raise
    metrics.record_status(services.store.client, "queued")


def _confirm_replicated(services: Services, job_id: str) -> None:
    """Answer 201 only once `redis_min_replicas` replicas hold the job and its message, so
    that an accepted job survives the primary's death; 503 if they do not in time."""
    short = services.replicas_short()
    if short is None:
        return
    held, wanted = short
    settings = services.settings
    detail = (
        f"job {job_id} is stored, but {held} of the {wanted} replicas it must reach confirmed "
        f"it within {settings.redis_replica_timeout_s:g} s; it may still run: send the request "
        "again with the same Idempotency-Key to get it"
    )
    raise Problem(
        503,
        "Not replicated",
        detail,
        "not-replicated",
        headers={"Retry-After": str(settings.retry_after_s)},
        extra={"job_id": job_id},
    )


def requested_wait(prefer: str | None, max_wait_s: float) -> float | None:
    """Return the seconds asked for with `Prefer: wait=N`, capped, or None."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    return None if match is None else min(float(match.group(1)), max_wait_s)


def wait_until_final(services: Services, job_id: str, seconds: float) -> None:
    """Block until the job has ended or `seconds` pass, following its event stream."""
    deadline = time.monotonic() + seconds
    last = "0-0"
    while (remaining := deadline - time.monotonic()) > 0:
        block_ms = max(1, int(min(remaining, 10.0) * 1000))
        for event in services.store.read_events(job_id, last, block_ms=block_ms):
            last = event.id
            if event.event == "done":
                return
