"""What the two local stand-ins (sora_standin, openai_standin) share.

serving.py: loopback-only HTTP serving from a daemon thread, cut cleanly by stop(), and the
command-line serve loop. switches.py: failures armed for the next N requests by tests and demos.
"""

from .serving import StandInApp, TrackedServer, is_loopback, serve
from .switches import Switches

__all__ = ["StandInApp", "Switches", "TrackedServer", "is_loopback", "serve"]
