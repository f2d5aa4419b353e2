"""Command line: serve the ChatGPT stand-in, or write a session file for it.

python -m chatgpt_standin --port 8765 [--host 127.0.0.1] [--delay 1] [--secret X] [--verbose]
python -m chatgpt_standin make-session --base-url http://127.0.0.1:8765 --out session.json
"""

from __future__ import annotations

import sys

from standin_kit.cli import WebCommand, web_main

from .server import StandIn

COMMAND = WebCommand(
    package="chatgpt_standin",
    program="chatgpt-standin",
    description="Serve the ChatGPT stand-in.",
    delay=1.0,
    delay_help="seconds from send to image",
    make=StandIn,
)


def main(argv: list[str] | None = None) -> int:
    return web_main(COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
