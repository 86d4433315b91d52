"""A TCP proxy on loopback that cuts chosen responses mid-way, to test stream resumption."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class _Connection:
    """One proxied connection; armed once a request to cut passes through it."""

    budget: int | None = None  # response bytes still let through; None: no limit
    armed: bool = False  # a request to cut passed through it
    ends: tuple[socket.socket, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CuttingProxy:
    """Forward to 127.0.0.1:`target_port`; cut the first `cuts` responses to requests naming
    `match` (on any connection, also a reused keep-alive one) after `cut_after` bytes, or, with
    `cut_after=None`, when the test calls `cut()`."""

    target_port: int
    match: bytes = b"/stream"
    cut_after: int | None = 600
    cuts: int = 1
    port: int = 0
    cut_done: int = 0
    seen: list[bytes] = field(default_factory=list)  # requests that named `match`
    _server: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: list[_Connection] = field(default_factory=list)

    def start(self) -> CuttingProxy:
        """Listen and forward in background threads."""
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        """Return the base URL that goes through the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop accepting connections."""
        if self._server is not None:
            self._server.close()

    def cut(self) -> None:
        """Cut the armed connections now, mid-response (both sides closed)."""
        with self._lock:
            armed = [conn for conn in self._connections if conn.armed]
        for conn in armed:
            for end in conn.ends:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        connection = _Connection(ends=(downstream, upstream))
        with self._lock:
            self._connections.append(connection)
        threading.Thread(
            target=self._requests, args=(downstream, upstream, connection), daemon=True
        ).start()
        self._responses(upstream, downstream, connection)

    def _requests(self, source: socket.socket, sink: socket.socket, conn: _Connection) -> None:
        with _closing(source, sink):
            while data := source.recv(65536):
                with self._lock, conn.lock:
                    if self.match in data:
                        self.seen.append(data)
                    if self.match in data and self.cut_done < self.cuts:
                        self.cut_done += 1
                        conn.armed = True
                        conn.budget = self.cut_after
                sink.sendall(data)

    def _responses(self, source: socket.socket, sink: socket.socket, conn: _Connection) -> None:
        with _closing(source, sink):
            while data := source.recv(4096):
                with conn.lock:
                    if conn.budget is not None:
                        data = data[: conn.budget]
                        conn.budget -= len(data)
                sink.sendall(data)
                if conn.budget == 0:
                    return  # cut: both sides are closed mid-response


@contextlib.contextmanager
def _closing(*ends: socket.socket) -> Iterator[None]:
    try:
        yield
    except OSError:
        pass
    finally:
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
