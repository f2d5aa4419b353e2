"""Reading prompts out of input files, refusing bad input with a reason a user can act on.

Kinds of input, by name (one reader module each):
- ``*.txt`` (``text_lines``): one prompt per non-blank line; lines starting with ``#`` are
  comments.
- ``theme_<user>.json`` (the ``chart`` plug-in): an AstroSource (or kerykeion) natal chart; one
  prompt built from it, images in ``images/<user>/``, and ``result_<user>.json`` after.
- other ``*.json`` (``json_job``): a job, ``{"prompt": ...}`` or ``{"prompts": [...]}`` with
  options.
- ``*.csv`` (``csv_rows``): a header row with a ``prompt`` column and optional option columns;
  one prompt per row, and a bad row fails alone.

A new kind is a module with a ``Reader`` and one line in ``BY_NAME`` or ``BY_SUFFIX``; a kind
that acts once its input's images are out (the chart) adds itself to ``AFTER_FINISHED``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from sora_watcher.inputs import chart
from sora_watcher.inputs.chart import THEME_NAME, read_theme
from sora_watcher.inputs.common import (
    InputError,
    Prompt,
    Reader,
    Rules,
    check_name,
    check_prompts,
    read_bytes,
)
from sora_watcher.inputs.csv_rows import read_csv
from sora_watcher.inputs.json_job import read_job
from sora_watcher.inputs.text_lines import prompts_from_text, read_text

__all__ = [
    "AFTER_FINISHED",
    "BY_NAME",
    "BY_SUFFIX",
    "InputError",
    "Prompt",
    "Reader",
    "Rules",
    "finished",
    "parse_prompts",
    "prompts_from_text",
    "read_prompts",
]

# Names a reader claims before the suffix is looked at: a chart is a .json, but not a job.
BY_NAME: dict[re.Pattern[str], Reader] = {THEME_NAME: read_theme}
BY_SUFFIX: dict[str, Reader] = {".txt": read_text, ".json": read_job, ".csv": read_csv}
# (input name, its first prompt, that prompt's last image, SORA_HOME): each does nothing
# for inputs that are not of its kind.
AFTER_FINISHED: tuple[Callable[[str, str, Path, Path], None], ...] = (chart.finished,)


def finished(input_name: str, prompt: str, image: Path, home: Path) -> None:
    """An input was processed: the plug-ins of its kind act on it."""
    for plug_in in AFTER_FINISHED:
        plug_in(input_name, prompt, image, home)


def reader_for(name: str) -> Reader:
    for pattern, reader in BY_NAME.items():
        if pattern.fullmatch(name):
            return reader
    suffix = Path(name).suffix.lower()
    if suffix not in BY_SUFFIX:
        *others, last = BY_SUFFIX
        known = f"{', '.join(others)} or {last}" if others else last
        raise InputError(f"unsupported input type {suffix or '(none)'!r}: use {known}")
    return BY_SUFFIX[suffix]


def read_prompts(path: Path, rules: Rules | None = None, name: str | None = None) -> list[Prompt]:
    """The prompts of an input; ``name`` is its name in the inbox, if it was renamed since."""
    rules = rules or Rules()
    name = name or path.name
    check_name(name)
    reader_for(name)  # an unknown kind is said before the file is read
    return parse_prompts(name, read_bytes(path, rules), rules)


def parse_prompts(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    """The prompts of an input's bytes (read from a file, or sent to the API) under its
    name, checked whole."""
    check_name(name)
    try:
        prompts = reader_for(name)(name, data, rules)
    except (ValueError, TypeError, RecursionError, csv.Error) as exc:
        # What the readers did not foresee: a nesting too deep, a field too large ...
        raise InputError(f"cannot read it: {type(exc).__name__}: {exc}") from None
    return check_prompts(prompts, rules)
