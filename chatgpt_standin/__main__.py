"""Command line: serve the stand-in, or write a session file for it.

python -m chatgpt_standin --port 8765 [--host 127.0.0.1] [--delay 1] [--secret X] [--verbose]
python -m chatgpt_standin make-session --base-url http://127.0.0.1:8765 --out session.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from standin_kit import is_loopback, serve

from . import auth
from .server import StandIn

DEFAULT_SECRET = "standin-secret"


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatgpt_standin", description="Serve the ChatGPT stand-in."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds from send to image")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="signs sessions, tokens, URLs")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host}: only loopback (127.x, localhost, ::1) is allowed")
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    standin = StandIn(args.host, args.port, args.delay, args.secret, verbose=args.verbose)
    return serve(standin, "chatgpt-standin")


def _make_session(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatgpt_standin make-session",
        description="Write a Playwright storage_state (session.json) valid for a stand-in.",
    )
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8765")
    parser.add_argument("--out", required=True, type=Path, help="file to write (mode 0600)")
    parser.add_argument("--user", default="demo")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="must match the server's")
    parser.add_argument(
        "--valid-for", type=float, default=auth.SESSION_LIFETIME, help="seconds (negative: expired)"
    )
    args = parser.parse_args(argv)
    try:
        state = auth.make_storage_state(args.base_url, args.user, args.secret, args.valid_for)
    except ValueError as error:
        parser.error(str(error))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the file holds a live session cookie.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
        handle.write("\n")
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + args.valid_for))
    print(f"wrote session for user {args.user!r} to {out} (valid until {until})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["make-session"]:
        return _make_session(args[1:])
    if args[:1] == ["serve"]:
        args = args[1:]
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
