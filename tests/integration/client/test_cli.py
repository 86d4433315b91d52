"""The `lstmgen` client verbs, run as subprocesses against the real stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import redis

from scripts.redis_server import free_port
from shared.client import Client
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    WorkerHandle,
    wait_record,
)

LSTMGEN = [sys.executable, "-c", "import sys; from shared.client.cli import main; sys.exit(main())"]
KEY = "cli-key"


ENDLESS = 10_000_000  # characters: a job that cannot end before the test cancels it


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle) -> ApiHandle:
    """Start an open API in front of the worker (jobs up to 10M characters: see ENDLESS)."""
    return start_api(max_length=ENDLESS)


@pytest.fixture
def api(stack: ApiHandle, redis_client: redis.Redis) -> ApiHandle:
    """Return the open API over a flushed job store."""
    return stack


def lstmgen_command(*args: str, url: str | None = None) -> list[str]:
    """Return the command line of `lstmgen ARGS` (with `--url` when given)."""
    return [*LSTMGEN, *args, *(["--url", url] if url else [])]


def lstmgen_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of an `lstmgen` run: ours without LSTMGEN_*, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LSTMGEN_")}
    return {**clean, "PYTHONPATH": str(ROOT), **(env or {})}


def lstmgen(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `lstmgen ARGS` (with `--url` when given) and return what it did."""
    return subprocess.run(
        lstmgen_command(*args, url=url),
        cwd=ROOT,
        env=lstmgen_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_models_lists_the_server_models(api: ApiHandle) -> None:
    done = lstmgen("models", url=api.url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "FORMAT", "MODE", "VOCAB", "LAYERS"]
    assert rows[0].split()[:4] == ["tiny", "ml5", "stateful", "33"]
    one = lstmgen("models", "tiny", "--json", url=api.url)
    assert json.loads(one.stdout)["vocab_size"] == 33


def test_submit_wait_shows_a_progress_bar_and_prints_the_text(api: ApiHandle) -> None:
    done = lstmgen(
        "submit", "tiny", "--seed", "the ", "--length", "400", "--random-seed", "3", "--wait",
        url=api.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout.rstrip("\n")
    assert len(text) == 400
    assert "400/400" in done.stderr and "char" in done.stderr  # the tqdm bar
    assert "succeeded" in done.stderr and "random_seed=3" in done.stderr


def test_submit_follow_prints_exactly_the_generated_text(api: ApiHandle) -> None:
    done = lstmgen("submit", "tiny", "--seed", "the ", "--length", "800", "--follow", url=api.url)
    assert done.returncode == 0, done.stderr
    job_id = done.stderr.split()[1]
    with Client(api.url) as client:
        assert done.stdout == client.get(job_id).text + "\n"


def test_submit_status_jobs_and_cancel(
    api: ApiHandle, worker: WorkerHandle, redis_client: redis.Redis
) -> None:
    submitted = lstmgen("submit", "tiny", "--seed", "a", "--length", str(ENDLESS), url=api.url)
    job_id, status = submitted.stdout.split()
    assert status in ("queued", "running")
    with Client(api.url) as client:
        wait_for(lambda: client.get(job_id).text, 30, "the first characters")
    # The tiny model writes ENDLESS characters in a minute or more: with its worker stopped the
    # job is necessarily still running for `status` and `jobs`, and the cancel is recorded
    # before the worker can take another step.
    with worker.paused():
        shown = json.loads(lstmgen("status", job_id, "--json", url=api.url).stdout)
        assert shown["id"] == job_id and shown["status"] == "running"
        listed = lstmgen("jobs", "--status", "running", url=api.url).stdout.splitlines()
        assert listed[0].split()[:3] == ["ID", "STATUS", "MODEL"]
        assert [line.split()[:3] for line in listed[1:]] == [[job_id, "running", "tiny"]]
        cancel = subprocess.Popen(  # waits (up to 5 s) until the job has stopped
            lstmgen_command("cancel", job_id, url=api.url),
            cwd=ROOT,
            env=lstmgen_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_record(redis_client, job_id, cancel_requested="1")
        except BaseException:
            cancel.kill()
            cancel.communicate()
            raise
    # The worker continues and sees the request at its next flush (0.1 s).
    stdout, stderr = cancel.communicate(timeout=60)
    assert cancel.returncode == 0, stderr
    assert re.fullmatch(rf"{job_id} canceled \(\d+/{ENDLESS} characters\)\n", stdout)
    status_text = lstmgen("status", job_id, url=api.url).stdout
    assert status_text.startswith(f"job {job_id} canceled")


def test_errors_are_one_plain_line(api: ApiHandle) -> None:
    bad = lstmgen("submit", "tiny", "--temperature", "99", url=api.url)
    assert bad.returncode == 2
    assert bad.stderr.startswith("lstmgen submit: error: 422 Invalid request")
    assert "temperature" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = lstmgen("status", "nosuchjob", url=api.url)
    assert missing.returncode == 2 and "404 Not found" in missing.stderr
    down = lstmgen("jobs", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "cannot reach the server" in down.stderr


def test_url_api_key_and_model_default_from_settings(api: ApiHandle, start_api: StartApi) -> None:
    keyed = start_api(api_keys=KEY, default_model="tiny")
    env = {"LSTMGEN_PUBLIC_URL": keyed.url}
    denied = lstmgen("jobs", env=env)
    assert denied.returncode == 2 and "401" in denied.stderr
    done = lstmgen("submit", "--length", "5", "--wait", env={**env, "LSTMGEN_API_KEY": KEY})
    assert done.returncode == 0, done.stderr  # no model named: the server's default
    flag = lstmgen("jobs", "--api-key", KEY, "--json", env=env)
    assert len(json.loads(flag.stdout)["jobs"]) == 1


def test_a_continuation_from_the_command_line_goes_on_with_the_text(api: ApiHandle) -> None:
    first = lstmgen(
        "submit", "tiny", "--seed", "the ", "--length", "300", "--random-seed", "8", "--wait",
        "--priority", "high", url=api.url,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    first_id = re.findall(r"\b[0-9a-f]{32}\b", first.stderr)[0]
    second = lstmgen(
        "submit", "--continue-from", first_id, "--length", "200", "--wait", url=api.url
    )
    assert second.returncode == 0, second.stderr
    whole = lstmgen(
        "submit", "tiny", "--seed", "the ", "--length", "500", "--random-seed", "8", "--wait",
        url=api.url,
    )  # fmt: skip
    assert first.stdout.rstrip("\n") + second.stdout.rstrip("\n") == whole.stdout.rstrip("\n")
    with Client(api.url) as client:
        assert client.get(first_id).input["priority"] == "high"


def test_usage_shows_the_keys_jobs_and_limits(api: ApiHandle) -> None:
    done = lstmgen("usage", url=api.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("key public: 0 queued, 0 running (0 samples); limits")
    found = json.loads(lstmgen("usage", "--json", url=api.url).stdout)
    assert found["limits"]["max_queued"] == 1000
