"""``make demo``: the whole flow against a local stand-in, in well under a minute.

``python scripts/demo.py [openai|web]``. The default is the default backend: the OpenAI Images
API, here the project's local stand-in of it (no key, no cost). ``web`` is the Sora web
backend against the stand-in of Sora, with a demo session and a real Chromium.

Starts the stand-in, runs the real daemon on a demo home folder, drops ``examples/prompt.txt``
into its inbox the way a pipeline would, waits until the input reaches ``processed/``, stops
the daemon with SIGTERM, and shows the images with the prompt each carries.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
DELAY = "2"  # seconds per generation in the stand-in
DEMO_KEY = "sk-standin-demo"  # the stand-in takes any key; a real one is never needed here


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )


def read_until(process: subprocess.Popen[str], marker: str, echo: bool) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if echo:
            print("  | " + line.rstrip())
        if marker in line:
            return line
    raise SystemExit(f"demo: the process ended before printing {marker!r}")


def web_setup(url: str, env: dict[str, str]) -> None:
    print(f"1. the local stand-in of the Sora web app runs at {url}")
    session = DEMO / "session.json"
    subprocess.run(
        [sys.executable, "-m", "sora_standin", "make-session", "--base-url", url,
         "--out", str(session)],
        cwd=ROOT, check=True,
    )  # fmt: skip
    print(f"2. a demo session for it is in {session.relative_to(ROOT)}")
    env.update(SORA_BACKEND="web", SORA_BASE_URL=url)


def openai_setup(url: str, env: dict[str, str]) -> None:
    print(f"1. a local STAND-IN of the OpenAI Images API runs at {url}")
    print("   (not the real API: no key needed, nothing billed; set OPENAI_API_KEY for real use)")
    print("2. the daemon is pointed at it: SORA_BACKEND=openai, OPENAI_BASE_URL=" + url)
    env.update(SORA_BACKEND="openai", OPENAI_BASE_URL=url, OPENAI_API_KEY=DEMO_KEY)


def main() -> int:
    backend = sys.argv[1] if len(sys.argv) > 1 else "openai"
    if backend not in ("openai", "web"):
        raise SystemExit(f"demo: unknown backend {backend!r}: openai or web")
    started = time.monotonic()
    if backend == "web":
        standin = start("-m", "sora_standin", "--port", "0", "--delay", DELAY)
    else:
        standin = start("-m", "openai_standin", "--port", "0", "--latency", DELAY)
    daemon = None
    try:
        url = read_until(standin, "listening on", echo=False).split()[-1]
        for folder in ("inbox", "processing"):
            shutil.rmtree(DEMO / folder, ignore_errors=True)
        DEMO.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SORA_", "OPENAI_"))}
        env.update(SORA_HOME=str(DEMO), SORA_ENV_FILE=str(DEMO / ".env"), PYTHONUNBUFFERED="1")
        (web_setup if backend == "web" else openai_setup)(url, env)
        before = set((DEMO / "images").glob("*.png"))
        print("3. the daemon starts (python watcher.py run):")
        daemon = start("watcher.py", "run", env=env)
        read_until(daemon, "watching", echo=True)
        inbox = DEMO / "inbox"
        temporary = inbox / ".prompt.txt.tmp"
        shutil.copyfile(ROOT / "examples" / "prompt.txt", temporary)
        temporary.rename(inbox / "prompt.txt")  # publish atomically, as a pipeline should
        print("4. examples/prompt.txt dropped into demo/inbox/")
        read_until(daemon, "prompt.txt: ", echo=True)
        daemon.send_signal(signal.SIGTERM)
        read_until(daemon, "stopped", echo=True)
        daemon.wait(timeout=30)
        made = sorted(set((DEMO / "images").glob("*.png")) - before)
        print(f"5. {len(made)} image(s) made in {time.monotonic() - started:.1f}s:")
        for image in made:
            with Image.open(image) as picture:
                size = f"{picture.width}x{picture.height} {picture.format}"
                carried = picture.text.get("parameters", "").splitlines()  # type: ignore[attr-defined]
            print(f"   {image.relative_to(ROOT)}  ({size}, sidecar {image.stem}.json)")
            print(f"     prompt inside the PNG: {carried[0] if carried else '(none)'}")
        print(f"   input moved to {DEMO.relative_to(ROOT)}/processed/, logs in demo/logs/")
        return 0 if made else 1
    finally:
        for process in (daemon, standin):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
