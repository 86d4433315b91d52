"""The `lstmgen` verbs that talk to a running server: submit, status, cancel, jobs, models.

Exit status: 0 done (a submitted job succeeded), 1 the job ended otherwise, 2 the request failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import httpx
from tqdm import tqdm

from shared.client.http import ApiError, Client, Job, ModelInfo, StreamBroken
from shared.settings import get_settings

Handler = Callable[[argparse.Namespace], int]
CANCEL_WAIT_S = 5.0  # how long `lstmgen cancel` waits to report the job's final status
ERROR_STATUS = 2  # the request failed (as for every `lstmgen` verb); 1: the job did not succeed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client verbs to the `lstmgen` command line."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument("--url", help="server URL (default: LSTMGEN_PUBLIC_URL or host:port)")
    group.add_argument("--api-key", help="API key (default: LSTMGEN_API_KEY)")
    group.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")
    group.add_argument("--json", action="store_true", help="print JSON instead of text")

    submit = subparsers.add_parser(
        "submit", parents=[common], help="submit a generation job to a server"
    )
    submit.add_argument(
        "model", nargs="?", help="model name (see `lstmgen models`; default: the server's)"
    )
    submit.add_argument("--seed", default="", help="text to start from (default: the model's)")
    submit.add_argument("--length", type=int, help="characters to generate")
    submit.add_argument("--temperature", type=float, help="0 is greedy; higher is wilder")
    submit.add_argument("--top-k", type=int)
    submit.add_argument("--top-p", type=float)
    submit.add_argument("--stop", action="append", help="stop when the text ends with this")
    submit.add_argument("--random-seed", type=int, help="for reproducible output")
    submit.add_argument("-n", type=int, help="number of samples")
    submit.add_argument("--unknown-chars", choices=["error", "drop", "lowercase"])
    submit.add_argument("--webhook", help="URL to notify when the job finishes")
    submit.add_argument(
        "--continue-from", metavar="JOB_ID", help="go on with the text of a succeeded job"
    )
    submit.add_argument(
        "--priority", choices=["high", "normal", "low"], help="order among your own jobs"
    )
    submit.add_argument("--idempotency-key", help="retrying with the same key returns the same job")
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="show a progress bar until done")
    mode.add_argument("--follow", action="store_true", help="print the text as it is generated")
    submit.set_defaults(handler=_guarded(_submit))

    status = subparsers.add_parser("status", parents=[common], help="show a job")
    status.add_argument("id")
    status.set_defaults(handler=_guarded(_status))

    cancel = subparsers.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("id")
    cancel.set_defaults(handler=_guarded(_cancel))

    jobs = subparsers.add_parser("jobs", parents=[common], help="list recent jobs")
    jobs.add_argument("--status", help="only jobs with this status")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(handler=_guarded(_jobs))

    models = subparsers.add_parser(
        "models",
        parents=[common],
        help="list a server's models; `models upload NAME PATH`, `models delete NAME`",
    )
    models.add_argument("name", nargs="?", help="show one model's properties (or upload, delete)")
    models.add_argument("more", nargs="*", help=argparse.SUPPRESS)
    models.add_argument("--description", default="", help="upload: what the model is")
    models.add_argument("--vocab", help="upload: the vocabulary of a .keras or .h5 file")
    models.add_argument("--replace", action="store_true", help="upload: replace your model")
    models.set_defaults(handler=_guarded(_models))

    usage = subparsers.add_parser(
        "usage", parents=[common], help="show your key's jobs queued and running, and its limits"
    )
    usage.set_defaults(handler=_guarded(_usage))


def _client(args: argparse.Namespace) -> Client:
    settings = get_settings()
    return Client(
        args.url or settings.base_url,
        api_key=args.api_key or settings.api_key or None,
        timeout=args.timeout,
    )


def _guarded(handler: Handler) -> Handler:
    """Wrap a verb so API and network errors print in plain words and exit with status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ApiError as exc:
            print(f"lstmgen {args.command}: error: {exc.describe()}", file=sys.stderr)
        except (httpx.TransportError, StreamBroken) as exc:
            print(f"lstmgen {args.command}: error: cannot reach the server: {exc}", file=sys.stderr)
        return ERROR_STATUS

    return run


def _print_json(data: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out)


def _exit_code(job: Job) -> int:
    return 0 if job.status == "succeeded" else 1


def _submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.submit(
            args.model,
            args.seed,
            args.length,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stop=args.stop,
            random_seed=args.random_seed,
            n=args.n,
            unknown_chars=args.unknown_chars,
            webhook=args.webhook,
            continue_from=args.continue_from,
            priority=args.priority,
            idempotency_key=args.idempotency_key,
        )
        try:
            if args.follow:
                job = _follow(client, job)
            elif args.wait:
                job = _wait_with_bar(client, job)
            else:
                _show_job(job, args.json, brief=True)
                return 0
        except KeyboardInterrupt:
            print(
                f"\nstopped watching; job {job.id} goes on (`lstmgen cancel {job.id}` stops it)",
                file=sys.stderr,
            )
            return 130
    if args.follow and not args.json:
        print(_summary(job), file=sys.stderr)
    else:
        _show_job(job, args.json, brief=False)
    return _exit_code(job)


def _wait_with_bar(client: Client, job: Job) -> Job:
    total = job.progress.total if job.progress else 0
    with tqdm(
        total=total or None, unit="char", desc=job.status, file=sys.stderr, mininterval=0.1
    ) as bar:

        def update(current: Job) -> None:
            if current.progress is not None:
                if current.progress.total and bar.total != current.progress.total:
                    bar.total = current.progress.total
                bar.update(current.progress.done - bar.n)
            bar.set_description(current.status, refresh=False)

        return client.wait(job.id, on_progress=update)


def _follow(client: Client, job: Job) -> Job:
    # Print the first sample as it streams; more samples (n > 1) are printed when done.
    for event in client.stream(job.id):
        if event.text and event.sample == 0:
            sys.stdout.write(event.text)
            sys.stdout.flush()
    job = client.get(job.id)
    sys.stdout.write("\n")
    for index, text in enumerate(job.texts[1:], start=1):
        sys.stdout.write(f"--- sample {index}\n{text}\n")
    sys.stdout.flush()
    return job


def _summary(job: Job) -> str:
    parts = [f"job {job.id} {job.status}"]
    if job.finish_reason:
        parts.append(f"finish_reason={_scalar(job.finish_reason)}")
    if job.progress is not None:
        parts.append(f"chars={job.progress.done}/{job.progress.total}")
    if job.random_seed is not None:
        parts.append(f"random_seed={job.random_seed}")
    for key, value in job.metrics.items():
        if value is not None:
            parts.append(f"{key}={_number(value)}")
    if job.error:
        parts.append(f"error={_error_text(job.error)}")
    return " ".join(parts)


def _scalar(value: str | list[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _error_text(error: Mapping[str, Any]) -> str:
    return f"{error.get('type', 'error')}: {error.get('message', '')}".strip()


def _show_job(job: Job, as_json: bool, brief: bool) -> None:
    if as_json:
        _print_json(job.raw)
        return
    if brief:
        print(f"{job.id} {job.status}")
        return
    print(_summary(job), file=sys.stderr)
    for index, text in enumerate(job.texts):
        if len(job.texts) > 1:
            print(f"--- sample {index}")
        print(text)


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get(args.id)
    if args.json:
        _print_json(job.raw)
        return 0
    print(_summary(job))
    for index, text in enumerate(job.texts):
        print(f"--- sample {index}" if len(job.texts) > 1 else "---")
        print(text)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.id)
        if not job.final:  # a running job stops within a second: report how it ended
            try:
                job = client.wait(job.id, timeout=CANCEL_WAIT_S, poll_interval=0.1)
            except TimeoutError:
                job = client.get(job.id)
    if args.json:
        _print_json(job.raw)
        return 0
    words = f"{job.id} {job.status}"
    if not job.final:
        words += " (cancel requested)"
    elif job.progress is not None:
        words += f" ({job.progress.done}/{job.progress.total} characters)"
    print(words)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list(status=args.status, limit=args.limit)
    if args.json:
        _print_json(page.raw)
        return 0
    rows = [
        (
            job.id,
            job.status,
            job.model,
            f"{job.progress.done}/{job.progress.total}" if job.progress else "",
            _number(job.metrics.get("chars_per_s", "")),
            job.created_at or "",
        )
        for job in page.jobs
    ]
    _table(("ID", "STATUS", "MODEL", "CHARS", "CHARS/S", "CREATED"), rows)
    return 0


def _usage(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.usage()
    if args.json:
        _print_json(found)
        return 0
    limits = ", ".join(f"{name} {value:g}" for name, value in found["limits"].items())
    print(
        f"key {found['key']}: {found['queued']} queued, {found['running_jobs']} running "
        f"({found['running_samples']} samples); limits (0: none): {limits}"
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.name in ("upload", "delete"):
        return _change_model(args)
    if args.more:
        raise SystemExit(f"lstmgen models: unexpected arguments {args.more}")
    with _client(args) as client:
        if args.name:
            info = client.model(args.name)
            if args.json:
                _print_json(dict(info.properties))
            else:
                _show_model(info)
            return 0
        models = client.models()
    if args.json:
        _print_json([{"name": m.name, **m.properties} for m in models])
        return 0
    rows = [_model_row(model) for model in models]
    _table(("NAME", "FORMAT", "MODE", "VOCAB", "LAYERS"), rows)
    return 0


def _change_model(args: argparse.Namespace) -> int:
    """`lstmgen models upload NAME PATH` and `lstmgen models delete NAME`."""
    wanted = 2 if args.name == "upload" else 1
    if len(args.more) != wanted:
        usage = "upload NAME PATH" if args.name == "upload" else "delete NAME"
        raise SystemExit(f"usage: lstmgen models {usage}")
    with _client(args) as client:
        if args.name == "delete":
            client.delete_model(args.more[0])
            print(f"{args.more[0]} deleted")
            return 0
        name, path = args.more
        info = client.upload_model(
            name, path, description=args.description, vocab=args.vocab, replace=args.replace
        )
    if args.json:
        _print_json(dict(info.properties))
    else:
        digest = str(info.properties.get("digest", ""))[:12]
        print(f"{info.name} uploaded ({_model_row(info)[1]}, sha256 {digest})")
    return 0


def _model_row(model: ModelInfo) -> tuple[str, ...]:
    props = model.properties
    layers = props.get("layer_sizes") or []
    return (
        model.name,
        str(props.get("format", "")),
        str(props.get("mode", "")),
        str(props.get("vocab_size", "")),
        "x".join(str(size) for size in layers),
    )


def _show_model(info: ModelInfo) -> None:
    for key, value in info.properties.items():
        if key != "vocab":
            print(f"{key}: {json.dumps(value, ensure_ascii=False)}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
