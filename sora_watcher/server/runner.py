"""uvicorn on a thread of the daemon's process, on a socket bound before the daemon starts:
an address that is taken stops the start with a clear message, not a thread that dies."""

from __future__ import annotations

import socket
import threading

import uvicorn
from loguru import logger

from sora_watcher.options import ConfigError
from sora_watcher.server.app import create_app
from sora_watcher.server.context import Context
from sora_watcher.server.settings import Address


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


class HttpService:
    """The API and dashboard, served until ``close()``."""

    def __init__(self, context: Context, address: Address) -> None:
        self.sock = bind(address)
        host, port = self.sock.getsockname()[:2]
        self.address = Address(host, port)  # the port chosen, when 0 was asked
        config = uvicorn.Config(
            create_app(context),
            log_config=None,  # our own log says what matters; uvicorn's access log is noise
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.serve, name="http", daemon=True)

    def serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # nothing dies silently, not even a server thread
            logger.opt(exception=exc).error("the HTTP service stopped: {}", exc)

    def start(self) -> None:
        self.thread.start()
        logger.info("HTTP API and dashboard on http://{}/ (docs: /docs)", self.address)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
