"""The diffusers backend (SDXL on this machine) on a tiny random model built by the tests.

No weights can be downloaded here: ``tests/tiny_sdxl.py`` builds an SDXL pipeline of a few
thousand parameters and saves it as a model folder, and everything below goes through the
backend's real loading and generation code on CPU, most of it through the real daemon. The
warm model is kept from one test to the next (as a daemon keeps it from one input to the next),
except after a test that spoils it on purpose.
"""

from __future__ import annotations

import collections
import csv
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from PIL import Image

torch = pytest.importorskip(
    "torch", reason="the local extra is not installed: pip install 'sora-watcher[local]'"
)
pytest.importorskip("diffusers", reason="the local extra is not installed")
pytest.importorskip("compel", reason="the local extra is not installed")

from sora_watcher import pngmeta  # noqa: E402
from sora_watcher.backends import (  # noqa: E402
    sdxl,
    sdxl_errors,
    sdxl_pipeline,
    sdxl_settings,
    sdxl_state,
)
from sora_watcher.backends.base import JobOptions  # noqa: E402
from sora_watcher.config import Settings, resolve  # noqa: E402
from sora_watcher.daemon import Daemon, RunMode  # noqa: E402
from sora_watcher.errors import InvalidRequest, Unreachable  # noqa: E402
from sora_watcher.folders import LOCK_FILE, hold_lock  # noqa: E402
from sora_watcher.options import ConfigError  # noqa: E402
from tests import tiny_sdxl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl.save(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(scope="session")
def refiner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl.save_refiner(tmp_path_factory.mktemp("sdxl") / "tiny-refiner")


@pytest.fixture
def spoiled() -> Iterator[None]:
    """For a test that spoils the warm model: no other test sees it."""
    sdxl.forget()
    yield
    sdxl.forget()


@pytest.fixture
def said() -> Iterator[list[str]]:
    """The log's lines (INFO and up) while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    yield lines
    logger.remove(sink)


def env(model: Path, **extra: str) -> dict[str, str]:
    return {
        "SORA_DIFFUSERS_MODEL": str(model),
        "SORA_DIFFUSERS_DEVICE": "cpu",
        "SORA_DIFFUSERS_SIZE": "64x64",
        "SORA_DIFFUSERS_STEPS": "2",
        "SORA_DIFFUSERS_LOAD_AT_START": "false",
        **extra,
    }


def daemon(home: Path, environ: Mapping[str, str], stop: threading.Event | None = None) -> Daemon:
    """The real daemon, in this process (``once``), on the diffusers backend."""
    flags = {"home": str(home), "backend": "diffusers", "settle_seconds": "0",
             "max_retries": "1", "retry_delay": "0"}  # fmt: skip
    settings = resolve(flags, {})
    stop = stop or threading.Event()
    made = Daemon(
        settings,
        lambda: sdxl.create(settings, lambda: environ, stop),
        stop,
        sdxl.capabilities(settings, environ),
        RunMode.ONCE,
    )
    made.folders.ensure()
    return made


def settings_for(home: Path) -> Settings:
    return resolve({"home": str(home), "backend": "diffusers"}, {})


def backend(home: Path, environ: Mapping[str, str]) -> sdxl.DiffusersBackend:
    return sdxl.create(settings_for(home), lambda: environ, threading.Event())


def pngs(home: Path) -> list[Path]:
    return sorted((home / "images").glob("*.png"))


def report(run: Daemon, name: str) -> str:
    return (run.folders.failed / f"{name}.error.txt").read_text()


def loads(lines: list[str]) -> list[str]:
    return [line for line in lines if "loaded in" in line]


def test_three_lines_give_three_images_with_their_seeds(tmp_path: Path, model: Path) -> None:
    run = daemon(tmp_path, env(model))
    prompts = ["a red fox at dawn", "a blue whale", "the moon (in scorpio)1.3"]
    (run.folders.inbox / "prompt.txt").write_text("\n".join(prompts) + "\n")
    run.run()
    assert (run.folders.processed / "prompt.txt").exists()
    images = pngs(tmp_path)
    assert len(images) == 3
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in images]
    assert sorted(s["prompt"] for s in sidecars) == sorted(prompts)
    for image, sidecar in zip(images, sidecars, strict=True):
        assert Image.open(image).size == (64, 64)
        assert isinstance(sidecar["seed"], int)
        assert (sidecar["steps"], sidecar["model_path"]) == (2, str(model))
        parameters = pngmeta.read_texts(image.read_bytes())[pngmeta.PARAMETERS]
        assert parameters.splitlines()[-1].startswith(
            f"Steps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: {sidecar['seed']}, "
            "Size: 64x64, Model: tiny-sdxl, Backend: diffusers"
        )


def test_the_same_seed_gives_the_same_pixels(tmp_path: Path, model: Path) -> None:
    run = daemon(tmp_path, env(model))
    rows = [("a red fox", 7, "a lamp"), ("a red fox", 7, "a lamp"), ("a red fox", 8, "a lamp")]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["prompt", "seed", "negative_prompt"])
    writer.writerows(rows)
    (run.folders.inbox / "rows.csv").write_text(text.getvalue())
    run.run()
    by_seed: dict[int, list[bytes]] = {}
    for image in pngs(tmp_path):
        sidecar = json.loads(image.with_suffix(".json").read_text())
        by_seed.setdefault(sidecar["seed"], []).append(Image.open(image).tobytes())
        assert "Negative prompt: a lamp" in pngmeta.read_texts(image.read_bytes())["parameters"]
        assert sidecar["options"]["negative_prompt"] == "a lamp"  # once, with the job's options
        assert "negative_prompt" not in sidecar
    assert sorted(by_seed) == [7, 8]
    assert by_seed[7][0] == by_seed[7][1]
    assert by_seed[7][0] != by_seed[8][0]


def test_a_prompt_of_300_tokens_is_encoded_whole(tmp_path: Path, model: Path) -> None:
    """Both encoders side by side, the pooled embedding from the second (their widths
    differ), the whole prompt; a short one exactly as the pipeline itself encodes it."""
    made = backend(tmp_path, env(model))
    try:
        loaded = made.load()
        words = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(300))
        assert len(loaded.base.tokenizer(words).input_ids) == 302  # one token a word
        embeddings = loaded.encoder(words, None)
        windows = -(-300 // 75)  # 75 tokens a window, between its start and end tokens
        assert embeddings.tokens == windows * 77 > 300
        assert embeddings.prompt.shape == embeddings.negative.shape
        assert embeddings.prompt.shape[-1] == tiny_sdxl.HIDDEN + tiny_sdxl.HIDDEN_2
        assert embeddings.pooled.shape == (1, tiny_sdxl.POOLED)  # the second's projection
        tail = embeddings.prompt[0, 3 * 77 :]
        assert not torch.equal(tail, loaded.encoder("", None).prompt[0, :77])  # words, not pad
        for negative in (None, "fog"):
            ours = loaded.encoder("a red fox", negative)
            with torch.no_grad():
                theirs = loaded.base.encode_prompt(
                    "a red fox", device="cpu", num_images_per_prompt=1,
                    do_classifier_free_guidance=True, negative_prompt=negative,
                )  # fmt: skip
            mine = (ours.prompt, ours.negative, ours.pooled, ours.negative_pooled)
            for a, b in zip(mine, theirs, strict=True):
                assert torch.allclose(a, b, atol=1e-5)
    finally:
        made.close()


PLAIN = [
    "a red fox under the moon in scorpio, watercolour, line 3",
    "  two  spaces, \tand a tab\r\nand lines  ",
    "neon-blue, 3-4 o'clock; a.and b: x .blend y | z <lora:x:1> 1.2 word1.2 café 東京 ✨",
    "",
]
WEIGHTED = ["(a red fox)1.3 in fog", "a fox++ in fog-", "a fox, (moon:0.5)", 'a "quoted" fox',
            "a (b) c", "a -b", "a,b", "a \\(escaped\\)", "x\x0by"]  # fmt: skip


def fuzzed(count: int) -> Iterator[str]:
    pieces = [*"abcxyz ,.;:'!?/0123456789-_=*&^%$#@~`{}<>|\t\n", "é", "東", "word "]
    chance = random.Random(7)
    for _ in range(count):
        yield "".join(chance.choice(pieces) for _ in range(chance.randint(0, 30)))


def test_a_plain_prompt_skips_compels_parser_and_is_read_the_same() -> None:
    from compel.prompt_parser import PromptParser

    from sora_watcher.backends.sdxl_prompts import is_plain, parse

    parser = PromptParser()
    assert all(is_plain(text) for text in PLAIN) and not any(map(is_plain, WEIGHTED))
    plain = [text for text in [*PLAIN, *fuzzed(300)] if is_plain(text)]
    assert len(plain) > 100
    for text in plain:
        assert str(parse(text)) == str(parser.parse_conjunction(text)), repr(text)


def test_the_encoders_give_compels_own_embeddings(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain prompts through the shortcut, weighted ones through Compel's parser: the same
    tensors as Compel left to itself."""
    from compel import CompelForSDXL
    from compel.prompt_parser import PromptParser

    made = backend(tmp_path, env(model))
    try:
        loaded = made.load()
        own = CompelForSDXL(loaded.base)
        for text in [*PLAIN[:3], *WEIGHTED[:3]]:
            with torch.no_grad():
                theirs = own(text, negative_prompt="fog")
            ours = loaded.encoder(text, "fog")
            assert torch.equal(ours.prompt, theirs.embeds[:1]), text
            assert torch.equal(ours.pooled, theirs.pooled_embeds[:1]), text
        monkeypatch.setattr(PromptParser, "parse_conjunction", lambda *_: pytest.fail("parsed"))
        loaded.encoder(PLAIN[0], "fog")  # the shortcut taken: the parser never runs
    finally:
        made.close()


def test_the_refiner_and_the_x2_upscale_run(tmp_path: Path, model: Path, refiner: Path) -> None:
    extra = {"SORA_DIFFUSERS_REFINER": str(refiner), "SORA_DIFFUSERS_UPSCALE": "x2",
             "SORA_DIFFUSERS_STEPS": "4"}  # fmt: skip
    made = backend(tmp_path, env(model, **extra))
    try:
        task = made.submit("a castle", JobOptions(variants=2, seed=11, negative_prompt="fog"))
        generation = made.collect(task, JobOptions())
        passes: collections.Counter[str] = collections.Counter()
        batch = sdxl_pipeline.Batch("a castle", None, 64, 64, 1, 3, 4, 7.0, 0.8, 0.3)
        sdxl_pipeline.run(made.load(), batch, lambda name: passes.update([name]))
    finally:
        made.close()
    assert [(i.width, i.height) for i in generation.images] == [(128, 128)] * 2
    assert [i.details["seed"] for i in generation.images] == [11, 12]
    details = generation.details
    assert (details["refiner"], details["refiner_path"]) == ("tiny-refiner", str(refiner))
    assert (details["upscale"], details["seeds"]) == (2, [11, 12])
    assert (details["upscale_steps"], details["upscale_strength"]) == (4, 0.3)
    # the base makes the first share of the 4 steps, the refiner the rest; the x2 pass 30 %
    assert passes["base"] > 0 and passes["refiner"] > 0
    assert passes["base"] + passes["refiner"] == 4
    assert passes["x2"] == 1


def test_a_stop_mid_generation_ends_within_2_seconds(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stepping = threading.Event()
    on_step = sdxl.DiffusersBackend._on_step

    def stepped(made: sdxl.DiffusersBackend, name: str) -> None:
        stepping.set()
        on_step(made, name)

    monkeypatch.setattr(sdxl.DiffusersBackend, "_on_step", stepped)
    stop = threading.Event()
    run = daemon(tmp_path, env(model, SORA_DIFFUSERS_STEPS="5000"), stop)
    (run.folders.inbox / "prompt.txt").write_text("a very long generation\n")
    worker = threading.Thread(target=run.run)
    try:
        worker.start()
        assert stepping.wait(60), "the generation never started"
        stop.set()
        asked = time.monotonic()
        worker.join(10)
        assert not worker.is_alive()
        assert time.monotonic() - asked < 2.0
    finally:
        stop.set()
    assert pngs(tmp_path) == []
    assert not list(run.folders.failed.iterdir())  # stopped, not failed: it is made next time


def test_a_missing_model_folder_stops_the_queue_and_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "sdxl-base"
    said: list[str] = []
    sink = logger.add(lambda message: said.append(str(message)), level="ERROR")
    try:
        run = daemon(tmp_path, env(missing))
        (run.folders.inbox / "prompt.txt").write_text("a fox\n")
        run.run()
    finally:
        logger.remove(sink)
    assert run.unfinished == 1
    assert not list(run.folders.failed.iterdir())  # the input is not blamed
    paused = [line for line in said if "queue paused: ModelMissing" in line]
    assert paused and str(missing) in paused[0]


def test_create_imports_no_torch_before_ready(tmp_path: Path, model: Path) -> None:
    """``create`` runs on the daemon's thread before READY (and after each pause): torch's
    import (seconds) waits for the worker thread's load."""
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from sora_watcher.backends import sdxl\n"
        "from sora_watcher.config import resolve\n"
        "settings = resolve({'home': sys.argv[1], 'backend': 'diffusers'}, {})\n"
        "environ = {'SORA_DIFFUSERS_MODEL': sys.argv[2], 'SORA_DIFFUSERS_LOAD_AT_START': 'false'}\n"
        "sdxl.create(settings, lambda: environ, threading.Event()).close()\n"
        "print(sorted({'torch', 'numpy', 'diffusers'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(model)], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_settings_are_refused_naming_the_variable() -> None:
    for variable, text, words in [
        ("SORA_DIFFUSERS_SIZE", "0512x0512", "expected WxH"),
        ("SORA_DIFFUSERS_SIZE", "512x5120000", "expected WxH"),
        ("SORA_DIFFUSERS_SIZE", "\u0665\u0661\u0662x512", "expected WxH"),  # Arabic-Indic digits
        ("SORA_DIFFUSERS_SIZE", "8192x512", "each side between 64 and 4096"),
        ("SORA_DIFFUSERS_SIZE", "516x512", "both sides must be multiples of 8"),
        ("SORA_DIFFUSERS_GUIDANCE", "nan", "expected a finite float"),
        ("SORA_DIFFUSERS_GUIDANCE", "31", "must be at most 30"),
        ("SORA_DIFFUSERS_REFINER_SWITCH", "inf", "expected a finite float"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"{variable}={text!r}: {words}")):
            sdxl_settings.read_settings({variable: text})
    assert sdxl_settings.read_settings({"SORA_DIFFUSERS_SIZE": "768X512"}).size == "768x512"
    with pytest.raises(ConfigError, match="SORA_TIMEOUT='nan': expected a finite float"):
        resolve({"home": "/tmp", "timeout": "nan"}, {})


def test_a_libraries_error_is_the_inputs_fault_only_for_a_value_refused() -> None:
    refused = sdxl_errors.classify(ValueError("height must be divisible by 8"))
    assert isinstance(refused, InvalidRequest) and "divisible by 8" in refused.detail
    for other in (RuntimeError("the sampler jumps"), RuntimeError("CUDA error"), OSError("x")):
        again = sdxl_errors.classify(other)
        assert isinstance(again, Unreachable) and again.detail.startswith("unexpected ")


def test_without_the_extra_the_install_command_is_said(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['diffusers'] = None\n"  # as if it were not installed
        "from sora_watcher.cli import cli\n"
        "sys.exit(cli('once'))\n"
    )
    environ = {**os.environ, "SORA_HOME": str(tmp_path), "SORA_BACKEND": "diffusers",
               "SORA_ENV_FILE": str(tmp_path / ".env")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "diffusers" in done.stderr
    assert "pip install 'sora-watcher[local]'" in done.stderr


def test_a_black_image_is_never_saved(tmp_path: Path, model: Path, spoiled: None) -> None:
    """A drawn seed: tried again (with another seed); a job's seed: the input's fault at once,
    with what to do."""
    loaded = backend(tmp_path, env(model)).load()
    with torch.no_grad():  # the VAE overflowing, as SDXL's does in fp16
        loaded.base.vae.decoder.conv_out.bias.fill_(float("nan"))
    run = daemon(tmp_path, env(model))  # the same settings: the same, warm, spoiled model
    (run.folders.inbox / "drawn.txt").write_text("a night sky\n")
    (run.folders.inbox / "given.json").write_text('{"prompt": "a night sky", "seed": 5}')
    run.run()
    assert pngs(tmp_path) == []
    drawn, given = report(run, "drawn.txt"), report(run, "given.json")
    assert "BlackImage" in drawn and "tried again with a new seed" in drawn
    assert "BlackImageForSeed" in given and "ask another seed" in given
    assert "SORA_DIFFUSERS_VAE" in given


def test_out_of_memory_is_tried_once_then_the_inputs_fault(
    tmp_path: Path, model: Path, spoiled: None
) -> None:
    def out_of_memory(*args: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    loaded = backend(tmp_path, env(model)).load()
    loaded.base.unet.register_forward_pre_hook(out_of_memory)
    run = daemon(tmp_path, env(model))
    (run.folders.inbox / "big.txt").write_text("a huge cathedral\n")
    run.run()
    text = report(run, "big.txt")
    assert "TooLargeForMemory" in text and "out of GPU memory twice" in text


def test_the_same_prompt_on_two_lines_gets_its_retry_after_out_of_memory_on_each(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try of each line runs out of memory, its retry does not: both are made (the
    one retry is the line's own, not the prompt's for the life of the process)."""
    run_batch, calls = sdxl_pipeline.run, itertools.count(1)

    def every_other_out_of_memory(*args: Any) -> Any:
        if next(calls) % 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run_batch(*args)

    monkeypatch.setattr(sdxl_pipeline, "run", every_other_out_of_memory)
    run = daemon(tmp_path, env(model))
    (run.folders.inbox / "twice.txt").write_text("a huge cathedral\na huge cathedral\n")
    run.run()
    assert len(pngs(tmp_path)) == 2 and not list(run.folders.failed.iterdir())


def test_out_of_memory_while_loading_pauses_the_queue(
    tmp_path: Path, model: Path, said: list[str], spoiled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_large(*args: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(sdxl_pipeline, "place", too_large)
    run = daemon(tmp_path, env(model))
    (run.folders.inbox / "prompt.txt").write_text("a fox\n")
    run.run()
    assert run.unfinished == 1 and not list(run.folders.failed.iterdir())  # no input blamed
    assert any("queue paused: TooLargeToLoad" in line for line in said)
    assert any("SORA_DIFFUSERS_OFFLOAD=true" in line for line in said)


def test_a_broken_model_folder_pauses_the_queue_and_names_it(
    tmp_path: Path, said: list[str]
) -> None:
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "model_index.json").write_text("{ this is not json")
    run = daemon(tmp_path, env(broken))
    (run.folders.inbox / "prompt.txt").write_text("a fox\n")
    run.run()
    assert run.unfinished == 1 and not list(run.folders.failed.iterdir())
    paused = [line for line in said if "queue paused: ModelMissing" in line]
    assert paused and str(broken) in paused[0]


def test_the_model_stays_warm_across_inputs_and_settings_that_need_no_load(
    tmp_path: Path, model: Path, said: list[str]
) -> None:
    sdxl.forget()
    run = daemon(tmp_path, env(model))
    for name in ("one.txt", "two.txt"):
        (run.folders.inbox / name).write_text("a fox\n")
    run.run()
    assert len(pngs(tmp_path)) == 2
    assert len(loads(said)) == 1  # one load for both inputs
    warm = backend(tmp_path, env(model)).load()
    other = backend(tmp_path, env(model, SORA_DIFFUSERS_STEPS="3", SORA_DIFFUSERS_GUIDANCE="5"))
    assert other.load() is warm and len(loads(said)) == 1  # steps and guidance: no new load
    other.close()


def test_status_says_whether_the_model_is_loaded(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, environ = settings_for(tmp_path), env(model)
    settings.logs.mkdir(parents=True)  # as the command line's log set-up makes it

    def line() -> str:
        lines, healthy = sdxl.status(settings, environ, offline=True)
        assert healthy
        return lines[-1]

    assert "the model is not loaded" in line()
    lock = hold_lock(settings.processing / settings.worker_id / LOCK_FILE)  # a daemon running
    try:
        made = backend(tmp_path, environ)
        made.load()
        assert line().startswith("  loaded on cpu (fp32)") and str(model) in line()
        made.close()
        assert "the model is not loaded" in line()  # the daemon stopped
        sdxl_state.remember(sdxl_state.state_file(settings), made.load())
    finally:
        os.close(lock)
    assert line().startswith("  last loaded on cpu")  # left by a daemon that died
    assert line().endswith("(the daemon is not running)")
    monkeypatch.setitem(sys.modules, "compel", None)  # as if it were not installed
    lines, healthy = sdxl.status(settings, environ, offline=True)
    assert not healthy and "not installed: compel" in lines[-1]


def test_sizes_follow_the_aspect_ratio_and_the_1_to_1_default() -> None:
    assert sdxl.size_of(JobOptions(aspect_ratio="16:9"), None) == (1344, 768)
    assert sdxl.size_of(JobOptions(aspect_ratio="16:9"), "512x512") == (1344, 768)
    assert sdxl.size_of(JobOptions(), "512x512") == (512, 512)
    assert sdxl.size_of(JobOptions(), None) == (1024, 1024)
    assert sdxl.size_of(JobOptions(aspect_ratio="2:3", size="640x960"), "512x512") == (640, 960)
    assert sdxl.upscaled(1344, 768) and not sdxl.upscaled(1536, 1536)
