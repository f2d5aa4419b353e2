"""A local stand-in for the Sora web app, for end-to-end tests and demos.

It serves the same URLs and JSON shapes as the real site, so that a real browser driven by
Playwright can use it exactly as it would use sora.com.
"""

from standin_kit.sessions import make_storage_state

from .server import StandIn

__all__ = ["StandIn", "make_storage_state"]
