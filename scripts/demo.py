"""``make demo``: the whole flow against the local stand-in of Sora, in well under a minute.

Starts the stand-in, writes a demo session for it, runs the real daemon (real Chromium) on a
demo home folder, drops ``examples/prompt.txt`` into its inbox the way a pipeline would, waits
until the input reaches ``processed/``, stops the daemon with SIGTERM, and shows the images.
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


def main() -> int:
    started = time.monotonic()
    standin = start("-m", "sora_standin", "--port", "0", "--delay", DELAY)
    daemon = None
    try:
        url = read_until(standin, "listening on", echo=False).split()[-1]
        print(f"1. the local stand-in of Sora runs at {url}")
        for folder in ("inbox", "processing"):
            shutil.rmtree(DEMO / folder, ignore_errors=True)
        DEMO.mkdir(exist_ok=True)
        session = DEMO / "session.json"
        subprocess.run(
            [sys.executable, "-m", "sora_standin", "make-session", "--base-url", url,
             "--out", str(session)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        print(f"2. a demo session for it is in {session.relative_to(ROOT)}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
        env.update(SORA_HOME=str(DEMO), SORA_BASE_URL=url, PYTHONUNBUFFERED="1")
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
            print(f"   {image.relative_to(ROOT)}  ({size}, sidecar {image.stem}.json)")
        print(f"   input moved to {DEMO.relative_to(ROOT)}/processed/, logs in demo/logs/")
        return 0 if made else 1
    finally:
        for process in (daemon, standin):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
