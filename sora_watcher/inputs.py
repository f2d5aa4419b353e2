"""Reading prompts out of input files, refusing bad input with a reason a user can act on."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sora_driver.backend import JobOptions

TEXT_SUFFIXES = {".txt"}


class InputError(Exception):
    """The input itself is wrong; retrying will not help. The message says what to fix."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1024 * 1024
    max_prompt_chars: int = 4000


@dataclass(frozen=True)
class Prompt:
    text: str
    line: int  # where it stands in its input, for messages
    options: JobOptions = field(default_factory=JobOptions)


def check_name(name: str) -> None:
    """Spaces, quotes and accents are fine; control characters and broken encodings are not,
    since they would corrupt log lines and the tools downstream."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the file name is not valid UTF-8: rename the file") from None
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InputError("the file name has a newline or control character: rename the file")


def read_bytes(path: Path, limits: Limits) -> bytes:
    if path.is_symlink():
        # Never followed: a link could point anywhere, in or out of the inbox.
        raise InputError("this is a symbolic link; put the file itself in the inbox")
    if path.is_dir():
        raise InputError("this is a folder, not a prompt file")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputError(
            f"the file is {size} bytes, over the limit of {limits.max_bytes} "
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


def prompts_from_text(text: str) -> list[Prompt]:
    """One prompt per non-blank line; lines starting with ``#`` are comments."""
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            prompts.append(Prompt(stripped, number))
    return prompts


def check_prompts(prompts: list[Prompt], limits: Limits) -> list[Prompt]:
    """Refuse the whole input before any credit is spent on it."""
    if not prompts:
        raise InputError(
            "no prompt in this file (empty, blank or only # comments): write one prompt per line"
        )
    for prompt in prompts:
        if len(prompt.text) > limits.max_prompt_chars:
            raise InputError(
                f"line {prompt.line}: the prompt has {len(prompt.text)} characters, over the "
                f"limit of {limits.max_prompt_chars} (SORA_MAX_PROMPT_CHARS): shorten it"
            )
    return prompts


def read_prompts(path: Path, limits: Limits | None = None) -> list[Prompt]:
    limits = limits or Limits()
    check_name(path.name)
    if path.suffix.lower() not in TEXT_SUFFIXES:
        accepted = ", ".join(sorted(TEXT_SUFFIXES))
        raise InputError(f"unsupported input type {path.suffix or '(none)'!r}: use {accepted}")
    return check_prompts(prompts_from_text(decode_text(read_bytes(path, limits))), limits)
