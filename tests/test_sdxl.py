"""The diffusers backend (SDXL on this machine) on a tiny random model built by the tests.

No weights can be downloaded here: ``tests/tiny_sdxl.py`` builds an SDXL pipeline of a few
thousand parameters and saves it as a model folder, and everything below goes through the
backend's real loading and generation code on CPU, most of it through the real daemon.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from loguru import logger
from PIL import Image

torch = pytest.importorskip(
    "torch", reason="the local extra is not installed: pip install 'sora-watcher[local]'"
)
pytest.importorskip("diffusers", reason="the local extra is not installed")
pytest.importorskip("compel", reason="the local extra is not installed")

from sora_watcher import pngmeta  # noqa: E402
from sora_watcher.backends import sdxl  # noqa: E402
from sora_watcher.backends.base import JobOptions  # noqa: E402
from sora_watcher.backends.sdxl_errors import BlackImage, ModelMissing  # noqa: E402
from sora_watcher.config import resolve  # noqa: E402
from sora_watcher.daemon import Daemon, RunMode  # noqa: E402
from tests import tiny_sdxl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl.save(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    yield
    sdxl.forget()  # no test sees another's warm (or spoiled) model


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


def backend(home: Path, environ: Mapping[str, str]) -> sdxl.DiffusersBackend:
    settings = resolve({"home": str(home), "backend": "diffusers"}, {})
    return sdxl.create(settings, lambda: environ, threading.Event())


def pngs(home: Path) -> list[Path]:
    return sorted((home / "images").glob("*.png"))


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
        assert (sidecar["steps"], sidecar["model"]) == (2, str(model))
        parameters = pngmeta.read_texts(image.read_bytes())[pngmeta.PARAMETERS]
        assert parameters.splitlines()[-1].startswith(
            f"Steps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7.0, Seed: {sidecar['seed']}, "
            "Size: 64x64, Model: "
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
    assert sorted(by_seed) == [7, 8]
    assert by_seed[7][0] == by_seed[7][1]
    assert by_seed[7][0] != by_seed[8][0]


def test_a_prompt_of_300_tokens_is_encoded_whole(tmp_path: Path, model: Path) -> None:
    made = backend(tmp_path, env(model))
    try:
        loaded = made.load()
        words = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(300))
        assert len(loaded.base.tokenizer(words).input_ids) == 302  # one token a word
        embeddings = loaded.encoder(words, None)
        windows = -(-300 // 75)  # 75 tokens a window, between its start and end tokens
        assert embeddings.tokens == windows * 77 > 300
        assert embeddings.prompt.shape == embeddings.negative.shape
        assert embeddings.prompt.shape[-1] == 2 * tiny_sdxl.HIDDEN  # both encoders, side by side
        assert embeddings.pooled.shape == (1, tiny_sdxl.HIDDEN)  # the second's pooled one
        tail = embeddings.prompt[0, 3 * 77 :]
        assert not torch.equal(tail, loaded.encoder("", None).prompt[0, :77])  # words, not pad
    finally:
        made.close()


def test_the_refiner_and_the_x2_upscale_run(tmp_path: Path, model: Path) -> None:
    extra = {"SORA_DIFFUSERS_REFINER": str(model), "SORA_DIFFUSERS_UPSCALE": "x2",
             "SORA_DIFFUSERS_STEPS": "4"}  # fmt: skip
    made = backend(tmp_path, env(model, **extra))
    try:
        task = made.submit("a castle", JobOptions(variants=2, seed=11, negative_prompt="fog"))
        generation = made.collect(task, JobOptions())
    finally:
        made.close()
    assert [(i.width, i.height) for i in generation.images] == [(128, 128)] * 2
    assert [i.details["seed"] for i in generation.images] == [11, 12]
    details = generation.details
    assert (details["refiner"], details["upscale"], details["seeds"]) == (str(model), 2, [11, 12])


def test_a_stop_mid_generation_ends_within_2_seconds(tmp_path: Path, model: Path) -> None:
    stepping = threading.Event()
    sink = logger.add(
        lambda message: stepping.set(),
        level="DEBUG",
        filter=lambda record: "first step done" in record["message"],
    )
    stop = threading.Event()
    run = daemon(tmp_path, env(model, SORA_DIFFUSERS_STEPS="100000"), stop)
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
        logger.remove(sink)
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


def test_a_black_image_is_never_saved(tmp_path: Path, model: Path) -> None:
    made = backend(tmp_path, env(model))
    loaded = made.load()
    made.close()
    with torch.no_grad():  # the VAE overflowing, as SDXL's does in fp16
        loaded.base.vae.decoder.conv_out.bias.fill_(float("nan"))
    run = daemon(tmp_path, env(model))  # the same settings: the same, warm, spoiled model
    (run.folders.inbox / "prompt.txt").write_text("a night sky\n")
    run.run()
    assert pngs(tmp_path) == []
    assert (run.folders.failed / "prompt.txt").exists()
    [report] = run.folders.failed.glob("*.error.txt")
    assert BlackImage.__name__ in report.read_text()


def test_a_missing_folder_is_said_at_create(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="no such folder"):
        backend(tmp_path, env(tmp_path / "nothing"))


def test_the_new_keys_are_checked_and_refused_by_other_backends() -> None:
    from sora_watcher.backends import instant
    from sora_watcher.inputs import InputError, Rules, parse_prompts

    ours = Rules(capabilities=sdxl.CAPABILITIES)
    job = b'{"prompt": "a fox", "seed": 42, "steps": 20, "negative_prompt": "blur"}'
    [prompt] = parse_prompts("job.json", job, ours)
    assert (prompt.options.seed, prompt.options.steps) == (42, 20)
    assert prompt.options.negative_prompt == "blur"
    for bad, words in [
        (b'{"prompt": "a", "seed": "x"}', "seed 'x' is not a whole number"),
        (b'{"prompt": "a", "seed": -1}', "seed -1 is not between 0 and 4294967295"),
        (b'{"prompt": "a", "steps": 500}', "steps 500 is not between 1 and 150"),
        (b'{"prompt": "a", "negative_prompt": 3}', "negative_prompt 3 is not a text"),
    ]:
        with pytest.raises(InputError, match=words):
            parse_prompts("job.json", bad, ours)
    with pytest.raises(InputError, match=r"seed: this backend does not take it \(SORA_BACKEND\)"):
        parse_prompts("job.json", job, Rules(capabilities=instant.CAPABILITIES))
    rows = parse_prompts("rows.csv", b"prompt,seed,steps\na fox,7,12\na cat,x,\n", ours)
    assert (rows[0].options.seed, rows[0].options.steps, rows[0].error) == (7, 12, None)
    assert rows[1].error is not None and "seed 'x'" in rows[1].error  # that row fails alone
