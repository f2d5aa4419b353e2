"""The diffusers backend's section of the configuration: ``SORA_BACKEND=diffusers``.

Stable Diffusion XL on this machine's own GPU. Declared once, in ``OPTIONS``: the model (a
local folder or a model id), the optional refiner, the steps, the guidance, the scheduler, the
device, the precision, offloading, and the x2 upscale. Like the openai section they have no
flags and are read from the environment (over ``.env``) at each start; an empty variable means
its default. This module imports neither ``torch`` nor ``diffusers``: the command line and
``.env.example`` list it on a machine without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

from sora_watcher.backends.base import SIZE
from sora_watcher.options import (
    ConfigError,
    Table,
    between,
    check_fields,
    choice,
    count,
    flag_word,
    or_default,
    resolve,
    text_or_none,
    verbatim,
)

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
MAX_SIDE = 4096
Scheduler = Literal["dpmpp-2m-karras", "dpmpp-2m", "euler-a", "euler", "ddim", "model"]
Dtype = Literal["auto", "fp16", "bf16", "fp32"]
Upscale = Literal["off", "x2"]
SCHEDULERS: tuple[Scheduler, ...] = get_args(Scheduler)
DTYPES: tuple[Dtype, ...] = get_args(Dtype)
UPSCALES: tuple[Upscale, ...] = get_args(Upscale)
# What A1111 calls them, for the "parameters" line of the PNG ("Sampler: ...").
SAMPLER_NAMES: dict[Scheduler, str] = {
    "dpmpp-2m-karras": "DPM++ 2M Karras",
    "dpmpp-2m": "DPM++ 2M",
    "euler-a": "Euler a",
    "euler": "Euler",
    "ddim": "DDIM",
    "model": "the model's own",
}


def _scheduler(name: str, text: str, _home: Path) -> Scheduler:
    return cast(Scheduler, choice(name, text, SCHEDULERS))


def _dtype(name: str, text: str, _home: Path) -> Dtype:
    return cast(Dtype, choice(name, text, DTYPES))


def _upscale(name: str, text: str, _home: Path) -> Upscale:
    return cast(Upscale, choice(name, text.lower(), UPSCALES))


def _device(name: str, text: str, _home: Path) -> str:
    device = text.strip().lower()
    kind = device.partition(":")[0]
    if kind not in ("auto", "cuda", "mps", "cpu") or (device != kind and kind != "cuda"):
        raise ConfigError(f"{name}={text!r}: expected auto, cuda, cuda:N, mps or cpu")
    return device


def check_size(size: str, model: str | None) -> str | None:
    """What is wrong with a "WxH" (already of that shape) for SDXL; None if nothing."""
    match = SIZE.fullmatch(size)
    assert match is not None  # Capabilities (or _size) checked the shape
    width, height = int(match["width"]), int(match["height"])
    if width % 8 or height % 8:
        return "both sides must be multiples of 8 (of 64 for the best results)"
    if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE):
        return f"each side between 64 and {MAX_SIDE}"
    return None


def _size(name: str, text: str, _home: Path) -> str | None:
    if not text:
        return None
    size = text.lower()
    if not SIZE.fullmatch(size):
        raise ConfigError(f"{name}={text!r}: expected WxH, e.g. 1024x1024")
    problem = check_size(size, None)
    if problem is not None:
        raise ConfigError(f"{name}={text!r}: {problem}")
    return size


def local_folder(name: str, home: Path) -> Path | None:
    """The folder a model setting stands for, or None for a model id ("owner/name", not a
    folder). Plain path logic: ``create`` asks it on the daemon's thread, before READY."""
    path = Path(name).expanduser()
    path = path if path.is_absolute() else home / path
    is_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    return None if is_id and not path.exists() else path


OPTIONS: Table = (
    or_default("model", "SORA_DIFFUSERS_MODEL", DEFAULT_MODEL, verbatim,
               "a local model folder, or a model id already in the Hugging Face cache"),
    or_default("refiner", "SORA_DIFFUSERS_REFINER", "", text_or_none,
               "the SDXL refiner (folder or id), run after the base as the ensemble of experts"),
    or_default("refiner_switch", "SORA_DIFFUSERS_REFINER_SWITCH", "0.8", between(0.05, 0.95),
               "the share of the steps the base makes before the refiner takes over"),
    or_default("size", "SORA_DIFFUSERS_SIZE", "", _size,
               "WxH of 1:1 prompts giving no size (other ratios: SDXL's sizes); empty: 1024x1024"),
    or_default("steps", "SORA_DIFFUSERS_STEPS", "30", count(1),
               "denoising steps (a job may say \"steps\")"),
    or_default("guidance", "SORA_DIFFUSERS_GUIDANCE", "7.0", between(0.0, 30.0),
               "how closely the image follows the prompt (CFG scale)"),
    or_default("scheduler", "SORA_DIFFUSERS_SCHEDULER", "dpmpp-2m-karras", _scheduler,
               "dpmpp-2m-karras, dpmpp-2m, euler-a, euler, ddim, or model (the folder's own)"),
    or_default("device", "SORA_DIFFUSERS_DEVICE", "auto", _device,
               "auto (CUDA, else Apple MPS, else CPU), cuda, cuda:N, mps or cpu"),
    or_default("dtype", "SORA_DIFFUSERS_DTYPE", "auto", _dtype,
               "auto (fp16 on a GPU, fp32 on CPU), fp16, bf16 or fp32"),
    or_default("vae", "SORA_DIFFUSERS_VAE", "", text_or_none,
               "another VAE (folder or id), e.g. an fp16-fixed one; empty: the model's, upcast"),
    or_default("offload", "SORA_DIFFUSERS_OFFLOAD", "false", flag_word,
               "model CPU offload, for GPUs with little memory (slower)"),
    or_default("upscale", "SORA_DIFFUSERS_UPSCALE", "off", _upscale,
               "off, or x2: each image made twice as large by a second, light pass of the base"),
    or_default("upscale_strength", "SORA_DIFFUSERS_UPSCALE_STRENGTH", "0.3", between(0.05, 1.0),
               "how much the x2 pass may change the image"),
    or_default("load_at_start", "SORA_DIFFUSERS_LOAD_AT_START", "true", flag_word,
               "load the model when the daemon starts (true) or at the first prompt (false)"),
)  # fmt: skip


@dataclass(frozen=True)
class DiffusersSettings:
    model: str
    refiner: str | None
    refiner_switch: float
    size: str | None
    steps: int
    guidance: float
    scheduler: Scheduler
    device: str  # "auto" until resolved where torch is at hand
    dtype: Dtype
    vae: str | None
    offload: bool
    upscale: Upscale
    upscale_strength: float
    load_at_start: bool

    @property
    def sampler(self) -> str:
        return SAMPLER_NAMES[self.scheduler]


check_fields(OPTIONS, DiffusersSettings)


def read_settings(environ: Mapping[str, str]) -> DiffusersSettings:
    """This backend's section (environment, then ``.env``, then the defaults), checked."""
    return DiffusersSettings(**resolve(OPTIONS, {}, environ, Path()))
