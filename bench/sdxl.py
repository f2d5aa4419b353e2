"""8. Diffusers backend: what the daemon adds to a local SDXL generation, and the model's load.

No GPU and no SDXL weights here: everything runs on the tiny random SDXL model the tests build
(``tests/tiny_sdxl.py``), on CPU, at 64x64 with 4 steps, where a generation takes a few tens of
milliseconds and the daemon's own work shows. Three measurements:

1. per image, a plain script (the astrology app's own way: the pipeline loaded once, called
   with the prompt, the image saved) against the daemon (``once``, in this process, the model
   warm): one input of N lines; overhead = the difference per image;
2. the model's load: in a new process (the extra's import, then the load), again in the same
   process (a dropped model loaded anew), and warm (a new backend, as after a pause: the model
   kept);
3. the load of the real SDXL on a GPU: not measured here (no GPU, no weights).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import BenchError, Log, Result, Table, median, ms
from standin_kit.process import ROOT

NAME = "diffusers"
TITLE = "Diffusers backend (SDXL)"
SIZE, STEPS = 64, 4
GOAL_OVERHEAD = 0.100  # seconds per image the daemon may add (journal, PNG, sidecar, fsyncs)
PROMPT = "a red fox under the moon in scorpio, watercolour, line {}"

COLD_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import torch, diffusers, compel
from sora_watcher.backends import sdxl_pipeline
from sora_watcher.backends.sdxl_settings import read_settings
imported = time.perf_counter()
sdxl_pipeline.load(read_settings(json.loads(sys.argv[1])), __import__("pathlib").Path("."))
print(json.dumps({"import_s": imported - started, "load_s": time.perf_counter() - imported}))
"""


@contextmanager
def tiny_model() -> Iterator[Path]:
    from tests import tiny_sdxl

    folder = Path(tempfile.mkdtemp(prefix="sora-bench-sdxl-"))
    try:
        yield tiny_sdxl.save(folder / "tiny-sdxl")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def environ(model: Path) -> dict[str, str]:
    return {
        "SORA_DIFFUSERS_MODEL": str(model),
        "SORA_DIFFUSERS_DEVICE": "cpu",
        "SORA_DIFFUSERS_SIZE": f"{SIZE}x{SIZE}",
        "SORA_DIFFUSERS_STEPS": str(STEPS),
        "SORA_DIFFUSERS_LOAD_AT_START": "false",
    }


def plain_script(model: Path, count: int, out: Path) -> float:
    """Seconds per image: one pipeline, called per prompt, each image saved (no daemon)."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, use_karras_sigmas=True
    )
    pipe.set_progress_bar_config(disable=True)
    pipe("warm-up", width=SIZE, height=SIZE, num_inference_steps=STEPS)
    started = time.perf_counter()
    for line in range(count):
        generator = torch.Generator("cpu").manual_seed(line)
        image = pipe(
            PROMPT.format(line), width=SIZE, height=SIZE, num_inference_steps=STEPS,
            guidance_scale=7.0, generator=generator,
        ).images[0]  # fmt: skip
        image.save(out / f"plain_{line}.png")
    return (time.perf_counter() - started) / count


def daemon_run(model: Path, count: int, home: Path) -> tuple[float, list[float]]:
    """Seconds per image through the daemon (``once``, the model warm), and each image's
    generation time as its sidecar says."""
    from sora_watcher.backends import sdxl
    from sora_watcher.config import resolve
    from sora_watcher.daemon import Daemon, RunMode

    env = environ(model)
    flags = {"home": str(home), "backend": "diffusers", "settle_seconds": "0"}
    settings = resolve(flags, {})
    stop = threading.Event()
    sdxl.create(settings, lambda: env, stop).load()  # warm, as a daemon after its first image
    daemon = Daemon(
        settings, lambda: sdxl.create(settings, lambda: env, stop), stop,
        sdxl.capabilities(settings, env), RunMode.ONCE,
    )  # fmt: skip
    daemon.folders.ensure()
    lines = "".join(PROMPT.format(line) + "\n" for line in range(count))
    (daemon.folders.inbox / "prompts.txt").write_text(lines, encoding="utf-8")
    started = time.perf_counter()
    daemon.run()
    per_image = (time.perf_counter() - started) / count
    sidecars = [json.loads(p.read_text()) for p in (home / "images").glob("*.json")]
    if len(sidecars) != count:
        raise BenchError(f"the daemon made {len(sidecars)} images of {count}")
    return per_image, [float(s["timings_s"]["generate_s"]) for s in sidecars]


def cold_load(model: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT, json.dumps(environ(model))],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"the cold load failed: {done.stderr.strip()[-300:]}")
    return {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def loads(model: Path, home: Path, runs: int) -> dict[str, list[float]]:
    from sora_watcher.backends import sdxl
    from sora_watcher.config import resolve

    settings = resolve({"home": str(home), "backend": "diffusers"}, {})
    settings.logs.mkdir(parents=True, exist_ok=True)  # where the backend tells `status` its state
    env: Mapping[str, str] = environ(model)

    def new_backend_load() -> None:
        backend = sdxl.create(settings, lambda: env, threading.Event())
        backend.load()
        backend.close()

    def reload() -> None:
        sdxl.forget()
        new_backend_load()

    return {"reload": timed(reload, runs), "warm": timed(new_backend_load, runs)}


def run(quick: bool, log: Log) -> Result:
    count, runs = (3, 1) if quick else (20, 5)
    with tiny_model() as model:
        scratch = model.parent
        # Interleaved, the best of each: on a shared 2-core machine the load of others moves
        # a run by more than the daemon's own cost.
        plains, measured = [], []
        for run in range(runs if quick else 3):
            log(f"{NAME}: run {run + 1}, a plain script then the daemon, {count} images each")
            plains.append(plain_script(model, count, scratch))
            measured.append(daemon_run(model, count, scratch / f"home{run}"))
        plain = min(plains)
        daemon = min(per_image for per_image, _ in measured)
        generation = median([t for _, times in measured for t in times])
        log(f"{NAME}: loads")
        cold = cold_load(model)
        timings = loads(model, scratch / "loads", runs)
    overhead = daemon - plain
    met = "yes" if overhead < GOAL_OVERHEAD else "no"
    tables = [
        Table(
            ["way", "per image", "of which the generation", "overhead per image", "goal", "met"],
            [
                [
                    "plain script (pipeline loaded once, called, image saved)",
                    ms(plain),
                    "-",
                    "-",
                    "-",
                    "-",
                ],
                [
                    f"daemon (`once`, one input of {count} lines, model warm)",
                    ms(daemon),
                    ms(generation),
                    f"**{ms(overhead)}**",
                    f"< {ms(GOAL_OVERHEAD)}",
                    met,
                ],
            ],
            f"1. Per image, tiny SDXL on CPU, {SIZE}x{SIZE}, {STEPS} steps (best of 3 runs)",
        ),
        Table(
            ["load", "time"],
            [
                [
                    "cold: a new process, importing torch, diffusers, transformers, compel",
                    f"{cold['import_s']:.2f} s",
                ],
                [
                    "cold: then the model's load (pipeline, scheduler, Compel)",
                    f"{cold['load_s']:.2f} s",
                ],
                [
                    "again in the same process (the model dropped, its files cached)",
                    ms(median(timings["reload"])),
                ],
                [
                    "warm: a new backend with the same settings (after a pause)",
                    ms(median(timings["warm"])),
                ],
            ],
            "2. The model's load (tiny model; median of runs)",
        ),
    ]
    notes = [
        "No GPU on this machine, and no SDXL weights: the real model's load (about 7 GB in "
        "fp16) and generation time are not measured here; only what the daemon adds is.",
        "The daemon encodes each prompt with Compel (both encoders, no truncation, weighting), "
        "the plain script with the pipeline's own encoding (cut at 77 tokens). Profiled at "
        "36b07b9: Compel's encoding took about 85 ms of a short prompt on this machine, 75 ms "
        "of it in Compel's prompt parser (pyparsing, about 35 ms a call, once per encoder), "
        "whatever the model's size; the overhead was 135 ms per image, the goal missed. Since "
        "caef5ca a prompt with none of Compel's syntax skips the parser (read the same: checked "
        "against the parser on 300 fuzzed prompts, and by the embeddings, in the tests); a "
        "weighted prompt still pays it. What is left is the encoding windows, the journal, the "
        "PNG's text chunks, the staged write, the link into images/ and the sidecar, each with "
        "its fsync.",
        "Per image of the daemon: from `run()` to its end, over the number of images (start "
        "and stop of the daemon included); its generation: the sidecar's `timings_s` (median), "
        "from the model's call to its images as PNG. Each way runs 3 times, interleaved; the "
        "best run of each is compared: the machine is shared and the spread between runs is "
        "larger than the difference.",
    ]
    raw: dict[str, Any] = {"plain_s": plain, "daemon_s": daemon, "generation_s": generation,
                           "cold": cold, "loads": timings}  # fmt: skip
    result = Result(NAME, TITLE, f"overhead per image < {ms(GOAL_OVERHEAD)}", met, tables, notes)
    result.raw = raw
    result.headline = (
        f"daemon overhead {ms(overhead)} per image; warm load {ms(median(timings['warm']))}"
    )
    result.quick = quick
    return result
