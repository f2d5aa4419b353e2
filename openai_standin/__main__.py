"""Command line: serve the stand-in of the OpenAI Images API until SIGTERM or Ctrl-C.

python -m openai_standin [--host 127.0.0.1] [--port 0] [--latency 2] [--max-in-flight 16]
                         [--api-key KEY] [--verbose]

It prints one line, `openai-standin listening on http://127.0.0.1:PORT/v1`: what a test or
the demo sets OPENAI_BASE_URL to. Faults and settings change through /_standin/* (server.py).
"""

from __future__ import annotations

import sys

from standin_kit import serve
from standin_kit.cli import parse_server_args, server_parser

from .server import ImagesStandIn


def main(argv: list[str] | None = None) -> int:
    parser = server_parser(
        "python -m openai_standin", "Serve a local stand-in of the OpenAI Images API."
    )
    parser.add_argument("--latency", type=float, default=2.0, help="seconds a generation takes")
    parser.add_argument(
        "--max-in-flight", type=int, default=16, help="generations at once; more get a 429"
    )
    parser.add_argument(
        "--api-key", default=None, help="the only key accepted (default: any non-empty key)"
    )
    args = parse_server_args(parser, argv)
    if args.latency < 0:
        parser.error("--latency must be >= 0")
    if args.max_in_flight < 1:
        parser.error("--max-in-flight must be >= 1")

    api = ImagesStandIn(
        args.host, args.port, args.latency, args.max_in_flight, args.api_key, args.verbose
    )
    return serve(api, "openai-standin")


if __name__ == "__main__":
    sys.exit(main())
