"""Checks of a `POST /v1/images/generations` body, and what the answer says about it.

The rules are those of the public API reference for the GPT image models (see
/work/shared/openai-images-notes.md): a request the real API would refuse is refused here with
the same status, `param` and style of message, so the daemon's handling of it can be tested.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, invalid_value, model_not_found

DEFAULT_MODEL = "gpt-image-2"
MAX_PROMPT = 32000
# Known models and their `created` times (unix seconds) for `GET /v1/models/{id}`.
MODELS: dict[str, int] = {
    "gpt-image-2": 1776729600,
    "gpt-image-2-2026-04-21": 1776729600,
    "gpt-image-2.5-flare": 1788825600,
    "gpt-image-2.5-flare-2026-09-08": 1788825600,
    "gpt-image-2.5-sunburst": 1788825600,
    "gpt-image-2.5-sunburst-2026-09-08": 1788825600,
    "gpt-image-2.6-flare": 1793577600,
    "gpt-image-2.6-sunburst": 1793577600,
}
# Retired models: like any unknown name, they answer 404 model_not_found.
RETIRED = (
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "chatgpt-image-latest",
)
STANDARD_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("low", "medium", "high", "auto")
# The 2.5 models add two levels above `high` (the openai package's reference); 2.6 is assumed
# to keep them.
HIGHER_QUALITIES = ("xhigh", "max")
FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
MODERATIONS = ("low", "auto")
COMPLEXITIES = ("low", "medium", "high")
# Parameters the API knows but refuses for GPT image models (legacy DALL-E ones, previews).
UNSUPPORTED = ("response_format", "style", "frame_count", "frame_duration_ms", "svg")
ACCEPTED = (
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "user",
    "safety_identifier",
    "stream",
    "partial_images",
    "complexity",
)
# What an absent optional parameter stands for.
DEFAULTS: dict[str, str] = {
    "model": DEFAULT_MODEL,
    "size": "auto",
    "quality": "auto",
    "output_format": "png",
    "background": "auto",
    "moderation": "auto",
}
# Output tokens of one 1024x1024 image by quality (public pricing examples); they scale with
# the pixel count.
TOKENS_1024: dict[str, int] = {
    "low": 272,
    "medium": 1056,
    "high": 4160,
    "xhigh": 8320,
    "max": 16640,
}
_SIZE_RE = re.compile(r"(\d{1,5})x(\d{1,5})")


@dataclass(frozen=True)
class Generation:
    """A checked request, with the API's defaults applied and `auto` values resolved."""

    prompt: str
    model: str
    n: int
    width: int
    height: int
    quality: str
    output_format: str
    compression: int  # 0-100, only used for jpeg and webp
    background: str  # opaque or transparent

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def output_tokens(self) -> int:
        per_image = TOKENS_1024[self.quality] * self.width * self.height / (1024 * 1024)
        return round(per_image) * self.n

    def input_tokens(self) -> int:
        return max(1, math.ceil(len(self.prompt) / 4))  # about 4 characters a token


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _wrong_type(param: str, value: object, expected: str) -> ApiError:
    message = (
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead."
    )
    return ApiError(400, message, param=param, code="invalid_type")


def _string(body: dict[str, Any], param: str, default: str, choices: tuple[str, ...]) -> str:
    value = body.get(param)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _wrong_type(param, value, "a string")
    if choices and value not in choices:
        raise invalid_value(param, value, choices)
    return value


def _integer(body: dict[str, Any], param: str, default: int, low: int, high: int) -> int:
    value = body.get(param)
    if value is None:
        return default
    if type(value) is not int:  # bool is an int in Python, not in JSON
        raise _wrong_type(param, value, "an integer")
    if value < low:
        message = (
            f"Invalid '{param}': integer below minimum value. "
            f"Expected a value >= {low}, but got {value} instead."
        )
        raise ApiError(400, message, param=param, code="integer_below_min_value")
    if value > high:
        message = (
            f"Invalid '{param}': integer above maximum value. "
            f"Expected a value <= {high}, but got {value} instead."
        )
        raise ApiError(400, message, param=param, code="integer_above_max_value")
    return value


def _prompt(body: dict[str, Any]) -> str:
    if "prompt" not in body:
        raise ApiError(
            400,
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise _wrong_type("prompt", prompt, "a string")
    if not prompt:
        message = (
            "Invalid 'prompt': string too short. "
            "Expected a string with minimum length 1, but got an empty string instead."
        )
        raise ApiError(400, message, param="prompt", code="string_below_min_length")
    if len(prompt) > MAX_PROMPT:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{MAX_PROMPT}, but got a string with length {len(prompt)} instead."
        )
        raise ApiError(400, message, param="prompt", code="string_above_max_length")
    return prompt


def size_problem(width: int, height: int) -> str | None:
    """Why a custom WxH is refused, or None if the GPT image 2 models accept it."""
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        return "both sides must be multiples of 16"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be between 1:3 and 3:1"
    if max(width, height) > 3840 or min(width, height) > 2160:
        return "the maximum size is 3840x2160"
    return None


def _size(body: dict[str, Any]) -> tuple[int, int]:
    size = _string(body, "size", "auto", ())
    if size == "auto":
        return 1024, 1024
    match = _SIZE_RE.fullmatch(size)
    problem = size_problem(int(match[1]), int(match[2])) if match else "not WIDTHxHEIGHT"
    if match is None or problem is not None:
        standard = ", ".join(f"'{value}'" for value in STANDARD_SIZES)
        message = (
            f"Invalid value: '{size}'. Supported values are: {standard}, and WIDTHxHEIGHT with "
            "both sides multiples of 16, an aspect ratio between 1:3 and 3:1 and at most "
            f"3840x2160 ({problem})."
        )
        raise ApiError(400, message, param="size", code="invalid_value")
    return int(match[1]), int(match[2])


def qualities(model: str) -> tuple[str, ...]:
    higher = model.startswith(("gpt-image-2.5-", "gpt-image-2.6-"))
    return QUALITIES[:3] + HIGHER_QUALITIES + QUALITIES[3:] if higher else QUALITIES


def supported_values(param: str, model: str = DEFAULT_MODEL) -> tuple[str, ...]:
    """The values the API lists when it refuses `param` (empty when it has no list)."""
    lists = {
        "size": STANDARD_SIZES,
        "quality": qualities(model),
        "output_format": FORMATS,
        "background": BACKGROUNDS,
        "moderation": MODERATIONS,
        "complexity": COMPLEXITIES,
    }
    return lists.get(param, ())


def parse(body: dict[str, Any]) -> Generation:
    """The checked request; raises ApiError as the real API would refuse it."""
    for key in body:
        if key in UNSUPPORTED and body[key] is not None:
            message = f"{key} is not supported for this model."
            raise ApiError(400, message, param=key, code="unsupported_parameter")
        if key not in ACCEPTED and key not in UNSUPPORTED:
            raise ApiError(400, f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    prompt = _prompt(body)
    model = _string(body, "model", DEFAULT_MODEL, ())
    if model not in MODELS:
        raise model_not_found(model)
    n = _integer(body, "n", 1, 1, 10)
    width, height = _size(body)
    quality = _string(body, "quality", "auto", qualities(model))
    output_format = _string(body, "output_format", "png", FORMATS)
    compression = _integer(body, "output_compression", 100, 0, 100)
    if body.get("output_compression") is not None and output_format == "png":
        message = "output_compression is only supported for the 'jpeg' and 'webp' output formats."
        raise ApiError(400, message, param="output_compression", code="invalid_value")
    background = _string(body, "background", "auto", BACKGROUNDS)
    if background == "transparent" and output_format == "jpeg":
        message = "Transparent backgrounds need output_format 'png' or 'webp', not 'jpeg'."
        raise ApiError(400, message, param="background", code="invalid_value")
    _string(body, "moderation", "auto", MODERATIONS)
    _string(body, "complexity", "medium", COMPLEXITIES)
    _string(body, "user", "", ())
    _string(body, "safety_identifier", "", ())
    _integer(body, "partial_images", 0, 0, 3)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", stream, "a boolean")
    if stream:
        message = "Streaming is not supported by this stand-in: leave 'stream' unset or false."
        raise ApiError(400, message, param="stream", code="unsupported_value")
    return Generation(
        prompt=prompt,
        model=model,
        n=n,
        width=width,
        height=height,
        quality="medium" if quality == "auto" else quality,
        output_format=output_format,
        compression=compression,
        background="opaque" if background == "auto" else background,
    )
