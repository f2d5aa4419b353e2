"""The model on this machine: loading SDXL once, and running it for one batch.

Loading follows the settings (``sdxl_settings``): the base model, its scheduler (DPM++ 2M with
Karras sigmas by default), the device and precision, the VAE kept out of fp16 overflow (upcast
for decoding, or a fixed fp16 VAE in its place), model CPU offload for small GPUs, the refiner
(an img2img pipeline sharing the base's second text encoder and VAE; with offload on, its own
copies: a module has one set of offload hooks, and two pipelines placing the same module would
undo each other's) and the x2 pass (the base's own parts as an img2img pipeline, no second copy
in memory, moved by the base's offload hooks when offload is on).

Running is the ensemble of experts the library documents: the base denoises the first share of
the steps and hands its latents to the refiner for the rest. Every pass calls ``on_step`` after
each step, with the pass's name, which is how a stop is heard within a step (it raises
``Interrupted``), the x2 pass included. The images
come back as floats, so that a NaN is seen before anything is saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from sora_watcher.backends.sdxl_errors import is_out_of_memory, model_missing
from sora_watcher.backends.sdxl_prompts import Encoder
from sora_watcher.backends.sdxl_settings import SAMPLER_NAMES, DiffusersSettings, local_folder
from sora_watcher.errors import GenerationError

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BLACK = 2 / 255  # brightest pixel of an image that counts as black


@dataclass(frozen=True)
class Batch:
    """One generation: one prompt, ``count`` images, seeds ``seed``, ``seed + 1`` ...; the
    settings that change no weights (a change of them needs no new load)."""

    prompt: str
    negative: str | None
    width: int
    height: int
    count: int
    seed: int
    steps: int
    guidance: float
    refiner_switch: float = 0.8  # used only if a refiner is loaded
    upscale_strength: float | None = None  # the x2 pass's, None: no x2 pass for this batch


@dataclass
class Loaded:
    """The pipelines, warm; what they were made from; what the load cost. Only the settings
    that loading depends on count here (see ``sdxl_state.load_key``): the others come with each
    ``Batch``."""

    config: DiffusersSettings
    home: Path
    device: str
    dtype: str
    base: Any
    encoder: Encoder
    refiner: Any = None
    refiner_encoder: Encoder | None = None
    upscaler: Any = None
    seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    def weights_mb(self) -> float:
        """The size of the weights held, in MB (GPU memory, unless offloaded)."""
        parts = [self.base.unet, self.base.vae, self.base.text_encoder, self.base.text_encoder_2]
        if self.refiner is not None:
            parts.append(self.refiner.unet)
        size = sum(
            p.numel() * p.element_size() for part in parts if part for p in part.parameters()
        )
        return round(float(size) / 1e6, 1)

    @property
    def sampler(self) -> str:
        """The scheduler as A1111 names it; the folder's own by its class name."""
        if self.config.scheduler == "model":
            return type(self.base.scheduler).__name__
        return SAMPLER_NAMES[self.config.scheduler]


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    logger.warning("SORA_DIFFUSERS_DEVICE: no GPU here; on a CPU an SDXL image takes minutes")
    return "cpu"


def pick_dtype(wanted: str, device: str) -> str:
    if wanted != "auto":
        return wanted
    return "fp32" if device == "cpu" else "fp16"


def from_pretrained(kind: Any, what: str, name: str, home: Path, **kwargs: Any) -> Any:
    """``kind.from_pretrained`` for the model named by setting ``what``; a missing or broken
    folder is a ``ModelMissing`` naming it."""
    folder = local_folder(name, home)
    if folder is not None and not folder.is_dir():
        raise model_missing(what, name, folder, "no such folder")
    if folder is None and not in_hf_cache(name):
        # Said before the download starts, or the log would stay silent for many minutes.
        # It runs on the backend's worker thread after READY, while the daemon's loop goes on
        # feeding the watchdog (``finished`` returns every POLL_SECONDS), so busy_seconds need
        # not cover it; a prompt waiting for it just waits.
        logger.warning(
            "{} {}: not in the Hugging Face cache, downloading it now (SDXL: about 7 GB; "
            "this can take a long time, nothing is stuck)", what, name,
        )  # fmt: skip
    try:
        return kind.from_pretrained(str(folder or name), **kwargs)
    except GenerationError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise  # the caller's to classify: out of memory at load stops the queue
        reason = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        raise model_missing(what, name, folder, reason) from None


def in_hf_cache(name: str) -> bool:
    """Whether model id ``name`` is in the Hugging Face cache (a pipeline or a lone model)."""
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(name, file), str)
        for file in ("model_index.json", "config.json")
    )


def scheduler_for(name: str, current: Any) -> Any:
    """The scheduler ``name`` made from the model's own settings (timesteps, betas)."""
    import diffusers

    config = current.config
    made: dict[str, Callable[[], Any]] = {
        "dpmpp-2m-karras": lambda: diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        ),
        "dpmpp-2m": lambda: diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2
        ),
        "euler-a": lambda: diffusers.EulerAncestralDiscreteScheduler.from_config(config),
        "euler": lambda: diffusers.EulerDiscreteScheduler.from_config(config),
        "ddim": lambda: diffusers.DDIMScheduler.from_config(config),
        "model": lambda: current,
    }
    return made[name]()


def vae(config: DiffusersSettings, home: Path, dtype: torch.dtype) -> dict[str, Any]:
    """SORA_DIFFUSERS_VAE loaded, as a pipeline's ``vae`` argument (none: the model's own)."""
    import diffusers

    if config.vae is None:
        return {}
    kind = diffusers.AutoencoderKL
    return {"vae": from_pretrained(kind, "SORA_DIFFUSERS_VAE", config.vae, home, dtype=dtype)}


def upcast(pipe: Any, config: DiffusersSettings, dtype: torch.dtype) -> None:
    if config.vae is None and dtype is torch.float16:
        # SDXL's VAE overflows in fp16 (NaN, a black image): decode in fp32, as it asks.
        pipe.vae.register_to_config(force_upcast=True)


def offloaded(config: DiffusersSettings, device: str) -> bool:
    return config.offload and device != "cpu"


def place(pipe: Any, config: DiffusersSettings, device: str) -> None:
    pipe.set_progress_bar_config(disable=True)  # our own log lines say how it goes
    if offloaded(config, device):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)


def load(config: DiffusersSettings, home: Path) -> Loaded:
    """Every pipeline the settings ask for, on their device; logs the time it took."""
    import diffusers

    started = time.monotonic()
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    torch_dtype = DTYPES[dtype]
    base = from_pretrained(
        diffusers.StableDiffusionXLPipeline, "SORA_DIFFUSERS_MODEL", config.model, home,
        dtype=torch_dtype, **vae(config, home, torch_dtype),
    )  # fmt: skip
    upcast(base, config, torch_dtype)
    base.scheduler = scheduler_for(config.scheduler, base.scheduler)
    place(base, config, device)
    loaded = Loaded(config, home, device, dtype, base, Encoder(base))
    if config.refiner is not None:
        shared = (
            vae(config, home, torch_dtype)  # its own copies: see the module's docstring
            if offloaded(config, device)
            else {"text_encoder_2": base.text_encoder_2, "vae": base.vae}
        )
        refiner = from_pretrained(
            diffusers.StableDiffusionXLImg2ImgPipeline, "SORA_DIFFUSERS_REFINER", config.refiner,
            home, dtype=torch_dtype, **shared,
        )  # fmt: skip
        upcast(refiner, config, torch_dtype)
        refiner.scheduler = scheduler_for(config.scheduler, refiner.scheduler)
        place(refiner, config, device)
        loaded.refiner, loaded.refiner_encoder = refiner, Encoder(refiner)
    if config.upscale == "x2":
        # The base's own modules, already placed (and, with offload, hooked by the base: placing
        # them again would take the base's hooks away). The dtype is said, or from_pipe would
        # turn the shared modules, the base's too, to fp32.
        loaded.upscaler = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(
            base, dtype=torch_dtype
        )
        loaded.upscaler.set_progress_bar_config(disable=True)
    loaded.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "model {} loaded in {:.1f}s on {} ({})", config.model, loaded.seconds, device, dtype
    )
    return loaded


OnStep = Callable[[str], None]  # after each step of a pass ("base", "refiner", "x2")


def run(loaded: Loaded, batch: Batch, on_step: OnStep) -> list[np.ndarray]:
    """The batch's images as HxWx3 floats in [0, 1] (NaN if the VAE overflowed). ``on_step``
    raises ``Interrupted`` to stop."""
    generators = [torch.Generator("cpu").manual_seed(batch.seed + i) for i in range(batch.count)]
    common: dict[str, Any] = {
        "num_inference_steps": batch.steps,
        "guidance_scale": batch.guidance,
        "num_images_per_prompt": batch.count,
        "generator": generators,
    }
    embeddings = loaded.encoder(batch.prompt, batch.negative)
    size = {"width": batch.width, "height": batch.height}
    base = {**embeddings.arguments(), **size, **common, **steps_told(on_step, "base")}
    if loaded.refiner is None:
        images = loaded.base(**base, output_type="pt").images
    else:
        switch = batch.refiner_switch
        latents = loaded.base(**base, denoising_end=switch, output_type="latent").images
        assert loaded.refiner_encoder is not None
        refined = loaded.refiner_encoder(batch.prompt, batch.negative)
        images = loaded.refiner(
            **refined.arguments(), image=latents, denoising_start=switch, **common,
            **steps_told(on_step, "refiner"), output_type="pt",
        ).images  # fmt: skip
    if loaded.upscaler is not None and batch.upscale_strength is not None:
        arguments = {**embeddings.arguments(), **common, **steps_told(on_step, "x2")}
        images = upscale(loaded, images, arguments, batch.upscale_strength)
    return [image.permute(1, 2, 0).float().cpu().numpy() for image in images]


def steps_told(on_step: OnStep, name: str) -> dict[str, Any]:
    """The pipeline argument that calls ``on_step(name)`` after each step of that pass."""

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(name)
        return tensors

    return {"callback_on_step_end": callback}


def upscale(loaded: Loaded, images: Any, arguments: dict[str, Any], strength: float) -> Any:
    """Twice the size: a smooth resize, then a light img2img pass of the base for the detail
    (what A1111 calls the hires fix)."""
    larger = torch.nn.functional.interpolate(images, scale_factor=2, mode="bicubic").clamp(0, 1)
    try:
        return loaded.upscaler(
            **arguments, image=larger, strength=strength, output_type="pt"
        ).images
    finally:
        if offloaded(loaded.config, loaded.device):
            # The upscaler has no hooks list of its own: the base's puts the modules back.
            loaded.base.maybe_free_model_hooks()


def is_black(image: np.ndarray) -> bool:
    """NaN anywhere, or no pixel brighter than ``BLACK``: the VAE overflowed."""
    return bool(np.isnan(image).any() or float(image.max()) <= BLACK)


def memory_mb(device: str) -> float | None:
    """What the device holds now, in MB, where torch can tell."""
    if device.startswith("cuda"):
        return round(float(torch.cuda.memory_allocated(device)) / 1e6, 1)
    if device == "mps":
        return round(float(torch.mps.current_allocated_memory()) / 1e6, 1)
    return None
