"""uvicorn on a thread of the daemon's process, on a socket bound before the daemon starts:
an address that is taken stops the start with a clear message, not a thread that dies."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from loguru import logger

from sora_watcher.options import ConfigError
from sora_watcher.server.app import create_app
from sora_watcher.server.context import Context
from sora_watcher.service_settings import Address


def bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # The protocol named: asyncio turns Nagle off (TCP_NODELAY) only on a socket that says it
    # is TCP; without it every answer waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"SORA_HTTP={address}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ToOurLog(logging.Handler):
    """uvicorn's own messages into our log, where secrets are masked (see logs.redact). Its
    traceback of an error is left out: the app's handler has logged it already."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in ("WARNING", "ERROR") else "INFO"
        logger.log(level, "HTTP service: {}", record.getMessage())


def quiet_uvicorn() -> None:
    for name in ("uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers = [ToOurLog()]
        log.setLevel(logging.WARNING)
        log.propagate = False


class HttpService:
    """The API and dashboard, served until ``close()``."""

    def __init__(self, context: Context, address: Address) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        quiet_uvicorn()
        config = uvicorn.Config(
            create_app(context),
            log_config=None,  # our own log says what matters; uvicorn's access log is noise
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)

    def serve(self, sock: socket.socket) -> None:
        try:
            self.server.run(sockets=[sock])
        except BaseException as exc:  # nothing dies silently, not even a server thread
            logger.opt(exception=exc).error("the HTTP service stopped: {}", exc)

    def start(self) -> None:
        """Bind (an address in use stops the start: ConfigError), then serve on a thread."""
        self.sock = bind(self.address)
        host, port = self.sock.getsockname()[:2]
        self.address = Address(host, port)  # the port chosen, when 0 was asked
        self.thread = threading.Thread(target=self.serve, args=(self.sock,), name="http")
        self.thread.daemon = True
        self.thread.start()
        logger.info("HTTP API and dashboard on http://{}/ (docs: /docs)", self.address)

    def close(self) -> None:
        self.server.should_exit = True
        if self.sock is not None:
            self.thread.join(timeout=5)
            self.sock.close()
