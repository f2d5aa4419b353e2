"""A local stand-in for the ChatGPT web app (image generation), for end-to-end tests and demos.

It serves the URLs, the JSON shapes and the event stream the real chatgpt.com is publicly known
to use (see /work/shared/chatgpt-web-notes.md), and a page rendered by its own JavaScript, so
that a real browser driven by Playwright uses it exactly as it would use the real site.
"""

from standin_kit.sessions import make_storage_state

from .server import StandIn

__all__ = ["StandIn", "make_storage_state"]
