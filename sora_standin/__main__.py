"""Command line: serve the stand-in, or write a session file for it.

python -m sora_standin --port 8765 [--host 127.0.0.1] [--delay 2] [--secret X] [--verbose]
python -m sora_standin make-session --base-url http://127.0.0.1:8765 --out session.json
"""

from __future__ import annotations

import sys

from standin_kit.cli import WebCommand, web_main

from .server import StandIn

COMMAND = WebCommand(
    package="sora_standin",
    program="sora-standin",
    description="Serve the stand-in.",
    delay=2.0,
    delay_help="generation time in seconds",
    make=StandIn,
)


def main(argv: list[str] | None = None) -> int:
    return web_main(COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
