"""What every kind of input shares: the prompt, the limits, and the checks that refuse bad input
with a reason a user can act on."""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sora_watcher.backends.base import ANY_BACKEND, MAX_SEED, MAX_STEPS, Capabilities, JobOptions

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
OPTION_KEYS = (
    "aspect_ratio", "variants", "size", "quality", "background", "model", "name",
    "seed", "negative_prompt", "steps",
)  # fmt: skip
TEXT_OPTIONS = ("size", "quality", "background", "model", "negative_prompt")
# Whole numbers an input may give (a CSV cell is a text of digits), with their range. The
# steps' range is the most any backend takes; the active one's (Capabilities) may be narrower.
NUMBER_OPTIONS = {"seed": (0, MAX_SEED), "steps": (1, MAX_STEPS)}


class InputError(Exception):
    """The input itself is wrong; retrying will not help. The message says what to fix."""


@dataclass(frozen=True)
class Rules:
    max_bytes: int = 1024 * 1024
    max_prompt_chars: int = 4000
    template: str | None = None  # the user's wording for chart prompts
    capabilities: Capabilities = ANY_BACKEND  # what the active backend can do


@dataclass(frozen=True)
class Prompt:
    text: str
    line: int  # where it stands in its input (a line, a row, a list position), for messages
    options: JobOptions = field(default_factory=JobOptions)
    folder: str | None = None  # a sub-folder of images/
    error: str | None = None  # a row that is wrong on its own (CSV): it fails, the others run


# A reader turns an input's name and bytes into its prompts, or raises InputError.
Reader = Callable[[str, bytes, Rules], list[Prompt]]


def check_name(name: str) -> None:
    """Spaces, quotes and accents are fine; control characters and broken encodings are not,
    since they would corrupt log lines and the tools downstream."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the file name is not valid UTF-8: rename the file") from None
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InputError("the file name has a newline or control character: rename the file")


def read_bytes(path: Path, rules: Rules) -> bytes:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        # Never followed: a link could point anywhere, in or out of the inbox.
        raise InputError("this is a symbolic link; put the file itself in the inbox")
    if stat.S_ISDIR(mode):
        raise InputError("this is a folder, not a prompt file")
    if not stat.S_ISREG(mode):  # a FIFO or a device would block the reader forever
        raise InputError("this is not a regular file")
    size = path.stat().st_size
    if size > rules.max_bytes:
        raise InputError(
            f"the file is {size} bytes, over the limit of {rules.max_bytes} "
            "(SORA_MAX_INPUT_BYTES): split it into smaller files"
        )
    return path.read_bytes()


def decode_text(data: bytes) -> str:
    if b"\x00" in data:
        raise InputError("this is a binary file, not UTF-8 text")
    try:
        return data.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start}): save the file as UTF-8") from None


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InputError(f"invalid JSON at {where}: {exc.msg}") from None


def too_long(text: str, rules: Rules) -> str | None:
    if len(text) <= rules.max_prompt_chars:
        return None
    return (
        f"the prompt has {len(text)} characters, over the limit of {rules.max_prompt_chars} "
        "(SORA_MAX_PROMPT_CHARS): shorten it"
    )


def check_prompts(prompts: list[Prompt], rules: Rules) -> list[Prompt]:
    """Refuse the whole input before any credit is spent on it."""
    if not prompts:
        raise InputError(
            "no prompt in this file (empty, blank or only # comments): write one prompt per line"
        )
    for prompt in prompts:
        problem = None if prompt.error else too_long(prompt.text, rules)
        if problem:
            raise InputError(f"line {prompt.line}: {problem}")
    return prompts


def safe_folder(name: object, what: str) -> str:
    """A name that is used as a folder: letters, digits, '-' and '_', never a path."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise InputError(
            f"{what} {name!r} is not allowed: use 1 to 64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def job_options(
    fields: Mapping[str, Any], capabilities: Capabilities
) -> tuple[JobOptions, str | None]:
    """Options of a JSON job or a CSV row, checked against what the active backend can do
    before anything is paid; an invalid value names the option and the values allowed."""
    aspect = fields.get("aspect_ratio") or "1:1"
    variants = as_int(fields.get("variants") or 1)
    if not isinstance(variants, int) or isinstance(variants, bool):
        allowed = ", ".join(map(str, capabilities.variants))
        raise InputError(f"variants {variants!r} is not one of {allowed}")
    texts = {key: fields.get(key) or None for key in TEXT_OPTIONS}
    for key, value in [("aspect_ratio", aspect), *texts.items()]:
        if value is not None and not isinstance(value, str):
            raise InputError(f"{key} {value!r} is not a text")
    seed, steps = (
        whole_number(key, fields.get(key), *NUMBER_OPTIONS[key]) for key in ("seed", "steps")
    )
    options = JobOptions(aspect, variants, **texts, seed=seed, steps=steps)
    problem = capabilities.problem(options)
    if problem is not None:
        raise InputError(problem)
    name = fields.get("name") or None
    folder = None if name is None else safe_folder(name, "name")
    return options, folder


INTEGER = re.compile(r"[+-]?[0-9]{1,20}")  # ASCII digits: str.isdigit() also takes "²"


def as_int(value: object) -> object:
    """A CSV cell's whole number ("42", " -1 ") as an int; any other value as it is."""
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        return int(value)
    return value


def whole_number(key: str, value: object, least: int, most: int) -> int | None:
    """An option's whole number (or a CSV cell of digits) within its range; None if absent.
    A negative one is said to be out of range, not "not a whole number"."""
    if value is None or value == "":
        return None
    value = as_int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{key} {value!r} is not a whole number")
    if not least <= value <= most:
        raise InputError(f"{key} {value!r} is not between {least} and {most}")
    return value
