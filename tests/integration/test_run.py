"""`make run` as a person sees it: its own redis-server, every process up, short lines, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.redis_server import free_port
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import START_TIMEOUT_S

UP_LINES = (
    r"redis-server up at redis://",
    r"generation worker \S+ up \(models: tiny\)",
    r"webhook worker up",
    r"api up at http://",
    r"lstmgen is up at http://127\.0\.0\.1:\d+ \(models: tiny, tiny2, tiny3\)",
)


class Output:
    """The lines a process prints, collected by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def join(self, timeout: float) -> None:
        """Wait until the process and its children have closed the output."""
        self._thread.join(timeout)

    def has(self, pattern: str) -> bool:
        """Return whether some line matches the pattern."""
        return any(re.search(pattern, line) for line in list(self.lines))

    def text(self) -> str:
        """Return everything printed so far."""
        return "\n".join(self.lines)


def worker_pid(port: int) -> int | None:
    """Return the pid of the generation worker of the stack whose API is on `port`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"gen1@" in command and f"LSTMGEN_PORT={port}\0".encode() in environ:
            return int(entry.name)
    return None


@pytest.fixture
def stack(model_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, str]]:
    """Start `python -m scripts.run` as `make run` does, on free ports, serving `tiny`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMGEN_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "LSTMGEN_PORT": str(port),
        "LSTMGEN_MODEL_DIR": str(model_dir),
        "LSTMGEN_DATA_DIR": str(tmp_path),  # not the developer's var/
        "LSTMGEN_WORKER_MODELS": "tiny",
        "LSTMGEN_DEFAULT_MODEL": "tiny",
        "LSTMGEN_WORKER_SLOTS": "4",
        "LSTMGEN_API_PROCESSES": "1",
        "NUMBA_NUM_THREADS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.run"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = Output(process)
    try:
        yield process, output, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:  # Ctrl-C: it stops the processes it started
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        output.join(30)
        assert process.stdout is not None
        process.stdout.close()


def test_make_run_prints_one_short_line_per_event_and_stops_on_ctrl_c(
    stack: tuple[subprocess.Popen[str], Output, str],
) -> None:
    process, output, url = stack
    for pattern in UP_LINES:
        wait_for(lambda p=pattern: output.has(p) or process.poll() is not None, START_TIMEOUT_S,
                 f"a line matching {pattern!r}")  # fmt: skip
        assert output.has(pattern), output.text()
    for _ in range(3):  # polls like the ones a health check makes
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    job = httpx.post(f"{url}/v1/jobs", json={"seed": "a", "length": 50}, timeout=30).json()
    short = job["id"][:8]
    wait_for(lambda: output.has(rf"{short} job ended succeeded: 50 characters"), 60,
             "the line of the job's end")  # fmt: skip
    assert output.has(rf"^\d\d:\d\d:\d\d {short} job started$")
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) == 0
    wait_for(lambda: output.has(r"^\d\d:\d\d:\d\d stopped$"), 10, "the last line")
    printed = output.text()
    assert "/readyz" not in printed and "/healthz" not in printed
    assert '{"ts"' not in printed  # no JSON lines: production's format is asked for by name
    assert "celery@" not in printed and "-------------- " not in printed  # no Celery banner


def test_a_killed_worker_is_restarted_and_the_stack_serves_again(
    stack: tuple[subprocess.Popen[str], Output, str],
) -> None:
    process, output, url = stack
    wait_for(lambda: output.has(UP_LINES[-1]) or process.poll() is not None, START_TIMEOUT_S,
             "the stack to be up")  # fmt: skip
    assert output.has(UP_LINES[-1]), output.text()
    pid = worker_pid(int(url.rsplit(":", 1)[1]))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20  # nobody touches the stack; it must serve again by then
    wait_for(lambda: output.has(r"generation worker 1 exited \(signal SIGKILL\); restarting"), 10,
             "the supervisor to notice")  # fmt: skip
    up = r"generation worker \S+ up \(models: tiny\)"
    wait_for(lambda: sum(bool(re.search(up, line)) for line in list(output.lines)) == 2,
             deadline - time.monotonic(), "the restarted worker")  # fmt: skip
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    job = httpx.post(f"{url}/v1/jobs", json={"seed": "a", "length": 50}, timeout=30).json()
    wait_for(lambda: output.has(rf"{job['id'][:8]} job ended succeeded"), 30, "a job on it")
    assert process.poll() is None  # the stack kept running
