"""`make run`'s supervisor over real child processes, on a clock the test moves."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from scripts.supervisor import (
    CRASH_WINDOW_S,
    MAX_CRASHES,
    Child,
    CrashLoop,
    Supervisor,
    describe,
)

EXITS = [sys.executable, "-c", "import sys; sys.exit(3)"]
WAITS = [sys.executable, "-c", "import time; time.sleep(60)"]


def supervisor(*commands: list[str]) -> tuple[Supervisor, list[str]]:
    """Return a supervisor of these commands and the names it started, in order."""
    started: list[str] = []

    def spawn(child: Child) -> subprocess.Popen[bytes]:
        started.append(child.name)
        return subprocess.Popen(child.command, start_new_session=True)

    children = [Child(f"child{i}", command) for i, command in enumerate(commands)]
    return Supervisor(children, spawn), started


def exited(child: Child) -> None:
    """Wait until the child's current process has ended."""
    assert child.process is not None
    child.process.wait(30)


def test_an_exited_child_restarts_after_a_doubling_backoff() -> None:
    sup, started = supervisor(EXITS, WAITS)
    sup.start()
    try:
        crashing, steady = sup.children
        exited(crashing)
        sup.check(100.0)
        assert crashing.restart_at == 101.0 and started == ["child0", "child1"]
        sup.check(100.5)
        assert started == ["child0", "child1"]  # not before its backoff
        sup.check(101.0)
        assert started == ["child0", "child1", "child0"]
        exited(crashing)
        sup.check(101.5)
        assert crashing.restart_at == 103.5  # the second exit within the window waits 2 s
        assert steady.process is not None and steady.process.poll() is None
    finally:
        sup.stop()


def test_a_child_that_keeps_exiting_stops_the_stack_with_a_clear_message() -> None:
    sup, _ = supervisor(EXITS)
    sup.start()
    try:
        child = sup.children[0]
        now = 0.0
        for _ in range(MAX_CRASHES - 1):
            exited(child)
            sup.check(now)
            assert child.restart_at is not None
            now = child.restart_at
            sup.check(now)
        exited(child)
        with pytest.raises(CrashLoop, match=rf"child0 exited {MAX_CRASHES} times in 60 s"):
            sup.check(now)
    finally:
        sup.stop()


def test_exits_spread_wider_than_the_window_are_forgiven() -> None:
    sup, _ = supervisor(EXITS)
    sup.start()
    try:
        child = sup.children[0]
        now = 0.0
        for _ in range(3 * MAX_CRASHES):
            exited(child)
            sup.check(now)
            assert child.restart_at is not None
            now = child.restart_at + CRASH_WINDOW_S  # long after: the earlier exits age out
            sup.check(now)
    finally:
        sup.stop()


def test_stop_ends_every_child() -> None:
    sup, _ = supervisor(WAITS, WAITS)
    sup.start()
    sup.stop(timeout=5)
    assert all(c.process is not None and c.process.poll() is not None for c in sup.children)


def test_exit_codes_in_words() -> None:
    assert describe(3) == "code 3"
    assert describe(-signal.SIGKILL) == "signal SIGKILL"
