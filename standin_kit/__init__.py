"""What the local stand-ins (sora_standin, chatgpt_standin, openai_standin) share, and how the
tests, the benchmarks and the demo start processes. Test support: not installed with the package.

serving.py: loopback-only HTTP serving from a daemon thread, cut cleanly by stop(), and the
command-line serve loop. switches.py: failures armed for the next N requests by tests and demos.
cli.py: the stand-ins' command lines (serve, make-session).
For the stand-ins of web sites (Sora, ChatGPT), imported on their own: sessions.py, the session
cookie and bearer token of OpenAI's web apps; site.py, the facade (scenarios, page variant,
revocable sessions); handler.py, the request handler's plumbing, login form and control routes.
process.py (imported on its own, ``standin_kit.process``): the daemon, a stand-in server or a
short command as a child process, with the environment built in one place.
"""

from .serving import StandInApp, TrackedServer, is_loopback, serve
from .switches import Switches

__all__ = ["StandInApp", "Switches", "TrackedServer", "is_loopback", "serve"]
