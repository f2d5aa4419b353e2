"""What the two local stand-ins (sora_standin, openai_standin) share, and how the tests, the
benchmarks and the demo start processes. Test support: not installed with the package.

serving.py: loopback-only HTTP serving from a daemon thread, cut cleanly by stop(), and the
command-line serve loop. switches.py: failures armed for the next N requests by tests and demos.
process.py (imported on its own, ``standin_kit.process``): the daemon, a stand-in server or a
short command as a child process, with the environment built in one place.
"""

from .serving import StandInApp, TrackedServer, is_loopback, serve
from .switches import Switches

__all__ = ["StandInApp", "Switches", "TrackedServer", "is_loopback", "serve"]
