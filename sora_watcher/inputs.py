"""Reading prompts out of input files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sora_driver.backend import JobOptions

TEXT_SUFFIXES = {".txt"}


class InputError(Exception):
    """The input itself is wrong; retrying will not help. The message says what to fix."""


@dataclass(frozen=True)
class Prompt:
    text: str
    line: int  # where it stands in its input, for messages
    options: JobOptions = field(default_factory=JobOptions)


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError("this is a folder, not a prompt file") from None
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


def read_prompts(path: Path) -> list[Prompt]:
    if path.suffix.lower() not in TEXT_SUFFIXES:
        accepted = ", ".join(sorted(TEXT_SUFFIXES))
        raise InputError(f"unsupported input type {path.suffix or '(none)'!r}: use {accepted}")
    prompts = prompts_from_text(read_text(path))
    if not prompts:
        raise InputError(
            "no prompt in this file (empty, blank or only # comments): write one prompt per line"
        )
    return prompts
