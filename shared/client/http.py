"""A typed, synchronous Python client for the lstmgen HTTP API.

    with Client("http://127.0.0.1:8000") as client:
        job = client.submit("default", seed="the ", length=200)
        job = client.wait(job.id)
        print(job.text)

HTTP errors raise `ApiError` carrying the server's problem+json; network failures raise httpx's
`TransportError` (except inside `stream()`, which reconnects and resumes with `Last-Event-ID`).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from shared.jobs.records import JobStatus

FINAL_STATUSES = frozenset(status.value for status in JobStatus if status.is_final)
OUTPUT_EVENTS = frozenset({"output", "chunk", "text"})  # SSE event names that carry text
STREAM_READ_TIMEOUT_S = 60.0  # longest silence on an event stream before reconnecting
UPLOAD_TIMEOUT_S = 300.0  # an upload waits while a worker loads the model to check it


@dataclass(frozen=True)
class FieldError:
    """One invalid input field named by the server."""

    field: str
    message: str


class ApiError(Exception):
    """An error answer from the API, with its RFC 9457 problem details."""

    def __init__(self, status: int, problem: Mapping[str, Any], headers: Mapping[str, str]):
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title") or httpx.codes.get_reason_phrase(status))
        self.detail = str(problem.get("detail") or "")
        self.type = str(problem.get("type") or "about:blank")
        self.errors = _field_errors(problem)
        retry_after = headers.get("retry-after")
        self.retry_after = float(retry_after) if retry_after and _is_number(retry_after) else None
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return the error in plain words: status, title, detail and each field error."""
        words = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            words += f": {self.detail}"
        for error in self.errors:
            if error.message not in words:
                words += f"\n  {error.field}: {error.message}"
        return words


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _field_errors(problem: Mapping[str, Any]) -> list[FieldError]:
    # Accept the common spellings: errors / invalid_params, field / name / pointer / loc.
    raw = problem.get("errors") or problem.get("invalid_params") or []
    found: list[FieldError] = []
    if isinstance(raw, Mapping):
        raw = [{"field": key, "message": value} for key, value in raw.items()]
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            found.append(FieldError("", str(item)))
            continue
        name = item.get("field") or item.get("name") or item.get("pointer") or item.get("loc")
        if isinstance(name, list):
            name = ".".join(str(part) for part in name)
        message = item.get("message") or item.get("reason") or item.get("detail") or item.get("msg")
        found.append(FieldError(str(name or ""), str(message or "")))
    if not found and problem.get("field"):
        found.append(FieldError(str(problem["field"]), str(problem.get("detail") or "")))
    return found


@dataclass(frozen=True)
class Progress:
    """Characters generated so far out of the total asked for."""

    done: int
    total: int

    @property
    def fraction(self) -> float:
        """Return the share done, 0..1."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


@dataclass(frozen=True)
class Job:
    """A generation job as the API reports it."""

    id: str
    status: str
    output: str | list[str] | None
    progress: Progress | None
    error: Mapping[str, Any] | None
    finish_reason: str | list[str] | None
    random_seed: int | None
    metrics: Mapping[str, Any]
    input: Mapping[str, Any]
    urls: Mapping[str, str]
    created_at: str | None
    completed_at: str | None
    expires_at: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        """Build a job from the API's JSON object."""
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            output=data.get("output"),
            progress=_progress(data.get("progress")),
            error=data.get("error"),
            finish_reason=data.get("finish_reason"),
            random_seed=data.get("random_seed"),
            metrics=data.get("metrics") or {},
            input=data.get("input") or {},
            urls=data.get("urls") or {},
            created_at=data.get("created_at"),
            completed_at=data.get("completed_at"),
            expires_at=data.get("expires_at"),
            raw=data,
        )

    @property
    def final(self) -> bool:
        """Return whether the job will not change any more."""
        return self.status in FINAL_STATUSES

    @property
    def model(self) -> str:
        """Return the model the job runs."""
        return str(self.raw.get("model") or self.input.get("model", ""))

    @property
    def texts(self) -> list[str]:
        """Return the output of every sample (one unless the job asked for `n` > 1)."""
        if self.output is None:
            return []
        return [self.output] if isinstance(self.output, str) else [str(o) for o in self.output]

    @property
    def text(self) -> str:
        """Return the output of the first sample (empty while nothing is generated)."""
        texts = self.texts
        return texts[0] if texts else ""


def _progress(value: Any) -> Progress | None:
    if isinstance(value, Mapping):
        done = value.get("done", value.get("current", value.get("chars", 0)))
        return Progress(int(done or 0), int(value.get("total") or 0))
    return None


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /v1/jobs`."""

    jobs: list[Job]
    next_cursor: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ModelInfo:
    """A model the service can run, with its ml5-style properties."""

    name: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class CharProbability:
    """One candidate next character and its probability."""

    char: str
    probability: float


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job's stream."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        """Return the data parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """Return the output text this event carries (empty for other events)."""
        if self.event not in OUTPUT_EVENTS:
            return ""
        payload = self.json()
        if isinstance(payload, Mapping):
            for key in ("text", "chunk", "output", "delta"):
                if isinstance(payload.get(key), str):
                    return str(payload[key])
            return ""
        return payload if isinstance(payload, str) else self.data

    @property
    def sample(self) -> int:
        """Return which sample an output event belongs to (0 unless the job has n > 1)."""
        payload = self.json()
        if isinstance(payload, Mapping):
            return int(payload.get("stream", payload.get("sample", 0)) or 0)
        return 0

    @property
    def status(self) -> str | None:
        """Return the job status this event announces, if it announces one."""
        payload = self.json()
        if isinstance(payload, Mapping) and isinstance(payload.get("status"), str):
            return str(payload["status"])
        return None


class StreamBroken(Exception):
    """The event stream kept failing and could not be resumed."""


class Client:
    """A synchronous client for one lstmgen server."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "lstmgen-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for_problem(response)
        return response.json()

    def submit(
        self,
        model: str | None = None,
        seed: str = "",
        length: int | None = None,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        random_seed: int | None = None,
        n: int | None = None,
        unknown_chars: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        continue_from: str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> Job:
        """Create a generation job; with `wait`, let the server hold the answer up to N seconds.

        `continue_from` names a succeeded job to go on from (its model, seed, samples and
        random stream): its text followed by this job's is one job of both lengths;
        `priority` (high, normal, low) orders your own jobs."""
        body: dict[str, Any] = {"seed": seed}
        optional = {
            "model": model,  # None: the server's default model
            "length": length,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "stop": list(stop) if stop is not None else None,
            "random_seed": random_seed,
            "n": n,
            "unknown_chars": unknown_chars,
            "webhook": webhook,
            "webhook_events_filter": (
                list(webhook_events_filter) if webhook_events_filter is not None else None
            ),
            "metadata": dict(metadata) if metadata is not None else None,
            "continue_from": continue_from,
            "priority": priority,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        timeout: float | None = self.timeout
        if wait is not None:
            headers["Prefer"] = f"wait={wait:g}"
            timeout = self.timeout + wait
        return Job.from_json(
            self._request("POST", "/v1/jobs", json=body, headers=headers, timeout=timeout)
        )

    def usage(self) -> dict[str, Any]:
        """Return your key's jobs queued and running, and its limits (`GET /v1/usage`)."""
        found: dict[str, Any] = self._request("GET", "/v1/usage")
        return found

    def get(self, job_id: str) -> Job:
        """Return the job as it stands now."""
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        """Ask the service to cancel the job; return it as it stands after the request."""
        return Job.from_json(self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    def create_training(
        self,
        body: Mapping[str, Any],
        *,
        file: str | Path | None = None,
        wait: float | None = None,
    ) -> Any:
        """Queue a training (see `POST /v1/trainings`); return the training as JSON.

        With `file`, the corpus is that UTF-8 text file, sent as a multipart form (no body
        size limit but the corpus's), and `body` holds the other fields."""
        headers = {} if wait is None else {"Prefer": f"wait={wait:g}"}
        if file is None:
            return self._request("POST", "/v1/trainings", json=dict(body), headers=headers)
        path = Path(file)
        fields = {k: _form_field(v) for k, v in body.items() if v is not None}
        with path.open("rb") as corpus:
            files = {"file": (path.name, corpus, "text/plain; charset=utf-8")}
            return self._request("POST", "/v1/trainings", data=fields, files=files,
                                 headers=headers, timeout=UPLOAD_TIMEOUT_S)  # fmt: skip

    def training(self, training_id: str) -> Any:
        """Return a training, with its progress and metrics, as JSON."""
        return self._request("GET", f"/v1/trainings/{training_id}")

    def cancel_training(self, training_id: str) -> Any:
        """Cancel a training; return it as JSON."""
        return self._request("POST", f"/v1/trainings/{training_id}/cancel")

    def list(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JobPage:
        """Return one page of this key's jobs, newest first, optionally of one status."""
        params = {
            key: value
            for key, value in (("status", status), ("limit", limit), ("cursor", cursor))
            if value is not None
        }
        data = self._request("GET", "/v1/jobs", params=params)
        items = _first(data, ("jobs", "data", "items", "results"), [])
        next_cursor = _first(data, ("next_cursor", "cursor", "next"), None)
        return JobPage(
            [Job.from_json(item) for item in items],
            str(next_cursor) if next_cursor else None,
            data,
        )

    def models(self) -> builtins.list[ModelInfo]:
        """Return the models the service can run."""
        data = self._request("GET", "/v1/models")
        items = data if isinstance(data, list) else _first(data, ("models", "data", "items"), [])
        return [_model_info(item) for item in items]

    def model(self, name: str) -> ModelInfo:
        """Return one model's properties (vocabulary, layers, mode, defaults, ...)."""
        return _model_info(self._request("GET", f"/v1/models/{name}"))

    def upload_model(
        self,
        name: str,
        path: str | Path,
        *,
        description: str = "",
        vocab: str | Path | None = None,
        replace: bool = False,
    ) -> ModelInfo:
        """Upload a model folder (zipped on the way), a `.zip` of one, or a `.keras`/`.h5`
        file with its `vocab` file; `replace` replaces your model of that name."""
        path = Path(path)
        with contextlib.ExitStack() as stack:
            if path.is_dir():
                upload: IO[bytes] = stack.enter_context(_zipped(path))
                filename = f"{path.name}.zip"
            else:
                upload, filename = stack.enter_context(path.open("rb")), path.name
            files: dict[str, Any] = {"file": (filename, upload, "application/octet-stream")}
            if vocab is not None:
                vocab = Path(vocab)
                files["vocab"] = (vocab.name, stack.enter_context(vocab.open("rb")))
            fields = {"description": description}
            if replace:
                data = self._request("PUT", f"/v1/models/{name}", data=fields, files=files,
                                     timeout=UPLOAD_TIMEOUT_S)  # fmt: skip
            else:
                data = self._request("POST", "/v1/models", data={"name": name, **fields},
                                     files=files, timeout=UPLOAD_TIMEOUT_S)  # fmt: skip
        return _model_info(data)

    def delete_model(self, name: str) -> None:
        """Delete your uploaded model (its running jobs finish)."""
        _raise_for_problem(self._http.request("DELETE", f"/v1/models/{name}"))

    def predict(
        self, name: str, seed: str, temperature: float = 1.0
    ) -> builtins.list[CharProbability]:
        """Return the next-character distribution after `seed`, most likely first."""
        data = self._request(
            "POST", f"/v1/models/{name}/predict", json={"seed": seed, "temperature": temperature}
        )
        items = (
            data
            if isinstance(data, list)
            else _first(data, ("probabilities", "predictions", "data"), [])
        )
        return [
            CharProbability(
                str(item.get("char", item.get("character"))), float(item["probability"])
            )
            for item in items
        ]

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
        poll_interval: float = 0.25,
    ) -> Job:
        """Poll until the job is final and return it; raise TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.final:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:g} s")
            time.sleep(poll_interval)

    def stream(
        self, job_id: str, last_event_id: str | None = None, max_retries: int = 5
    ) -> Iterator[Event]:
        """Yield the job's events until it is final, reconnecting with Last-Event-ID on breaks."""
        failures = 0
        saw_final = False
        # The server sends a keep-alive every 15 s: waiting longer than that means a dead link.
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT_S))
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            problem: Exception | None = None
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=timeout
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for_problem(response)
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.event == "done":
                            return
                        saw_final = saw_final or event.status in FINAL_STATUSES
                if saw_final:
                    return  # the server closed the stream after the last status change
            except httpx.TransportError as exc:
                problem = exc
            failures += 1  # a break, or a close before the job ended: resume after a pause
            if failures > max_retries:
                raise StreamBroken(f"stream of job {job_id} broke {failures} times") from problem
            time.sleep(min(2.0, 0.1 * 2**failures))


def _first(data: Any, keys: Sequence[str], default: Any) -> Any:
    if isinstance(data, Mapping):
        for key in keys:
            if key in data:
                return data[key]
    return default


def _model_info(item: Any) -> ModelInfo:
    if isinstance(item, str):
        return ModelInfo(item, {})
    properties = item.get("properties", item)
    return ModelInfo(str(item.get("name", properties.get("name", ""))), properties)


def _form_field(value: Any) -> str:
    """Return a field's value as a form sends it: lists as JSON, the rest as text."""
    return json.dumps(value) if isinstance(value, list | tuple) else str(value)


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text.strip()[:500]}
    if not isinstance(problem, Mapping):
        problem = {"detail": str(problem)}
    raise ApiError(response.status_code, problem, response.headers)


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Parse Server-Sent Events from text lines (without line endings)."""
    event, event_id = "", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(event or "message", "\n".join(data), event_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # comment: a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


@contextlib.contextmanager
def _zipped(folder: Path) -> Iterator[IO[bytes]]:
    """Yield a temporary zip of a folder's files."""
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    archive.write(path, path.relative_to(folder).as_posix())
        handle.seek(0)
        yield handle
