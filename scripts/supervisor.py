"""Keep the stack's processes running: restart one that exits, with backoff, unless it loops."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("lstmgen.run")

CRASH_WINDOW_S = 60.0
MAX_CRASHES = 5  # exits within CRASH_WINDOW_S after which a child counts as crash-looping
FIRST_BACKOFF_S = 1.0  # the wait before the first restart; it doubles with each recent exit
MAX_BACKOFF_S = 30.0


class CrashLoop(Exception):
    """A child keeps exiting: restarting it again would only hide the fault."""


@dataclass
class Child:
    """One process of the stack and its recent exits."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    exits: deque[float] = field(default_factory=deque)  # when it exited, within the window
    restart_at: float | None = None  # when it starts again, while it waits to


Spawn = Callable[[Child], "subprocess.Popen[bytes]"]


def describe(code: int) -> str:
    """Return how a process ended, in words (`code 3`, `signal SIGKILL`)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


@dataclass
class Supervisor:
    """Start children, restart those that exit, stop them all; the clock is the caller's."""

    children: list[Child]
    spawn: Spawn

    def start(self) -> None:
        """Start every child."""
        for child in self.children:
            child.process = self.spawn(child)

    def check(self, now: float) -> None:
        """Restart what exited once its backoff has passed; raise CrashLoop if one loops."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.process = self.spawn(child)
                continue
            code = None if child.process is None else child.process.poll()
            if code is not None:
                self._exited(child, code, now)

    def _exited(self, child: Child, code: int, now: float) -> None:
        assert child.process is not None
        _kill_group(child.process)  # what it left behind (gunicorn's workers) holds its port
        child.exits.append(now)
        while now - child.exits[0] > CRASH_WINDOW_S:
            child.exits.popleft()
        if len(child.exits) >= MAX_CRASHES:
            raise CrashLoop(
                f"{child.name} exited {len(child.exits)} times in {CRASH_WINDOW_S:g} s "
                f"(last: {describe(code)}); stopping the stack"
            )
        delay = min(FIRST_BACKOFF_S * 2 ** (len(child.exits) - 1), MAX_BACKOFF_S)
        log.warning("%s exited (%s); restarting it in %g s", child.name, describe(code), delay)
        child.restart_at = now + delay

    def stop(self, timeout: float = 15.0) -> None:
        """Ask every child to stop (warm shutdown), then kill what is left after the timeout."""
        running = [c.process for c in reversed(self.children) if c.process is not None]
        for process in running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
