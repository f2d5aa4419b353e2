"""What can go wrong with a model on this machine, as the daemon's three families.

- the extra not installed (no ``torch``/``diffusers``): nothing can start; the daemon waits for
  the packages (``once`` stops) and says the install command;
- a model folder missing or broken: the queue stops, naming it, until the folder changes;
- out of GPU memory while loading the model: the queue stops (no prompt is to blame), with
  the offload hint;
- out of GPU memory during a generation: tried again once (``max_retries=1``), with a hint
  (offload, a smaller size); out of memory on that try too, the input's fault;
- a NaN or black image (the SDXL VAE overflows in fp16): never saved; tried again with a new
  seed when the seed was drawn, the input's fault when the job gave it (the same seed gives
  the same NaN);
- anything else the libraries raise: a ``ValueError`` (the pipeline refused a value) is the
  input's fault, the rest tried again later.

This module imports neither ``torch`` nor ``diffusers``: it reads exceptions by their class
names and words, so that it can say the extra is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from sora_watcher.errors import (
    CredentialsMissing,
    GenerationError,
    InvalidRequest,
    ModelUnavailable,
    PermanentError,
    Resume,
    TransientError,
    Unreachable,
)

EXTRA = "pip install 'sora-watcher[local]'"
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "compel")
FOLDER_PROBE_SECONDS = 10.0  # a folder's look costs nothing


class ExtraMissing(CredentialsMissing):
    """The packages of the ``local`` extra are not installed. Like a missing key, nothing can
    start without them: ``once`` and ``generate`` stop, ``run`` waits until they import."""


class ModelMissing(ModelUnavailable):
    """The model (or refiner, or VAE) folder is not there, or not a diffusers model."""


class TooLargeToLoad(ModelUnavailable):
    """The GPU ran out of memory while loading the model: every prompt would fail the same
    way, so the queue stops rather than blaming them one by one."""


class OutOfMemory(TransientError):
    """The GPU ran out of memory during a generation: worth one more try (another program may
    have held the memory); out of memory again, the prompt is too large here."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"out of GPU memory; tried again once (SORA_DIFFUSERS_OFFLOAD=true or a smaller "
            f"size helps) ({detail})",
            max_retries=1,
        )
        self.cause = detail

    def given_up(self, attempts: int) -> GenerationError:
        times = "twice" if attempts > 1 else "once"  # once: SORA_MAX_RETRIES=0
        return TooLargeForMemory(
            f"out of GPU memory {times} for this prompt: ask a smaller size or fewer variants, "
            f"or set SORA_DIFFUSERS_OFFLOAD=true ({self.cause})"
        )


class TooLargeForMemory(PermanentError):
    """Out of memory on its retry too: the prompt's size or variants are too much here."""


class BlackImage(TransientError):
    """The image came out NaN or black (the VAE overflowed); it is not saved. Its seed was
    drawn: the next try draws another."""


class BlackImageForSeed(PermanentError):
    """The same, with a seed the job gave: the same seed would give the same NaN again."""


VAE_HINT = (
    "set SORA_DIFFUSERS_VAE to an fp16-fixed VAE (madebyollin/sdxl-vae-fp16-fix) or "
    "SORA_DIFFUSERS_DTYPE=fp32"
)
OFFLOAD_HINT = (
    "set SORA_DIFFUSERS_OFFLOAD=true (model CPU offload: SDXL then fits in 8 GB), or free the "
    "GPU's memory (another program may hold it)"
)


def missing_packages() -> list[str]:
    """The packages of the extra that cannot be imported (a failed import counts too)."""
    importlib.invalidate_caches()  # a pip install since the last look must be seen
    missing = []
    for name in PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # sys.modules[name] is None, or a broken install
            missing.append(name)
    return missing


def extra_missing(missing: list[str]) -> ExtraMissing:
    return ExtraMissing(
        f"SORA_BACKEND=diffusers needs {', '.join(missing)}, not installed here: "
        f"install the local extra with  {EXTRA}  (then start again)",
        Resume(probe=lambda: not missing_packages(), every=60.0, hint=f"waiting for {EXTRA}"),
    )


def _look(path: Path) -> tuple[bool, int, int]:
    """What changes when a folder is put in place or repaired."""
    index = path / "model_index.json"
    try:
        return True, path.stat().st_mtime_ns, index.stat().st_mtime_ns if index.exists() else 0
    except OSError:
        return False, 0, 0


def model_missing(what: str, name: str, path: Path | None, reason: str) -> ModelMissing:
    """``what`` (SORA_DIFFUSERS_MODEL ...) named ``name`` cannot be loaded; the queue resumes
    when the folder ``path`` changes (a model id: after SORA_PAUSE_SECONDS)."""
    hint = (
        f"the model {name} ({what}) is missing or broken: put a diffusers model folder there "
        f"(model_index.json, unet/, vae/, text_encoder/ ...) or set {what} to another; the "
        "queue resumes once it changes"
    )
    if path is None:
        return ModelMissing(f"{what} {name}: {reason}", Resume(hint=hint))
    seen = _look(path)
    resume = Resume(probe=lambda: _look(path) != seen, every=FOLDER_PROBE_SECONDS, hint=hint)
    return ModelMissing(f"{what} {path}: {reason}", resume)


def black_image(seed: int, given: bool) -> GenerationError:
    said = f"seed {seed}: the image came out black (NaN in the VAE): not saved"
    if given:
        again = "this seed gives it again: ask another seed"
        return BlackImageForSeed(f"{said}; {again}, or {VAE_HINT}")
    return BlackImage(f"{said}; tried again with a new seed (if it happens often: {VAE_HINT})")


def too_large_to_load(name: str, detail: str) -> TooLargeToLoad:
    """Out of memory while loading ``name``: the queue waits (SORA_PAUSE_SECONDS), then tries
    the load again."""
    hint = f"the model {name} does not fit in the GPU's memory: {OFFLOAD_HINT}"
    return TooLargeToLoad(f"out of GPU memory while loading {name} ({detail})", Resume(hint=hint))


def is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def classify(exc: BaseException) -> GenerationError:
    """A generation's error (not out-of-memory: see ``OutOfMemory``) as the daemon's: a
    ``ValueError`` is the pipeline refusing a value of the request (a size, the steps); the
    rest (the driver, an operation the device lacks, tensors on two devices ...) may go on
    another try."""
    if isinstance(exc, GenerationError):
        return exc
    detail = f"{type(exc).__name__}: {exc}".strip()[:500]
    if isinstance(exc, ValueError):
        return InvalidRequest(detail)
    return Unreachable(f"unexpected {detail}")
