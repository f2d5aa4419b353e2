"""The stand-ins' command lines, built one way.

Every stand-in serves on a loopback host (``--host``, ``--port``, ``--verbose``: server_parser
and parse_server_args). A web site's stand-in (Sora, ChatGPT) also takes ``--delay`` and
``--secret``, and writes a session file for itself with ``make-session``: web_main() is its
whole command line, given what differs (a WebCommand).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import sessions
from .serving import StandInApp, is_loopback, serve

DEFAULT_SECRET = "standin-secret"

# make(host, port, delay, secret, verbose): the site's stand-in, not started.
WebFactory = Callable[[str, int, float, str, bool], StandInApp]


def server_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with --host, --port and --verbose; the stand-in adds its own options."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def parse_server_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    """The arguments (`argv`, or the command line's), the host refused (exit 2) unless it is
    a loopback one."""
    args = parser.parse_args(argv)
    # The control endpoints have no auth: never expose them beyond loopback.
    if not is_loopback(args.host):
        parser.error(f"--host {args.host}: only loopback (127.x, localhost, ::1) is allowed")
    return args


@dataclass(frozen=True)
class WebCommand:
    """What differs between the command lines of the web sites' stand-ins."""

    package: str  # run as `python -m <package>`
    program: str  # named in the line printed once listening: "<program> listening on <url>"
    description: str
    delay: float  # the default of --delay
    delay_help: str
    make: WebFactory


def web_main(command: WebCommand, argv: list[str] | None = None) -> int:
    """``[serve] [options]`` serves the stand-in; ``make-session [options]`` writes a session
    file for it."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["make-session"]:
        return _make_session(command, args[1:])
    if args[:1] == ["serve"]:
        args = args[1:]
    return _serve(command, args)


def _serve(command: WebCommand, argv: list[str]) -> int:
    parser = server_parser(f"python -m {command.package}", command.description)
    parser.add_argument("--delay", type=float, default=command.delay, help=command.delay_help)
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="signs sessions, tokens, URLs")
    args = parse_server_args(parser, argv)
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    standin = command.make(args.host, args.port, args.delay, args.secret, args.verbose)
    return serve(standin, command.program)


def _make_session(command: WebCommand, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {command.package} make-session",
        description="Write a Playwright storage_state (session.json) valid for a stand-in.",
    )
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8765")
    parser.add_argument("--out", required=True, type=Path, help="file to write (mode 0600)")
    parser.add_argument("--user", default="demo")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="must match the server's")
    parser.add_argument(
        "--valid-for",
        type=float,
        default=sessions.SESSION_LIFETIME,
        help="seconds (negative: expired)",
    )
    args = parser.parse_args(argv)
    try:
        state = sessions.make_storage_state(args.base_url, args.user, args.secret, args.valid_for)
    except ValueError as error:
        parser.error(str(error))
    _write_private(args.out, json.dumps(state, indent=2) + "\n")
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + args.valid_for))
    print(f"wrote session for user {args.user!r} to {args.out} (valid until {until})")
    return 0


def _write_private(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the file holds a live session cookie.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
