"""A local stand-in for the OpenAI Images API, for end-to-end tests, benchmarks and demos.

Nobody here can reach the real API, so the daemon's `openai` backend is tested against this:
the same URL, JSON shapes, headers, refusals and failures as the real API is publicly known to
have (/work/shared/openai-images-notes.md), driven by the official `openai` package as client.

    with ImagesStandIn(latency=0.2).start() as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-anything")
"""

from .faults import NAMES as FAULTS
from .params import MODELS
from .server import Call, ImagesStandIn

__all__ = ["FAULTS", "MODELS", "Call", "ImagesStandIn"]
