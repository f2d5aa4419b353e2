"""The openai backend's section of the configuration: ``SORA_BACKEND=openai``.

Declared once, in ``OPTIONS``: the package's own ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, and ours, ``SORA_OPENAI_MODEL``,
``SORA_OPENAI_QUALITY``, ``SORA_OPENAI_MODERATION``, ``SORA_OPENAI_TIMEOUT``. They have no
flags: they are read from the environment (over ``.env``) at each start, so that a key written
into ``.env`` later is seen. An empty variable means its default. This module does not import
the ``openai`` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from sora_watcher.options import (
    Table,
    check_fields,
    choice,
    or_default,
    resolve,
    seconds,
    text_or_none,
    verbatim,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
Quality = Literal["auto", "low", "medium", "high", "xhigh", "max"]
Moderation = Literal["auto", "low"]
Background = Literal["auto", "opaque", "transparent"]
QUALITIES: tuple[Quality, ...] = ("auto", "low", "medium", "high")
NEWER_QUALITIES: tuple[Quality, ...] = ("xhigh", "max")  # gpt-image-2.5 and 2.6's higher levels
MODERATIONS: tuple[Moderation, ...] = get_args(Moderation)
BACKGROUNDS: tuple[Background, ...] = get_args(Background)


def qualities(model: str) -> tuple[Quality, ...]:
    newer = model.startswith(("gpt-image-2.5", "gpt-image-2.6"))
    return QUALITIES + NEWER_QUALITIES if newer else QUALITIES


def _key(_name: str, text: str, _home: Path) -> str:
    return text.strip()  # a key pasted with a newline or a space still works


def _moderation(name: str, text: str, _home: Path) -> Moderation:
    return cast(Moderation, choice(name, text, MODERATIONS))


QUALITY = or_default(
    "quality", "SORA_OPENAI_QUALITY", "auto", verbatim,
    "auto, low, medium or high (xhigh and max on the 2.5 and 2.6 models)",
)  # fmt: skip
OPTIONS: Table = (
    or_default("api_key", "OPENAI_API_KEY", "", _key, "the API key: a secret, never logged"),
    or_default("base_url", "OPENAI_BASE_URL", DEFAULT_BASE_URL, verbatim,
               "another endpoint of the same shape (Azure OpenAI, a proxy, the stand-in)"),
    or_default("organization", "OPENAI_ORG_ID", "", text_or_none, "the organization billed"),
    or_default("project", "OPENAI_PROJECT_ID", "", text_or_none, "the project billed"),
    or_default("model", "SORA_OPENAI_MODEL", "gpt-image-2", verbatim,
               "the model; a job may name its own"),
    QUALITY,
    or_default("moderation", "SORA_OPENAI_MODERATION", "auto", _moderation,
               "the API's moderation level: auto or low"),
    or_default("timeout", "SORA_OPENAI_TIMEOUT", "300", seconds(1),
               "seconds one call may take before it counts as timed out"),
)  # fmt: skip


@dataclass(frozen=True)
class OpenAISettings:
    api_key: str = field(repr=False)
    base_url: str
    organization: str | None
    project: str | None
    model: str
    quality: Quality  # one of qualities(model)
    moderation: Moderation
    timeout: float


check_fields(OPTIONS, OpenAISettings)


def read_settings(environ: Mapping[str, str]) -> OpenAISettings:
    """This backend's section (environment, then ``.env``, then the defaults), checked with
    the same helpers and words as the common settings."""
    values = resolve(OPTIONS, {}, environ, Path())
    values["quality"] = choice(QUALITY.env, values["quality"], qualities(values["model"]))
    return OpenAISettings(**values)
