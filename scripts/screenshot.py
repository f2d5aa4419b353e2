"""``python scripts/screenshot.py [docs/dashboard.png]``: the README's picture of the dashboard.

The daemon with the openai backend against the local stand-in of the Images API, a few jobs
submitted through the API (one of them refused by the stand-in's moderation, so that a failed
job shows with its Retry button), then the dashboard in Chromium once every job has ended.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stand-ins are test support, run from the checkout

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from sora_driver.browser import find_browser, launch  # noqa: E402
from standin_kit.process import DaemonProcess, StandInServer, daemon_env  # noqa: E402

JOBS = [
    {"prompt": "A lighthouse on a basalt cliff at dawn, volumetric fog", "aspect_ratio": "16:9"},
    {"prompt": "A watercolor map of an imaginary archipelago, soft pastel palette"},
    {"prompt": "A hummingbird drinking from a neon-blue flower, macro photography"},
    {"prompt": "A fox asleep under a paper lantern, ink and wash", "aspect_ratio": "2:3"},
    {"prompt": "A crowded night market in the rain [fault:moderation_blocked]"},
]


def wait_for_the_end(client: httpx.Client, ids: list[str]) -> None:
    deadline = time.monotonic() + 120
    while any(client.get(f"/v1/jobs/{i}").json()["state"] not in ("done", "failed") for i in ids):
        if time.monotonic() > deadline:
            raise SystemExit("screenshot: the jobs did not end within 2 minutes")
        time.sleep(0.2)  # a client polling its jobs, as any client would


def main() -> int:
    target = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")
    with (
        tempfile.TemporaryDirectory() as home,
        StandInServer("openai_standin", "--latency", "0.5") as standin,
    ):
        settings = {"SORA_HTTP": "127.0.0.1:0", "SORA_WORKER_ID": "studio"}
        key = "sk-standin-screenshot"  # the stand-in takes any key
        env = daemon_env(Path(home), standin.base_url, "openai", OPENAI_API_KEY=key, **settings)
        with DaemonProcess(Path(home), env, "run") as daemon:
            url = daemon.expect(r"HTTP API and dashboard on (http://\S+/)", timeout=120)[1]
            daemon.ready(timeout=120)
            with httpx.Client(base_url=url, timeout=30) as client:
                ids = [client.post("/v1/jobs", json=job).json()["id"] for job in JOBS]
                wait_for_the_end(client, ids)
            executable = find_browser(os.environ.get("SORA_BROWSER_PATH"))
            with sync_playwright() as pw:
                browser = launch(pw, executable, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(url)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.gallery img')]"
                    ".every(img => img.complete && img.naturalWidth > 0)"
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target), full_page=True)
                browser.close()
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
