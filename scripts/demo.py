"""``make demo``: the whole flow against a local stand-in, in well under a minute.

``python scripts/demo.py [openai|web|chatgpt]``. The default is the default backend: the OpenAI
Images API, here the project's local stand-in of it (no key, no cost). ``web`` is the Sora web
backend against the stand-in of Sora, ``chatgpt`` the chatgpt-web backend against the stand-in
of the ChatGPT web app, each with a demo session and a real Chromium.

Starts the stand-in, runs the real daemon on a demo home folder, drops ``examples/prompt.txt``
into its inbox the way a pipeline would, submits one more job through the HTTP API and follows
it to ``done``, stops the daemon with SIGTERM, and shows the images with the prompt each
carries.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The stand-ins and their process starter are test support, not installed: `make demo` runs
# this file from the checkout, so the checkout goes first on the import path.
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from standin_kit.process import (  # noqa: E402
    DaemonProcess,
    ProcessError,
    StandInServer,
    daemon_env,
    run_standin,
)

DEMO = ROOT / "demo"
DELAY = "2"  # seconds per generation in the stand-in
DEMO_KEY = "sk-standin-demo"  # the stand-in takes any key; a real one is never needed here


@dataclass(frozen=True)
class Demo:
    """One backend's demo: its stand-in, the daemon's backend, what the API job asks, and what
    the daemon needs on top of the stand-in's address."""

    standin: tuple[str, ...]  # the stand-in's module (its make-session too) and arguments
    backend: str  # SORA_BACKEND
    aspect_ratio: str  # the API job's: one this backend takes
    site: str | None = None  # a web app's name: a demo session is made for it; None: the API
    env: dict[str, str] = field(default_factory=dict)  # "{url}": the stand-in's address


DEMOS = {
    "openai": Demo(("openai_standin", "--latency", DELAY), "openai", "16:9",
                   env={"OPENAI_API_KEY": DEMO_KEY}),
    "web": Demo(("sora_standin", "--delay", DELAY), "web", "16:9", site="Sora"),
    # the ChatGPT site makes 1:1, 3:2 and 2:3 only; no pause between sends: a stand-in has no
    # allowance to spare (60 s by default)
    "chatgpt": Demo(("chatgpt_standin", "--delay", DELAY), "chatgpt-web", "3:2", site="ChatGPT",
                    env={"SORA_CHATGPT_URL": "{url}", "SORA_MIN_INTERVAL": "0"}),
}  # fmt: skip


def setup(chosen: Demo, url: str) -> dict[str, str]:
    """Says what runs where; the daemon's environment on top of the stand-in's address."""
    if chosen.site is None:
        api_setup(url)
    else:
        web_setup(chosen.standin[0], chosen.site, url)
    return {name: value.format(url=url) for name, value in chosen.env.items()}


def api_setup(url: str) -> None:
    print(f"1. a local STAND-IN of the OpenAI Images API runs at {url}")
    print("   (not the real API: no key needed, nothing billed; set OPENAI_API_KEY for real use)")
    print("2. the daemon is pointed at it: SORA_BACKEND=openai, OPENAI_BASE_URL=" + url)


def web_setup(module: str, site: str, url: str) -> None:
    """A demo session, made by the stand-in's own ``make-session``."""
    print(f"1. the local stand-in of the {site} web app runs at {url}")
    session = DEMO / "session.json"
    made = run_standin(module, "make-session", "--base-url", url, "--out", str(session))
    print(made.stdout + made.stderr, end="")
    if made.returncode != 0:
        raise SystemExit(f"demo: make-session exited with {made.returncode}")
    print(f"2. a demo session for it is in {session.relative_to(ROOT)}")


def show(made: list[Path]) -> None:
    """Each image with its size and the prompt it carries in its PNG metadata."""
    for image in made:
        with Image.open(image) as picture:
            size = f"{picture.width}x{picture.height} {picture.format}"
            carried = picture.text.get("parameters", "").splitlines()  # type: ignore[attr-defined]
        print(f"   {image.relative_to(ROOT)}  ({size}, sidecar {image.stem}.json)")
        print(f"     prompt inside the PNG: {carried[0] if carried else '(none)'}")


def through_the_api(api: str, aspect_ratio: str) -> None:
    """A program's way in: POST a job, follow it to its end by its id."""
    job = {"prompt": "a lighthouse at dawn, watercolour", "aspect_ratio": aspect_ratio}
    with httpx.Client(base_url=api, timeout=30) as client:
        accepted = client.post("/v1/jobs", json=job).raise_for_status().json()
        print(f"5. POST {api}/v1/jobs -> 202 {accepted}")
        deadline = time.monotonic() + 120
        while (state := client.get(accepted["status_url"]).json())["state"] not in (
            "done",
            "failed",
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: job {accepted['id']} still {state['state']}")
            time.sleep(0.2)  # a client polling its job's status, as any client would
        images = [image["url"] for prompt in state["prompts"] for image in prompt["images"]]
        print(f"   GET {accepted['status_url']} -> {state['state']}, images {images}")
        print(f"   (the dashboard was at {api}/ and the API's docs at {api}/docs)")


def demo(name: str) -> int:
    started = time.monotonic()
    chosen = DEMOS[name]
    with StandInServer(*chosen.standin) as standin:
        url = standin.base_url
        for folder in ("inbox", "processing"):
            shutil.rmtree(DEMO / folder, ignore_errors=True)
        DEMO.mkdir(exist_ok=True)
        settings = setup(chosen, url)
        env = daemon_env(DEMO, url, chosen.backend, SORA_HTTP="127.0.0.1:0", **settings)
        before = set((DEMO / "images").glob("*.png"))
        print("3. the daemon starts (python watcher.py run):")
        with DaemonProcess(DEMO, env, "run", echo=lambda line: print("  | " + line)) as daemon:
            api = daemon.expect(r"HTTP API and dashboard on (http://\S+/)", timeout=120)[1]
            daemon.ready(timeout=120)
            inbox = DEMO / "inbox"
            temporary = inbox / ".prompt.txt.tmp"
            shutil.copyfile(ROOT / "examples" / "prompt.txt", temporary)
            temporary.rename(inbox / "prompt.txt")  # publish atomically, as a pipeline should
            print("4. examples/prompt.txt dropped into demo/inbox/")
            daemon.expect("prompt.txt: ", timeout=120)
            through_the_api(api.rstrip("/"), chosen.aspect_ratio)
            daemon.signal()  # SIGTERM, as systemd stops it
            daemon.expect("stopped", timeout=30)
            daemon.wait(timeout=30)
    made = sorted(set((DEMO / "images").glob("*.png")) - before)
    print(f"6. {len(made)} image(s) made in {time.monotonic() - started:.1f}s:")
    show(made)
    print(f"   input moved to {DEMO.relative_to(ROOT)}/processed/, logs in demo/logs/")
    return 0 if made else 1


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "openai"
    if name not in DEMOS:
        raise SystemExit(f"demo: unknown backend {name!r}: {', '.join(DEMOS)}")
    try:
        return demo(name)
    except ProcessError as error:
        raise SystemExit(f"demo: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
