"""A real HTTP receiver on loopback whose answers tests script, recording every request."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

SECRET_A = "whsec_" + base64.b64encode(b"first secret of thirty-two bytes").decode()
SECRET_B = "whsec_" + base64.b64encode(b"second secret, rotated in later!").decode()


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def verify(self, secret: str) -> object:
        """Verify the signature with the standardwebhooks library; return the parsed body."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass(frozen=True)
class Answer:
    """What the receiver answers: a status, headers, or hanging until released."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class Receiver:
    """A threaded http.server that answers from per-path scripts (then 200) and records all."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Answer]] = {}
        self._changed = threading.Condition()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {key.lower(): value for key, value in self.headers.items()}
                answer = receiver._record(Received(self.path, headers, body, time.time()))
                if answer.hang:
                    receiver.release.wait(60)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests and stop serving."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        """Return the URL of a path on this receiver."""
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to `path` with these, in order (200 after them)."""
        with self._changed:
            self._scripts[path] = list(answers)

    def _record(self, received: Received) -> Answer:
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
            script = self._scripts.get(received.path.split("?")[0], [])
            return script.pop(0) if script else Answer()

    def received(self, path: str | None = None) -> list[Received]:
        """Return the requests so far (to one path)."""
        with self._changed:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 15.0
    ) -> list[Received]:
        """Wait until `count` requests (to one path) arrived; return them."""
        return self.wait_until(lambda got: len(got) >= count, path, timeout)

    def wait_until(
        self, done: Callable[[list[Received]], bool], path: str | None = None, timeout: float = 15.0
    ) -> list[Received]:
        """Wait until the requests so far (to one path) satisfy `done`; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if done(got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver got {len(got)} request(s): {got}")
                self._changed.wait(left)
