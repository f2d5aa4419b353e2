"""Loopback-only HTTP serving from a daemon thread, and the command-line serve loop."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, TypeVar

AppT = TypeVar("AppT")
StandInT = TypeVar("StandInT", bound="StandInApp")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TrackedServer(ThreadingHTTPServer, Generic[AppT]):
    """A ThreadingHTTPServer whose handlers reach `app` as `self.server.app`.

    IPv6 when the host has a ":"; a client that hangs up is not worth a traceback.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler_class: type[BaseHTTPRequestHandler],
        app: AppT,
    ) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler_class)

    # Connections are tracked so that stop() can cut kept-alive ones: otherwise a client
    # could go on talking to a "stopped" stand-in through a connection opened before.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the other side
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up is routine here; anything else deserves a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInApp:
    """A stand-in's facade: start() serves it from a daemon thread, on loopback only."""

    def __init__(
        self,
        host: str,
        port: int,
        handler_class: type[BaseHTTPRequestHandler],
        join_timeout: float,
    ) -> None:
        # The control endpoints (/_standin/*) have no auth: never expose them beyond loopback.
        if not is_loopback(host):
            raise ValueError(f"refusing to listen on {host!r}: only loopback hosts are allowed")
        self.host, self.port = host, port
        # Set by stop(): handlers that wait on purpose give up at once.
        self.stopping = threading.Event()
        self._handler_class = handler_class
        self._join_timeout = join_timeout  # how long stop() waits for the serving thread
        self._httpd: TrackedServer[StandInApp] | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self: StandInT) -> StandInT:
        if self._httpd is not None:
            return self
        address = (self.host, self.port)
        httpd: TrackedServer[StandInApp] = TrackedServer(address, self._handler_class, self)
        self.stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=self._join_timeout)
        self._httpd = self._thread = None

    def __enter__(self: StandInT) -> StandInT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(app: StandInApp, program: str) -> int:
    """Serve `app` until SIGTERM or Ctrl-C; 1 if it cannot listen.

    Prints `{program} listening on {base_url}` once listening: tests and the demo wait for
    exactly this line to learn the port.
    """
    stop = threading.Event()
    # SIGTERM (systemd, test fixtures, the demo script) ends the server as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        app.start()
    except OSError as error:
        print(f"{program}: cannot listen on {app.host}:{app.port}: {error}", file=sys.stderr)
        return 1
    print(f"{program} listening on {app.base_url}", flush=True)
    try:
        # A short wait in a loop keeps the main thread responsive to signals.
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0
