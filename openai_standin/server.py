"""The HTTP side of the stand-in: a ThreadingHTTPServer, its routes, and ImagesStandIn.

API routes (params.py says what a body may hold, faults.py how calls can be made to fail):
    POST /v1/images/generations
    GET  /v1/models, /v1/models/{id}
Control endpoints, for a stand-in started from the command line (no auth: loopback only):
    GET  /_standin/health
    POST /_standin/config       {"latency": s, "max_in_flight": n}
    POST /_standin/fault        {"name": ..., "count": n|null, "params": {...}}
    POST /_standin/clear        disarm every fault
    GET  /_standin/calls        {"calls": [...], "in_flight": n, "peak_in_flight": n}
    POST /_standin/reset_calls  forget the calls seen and the peak
"""

from __future__ import annotations

import json
import math
import re
import secrets
import select
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from standin_kit import StandInApp, TrackedServer, is_loopback

from . import errors, faults, images, params
from .errors import ApiError

MAX_BODY = 1 << 20
# A body up to this size is read and thrown away before the 413, so that the client gets the
# answer rather than a connection reset while it is still sending.
MAX_DRAINED = 16 * MAX_BODY


@dataclass
class Call:
    """One `POST /v1/images/generations` as the stand-in saw it.

    prompt, model, n, size and quality are the request's, with the API's defaults filled in
    (gpt-image-2, 1, "auto", "auto"); None when missing or of the wrong type. `status` is the
    HTTP status answered: None while the call runs, and when nothing was answered (reset, hang,
    stop(), a client that gave up). `started` and `ended` are time.monotonic() values.
    """

    prompt: str | None = None
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    status: int | None = None
    fault: str | None = None
    request_id: str = ""
    started: float = 0.0
    ended: float | None = None


def _call_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The Call fields of a body, read leniently: they are recorded even if it is refused."""
    defaults: dict[str, Any] = {
        "prompt": None,
        "model": params.DEFAULTS["model"],
        "n": 1,
        "size": params.DEFAULTS["size"],
        "quality": params.DEFAULTS["quality"],
    }
    fields: dict[str, Any] = {}
    for name, default in defaults.items():
        value = body.get(name)
        value = default if value is None else value
        kind = int if name == "n" else str
        fields[name] = value if type(value) is kind else None
    return fields


def _value_of(body: dict[str, Any], param: str) -> object:
    """The request's value of `param`, or what its absence stands for."""
    value = body.get(param)
    return params.DEFAULTS.get(param, "") if value is None else value


def _b64_images(request: params.Generation, spoiled_by: str | None) -> list[str]:
    """The `b64_json` of each image of a generation, spoiled if a data fault is given."""
    if spoiled_by == "empty_data":
        return []
    transparent = request.background == "transparent"
    size = (request.width, request.height)
    data = [
        images.b64_image(
            request.prompt, index, size, request.output_format, transparent, request.compression
        )
        for index in range(request.n)
    ]
    return data if spoiled_by is None else [faults.spoil(spoiled_by, b64) for b64 in data]


def _model_json(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": params.MODELS[model], "owned_by": "system"}


class ImagesStandIn(StandInApp):
    """A local stand-in for the OpenAI Images API, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 2.0,
        max_in_flight: int = 16,
        api_key: str | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(host, port, _Handler, join_timeout=2)
        self.latency = latency  # seconds a generation takes; read when a call arrives
        self.max_in_flight = max_in_flight  # generations at once; one more gets a 429
        self.api_key = api_key  # None: any non-empty Bearer key is accepted
        self.verbose = verbose
        self._faults = faults.Faults()
        self._lock = threading.Condition()
        self._calls: list[Call] = []
        self._in_flight = 0
        self._peak = 0

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL is set to: http://127.0.0.1:PORT/v1."""
        return f"{super().base_url}/v1"

    # --- faults (see faults.py) -------------------------------------------------------------

    def arm(self, name: str, count: int | None = 1, **params: Any) -> None:
        """Fail the next `count` generation calls with fault `name` (None: until clear())."""
        self._faults.arm(name, count, params)

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def armed(self) -> dict[str, dict[str, Any]]:
        """{name: {"remaining": n or None, "params": {...}}} for what is still armed."""
        return self._faults.snapshot()

    # --- what was seen ----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Copies of every generation call seen, in arrival order."""
        with self._lock:
            return [replace(call) for call in self._calls]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak

    def wait_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` generations are running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight >= count, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no generation is running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def reset_calls(self) -> None:
        """Forget the calls seen and the peak (calls running now still count as running)."""
        with self._lock:
            self._calls.clear()
            self._peak = self._in_flight

    # --- used by the request handlers ------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _update(self, call: Call, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(call, name, value)

    def _acquire(self, limit: int) -> bool:
        with self._lock:
            if self._in_flight >= limit:
                return False
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._lock.notify_all()
            return True

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _take_fault(self, prompt: str) -> tuple[str, dict[str, Any]] | None:
        # The prompt's marker wins, and leaves the armed faults for the other calls.
        name = faults.from_prompt(prompt)
        if name is not None:
            return name, dict(faults.DEFAULT_PARAMS[name])
        return self._faults.take()

    def _key_refused(self) -> bool:
        """A refused key is refused everywhere: model lookups fail too."""
        return self._faults.armed_forever("invalid_api_key")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client's connection pool expects
    server_version = "openai-standin"
    timeout = 30  # idle keep-alive connections must not hold a thread forever
    # The headers and the body go out in two writes: with Nagle's algorithm on, the second
    # waits for the client's delayed ACK, about 40 ms on a reused connection.
    disable_nagle_algorithm = True

    # Set per request by _dispatch.
    request_id: str
    started: float
    call: Call | None  # the generation call being answered, if any
    body: bytes
    body_error: ApiError | None

    @property
    def app(self) -> ImagesStandIn:
        return cast("TrackedServer[ImagesStandIn]", self.server).app

    # --- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: headers, and so the API key, are never logged.
        if self.app.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self.request_id = f"req_{secrets.token_hex(16)}"
        self.started = time.monotonic()
        self.call = None
        try:
            # Read the body before anything can fail, or it would poison the kept-alive stream.
            self._read_body()
            path = urlsplit(self.path).path
            for route_method, pattern, handler in ROUTES:
                match = pattern.fullmatch(path)
                if match is not None and route_method == method:
                    handler(self, match)
                    return
            raise errors.invalid_url(method, path)
        except ApiError as error:
            self._json(error.status, error.body(), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on this request (its timeout)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._json(500, errors.server_error().body())

    def _read_body(self) -> None:
        self.body, self.body_error = b"", None
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # Not decoded here (no client of this API sends it): refuse and end the stream.
            self.close_connection = True
            self.body_error = ApiError(411, "A Content-Length header is required.")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 < length <= MAX_BODY:
            self.body = self.rfile.read(length)
        elif MAX_BODY < length <= MAX_DRAINED:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break  # the client hung up
                length -= len(chunk)
            self.body_error = errors.body_too_large(MAX_BODY)
        elif length != 0:
            self.close_connection = True  # the rest of the stream cannot be trusted
            too_large = length > MAX_DRAINED
            self.body_error = (
                errors.body_too_large(MAX_BODY)
                if too_large
                else ApiError(400, "Invalid Content-Length header.")
            )

    def _json_body(self) -> dict[str, Any]:
        if self.body_error is not None:
            raise self.body_error
        try:
            value = json.loads(self.body)
        except ValueError:
            raise errors.unparsable_json() from None
        if not isinstance(value, dict):
            raise errors.unparsable_json()
        return value

    def _send(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]]
    ) -> None:
        now = time.monotonic()
        if self.call is not None:
            # Recorded before the answer goes out: a client that reads `calls` as soon as it
            # has its answer must find it there.
            self.app._update(self.call, status=status, ended=now)
        elapsed_ms = round((now - self.started) * 1000)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", self.request_id)
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", str(elapsed_ms))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), "application/json", headers or [])

    def _drop(self, reset: bool = False) -> None:
        """End the exchange without an answer (a reset cuts the connection with a RST)."""
        self.close_connection = True
        if reset:
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def _interrupted(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: without end); True if stop() or the client's hang-up ended it.

        A call whose client is gone (killed, or past its timeout) ends at once: otherwise it
        would hold its generation slot, and a later test would meet 429s it did not cause.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        while not self.app.stopping.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            # The client sends nothing before it has its answer, so a readable socket means
            # it hung up, or stop() shut the socket down. The 0.5 s cap is a safety net.
            if not poller.poll(500 if left is None else min(500, left * 1000)):
                continue
            if self._client_gone():
                return True
            # Data after all (a pipelining client): only stop() can end the wait now.
            return self.app.stopping.wait(left)
        return True

    def _client_gone(self) -> bool:
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:  # reset by the client
            return True

    def _check_key(self) -> str:
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise errors.missing_api_key()
        if self.app.api_key is not None and key != self.app.api_key:
            raise errors.invalid_api_key(key)
        return key

    def _rate_headers(self, limit: int, used: int) -> list[tuple[str, str]]:
        # The stand-in's limit is on generations at once, shown as the API's request limit.
        return [
            ("x-ratelimit-limit-requests", str(limit)),
            ("x-ratelimit-remaining-requests", str(max(0, limit - used))),
            ("x-ratelimit-reset-requests", f"{math.ceil(self.app.latency * 1000)}ms"),
        ]

    # --- images ---------------------------------------------------------------------------

    def generate(self, match: re.Match[str]) -> None:
        self.call = call = Call(request_id=self.request_id, started=self.started)
        self.app._record(call)
        try:
            self._generate(call)
        except ApiError as error:
            self._json(error.status, error.body(), error.headers)
        finally:
            if call.ended is None:  # nothing was answered (_send records what is)
                self.app._update(call, ended=time.monotonic())

    def _generate(self, call: Call) -> None:
        """Answer one generation call, or end it without an answer."""
        key = self._check_key()
        body = self._json_body()
        self.app._update(call, **_call_fields(body))
        request = params.parse(body)
        fault = self.app._take_fault(request.prompt)
        if fault is None:
            self._answer(request, None)
            return
        name, fault_params = fault
        self.app._update(call, fault=name)
        self.log_message("fault %s on %s", name, self.request_id)
        if name == "hang":
            if self._interrupted(fault_params["seconds"]):  # None: until stop()
                self._drop()
            else:
                self._answer(request, None)
            return
        if name == "reset":
            self._drop(reset=True)
            return
        if name in ("bad_gateway_html", "html_page_200"):
            retry_after = fault_params["retry_after"]
            headers = [] if retry_after is None else errors.retry_headers(retry_after)
            status = 502 if name == "bad_gateway_html" else 200
            self._send(status, faults.BAD_GATEWAY_PAGE, "text/html", headers)
            return
        if name in faults.DATA_FAULTS:
            self._answer(request, name)
            return
        raise faults.error(
            name,
            fault_params,
            key=key,
            model=request.model,
            value=_value_of(body, fault_params.get("param", "")),
            request_id=self.request_id,
        )

    def _answer(self, request: params.Generation, spoiled_by: str | None) -> None:
        limit = self.app.max_in_flight
        if not self.app._acquire(limit):
            error = errors.rate_limited(request.model, limit, limit, 1.0)
            error.headers += self._rate_headers(limit, limit)
            raise error
        try:
            deadline = self.started + self.app.latency
            data = _b64_images(request, spoiled_by)
            if self._interrupted(max(0.0, deadline - time.monotonic())):
                self._drop()
                return
        finally:
            # Released before answering: a client that sends its next call as soon as it has
            # this answer must find the slot free.
            self.app._release()
        input_tokens, output_tokens = request.input_tokens(), request.output_tokens()
        answer = {
            "created": int(time.time()),
            "data": [{"b64_json": b64} for b64 in data],
            "size": request.size,
            "quality": request.quality,
            "output_format": request.output_format,
            "background": request.background,
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }
        self._json(200, answer, self._rate_headers(limit, self.app.in_flight))

    # --- models ---------------------------------------------------------------------------

    def _check_models_key(self) -> None:
        key = self._check_key()
        if self.app._key_refused():
            raise errors.invalid_api_key(key)

    def list_models(self, match: re.Match[str]) -> None:
        self._check_models_key()
        self._json(200, {"object": "list", "data": [_model_json(m) for m in params.MODELS]})

    def get_model(self, match: re.Match[str]) -> None:
        self._check_models_key()
        model = unquote(match["model"])
        if model not in params.MODELS:
            raise errors.model_not_found(model)
        self._json(200, _model_json(model))

    # --- control endpoints ----------------------------------------------------------------

    def health(self, match: re.Match[str]) -> None:
        self._json(200, {"ok": True})

    def config(self, match: re.Match[str]) -> None:
        body = self._json_body()
        if "latency" in body:
            latency = body["latency"]
            if type(latency) not in (int, float) or latency < 0:
                raise ApiError(400, "latency must be a number >= 0", param="latency")
            self.app.latency = float(latency)
        if "max_in_flight" in body:
            limit = body["max_in_flight"]
            if type(limit) is not int or limit < 1:
                raise ApiError(400, "max_in_flight must be an integer >= 1", param="max_in_flight")
            self.app.max_in_flight = limit
        self._json(200, {"latency": self.app.latency, "max_in_flight": self.app.max_in_flight})

    def arm_fault(self, match: re.Match[str]) -> None:
        body = self._json_body()
        name, count, fault_params = body.get("name"), body.get("count", 1), body.get("params")
        if not isinstance(name, str) or not isinstance(fault_params or {}, dict):
            raise ApiError(400, "expected {name: string, count: n|null, params: object}")
        try:
            self.app.arm(name, count, **(fault_params or {}))
        except (TypeError, ValueError) as error:
            raise ApiError(400, str(error), param="name") from None
        self._json(200, {"faults": self.app.armed()})

    def clear_faults(self, match: re.Match[str]) -> None:
        self.app.clear()
        self._json(200, {"faults": self.app.armed()})

    def list_calls(self, match: re.Match[str]) -> None:
        calls = [asdict(call) for call in self.app.calls]
        in_flight, peak = self.app.in_flight, self.app.peak_in_flight
        self._json(200, {"calls": calls, "in_flight": in_flight, "peak_in_flight": peak})

    def reset_calls(self, match: re.Match[str]) -> None:
        self.app.reset_calls()
        self.list_calls(match)


Handler = Callable[[_Handler, "re.Match[str]"], None]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("POST", r"/v1/images/generations", _Handler.generate),
        ("GET", r"/v1/models", _Handler.list_models),
        ("GET", r"/v1/models/(?P<model>[^/]+)", _Handler.get_model),
        ("GET", r"/_standin/health", _Handler.health),
        ("POST", r"/_standin/config", _Handler.config),
        ("POST", r"/_standin/fault", _Handler.arm_fault),
        ("POST", r"/_standin/clear", _Handler.clear_faults),
        ("GET", r"/_standin/calls", _Handler.list_calls),
        ("POST", r"/_standin/reset_calls", _Handler.reset_calls),
    ]
]

__all__ = ["Call", "ImagesStandIn", "is_loopback"]
