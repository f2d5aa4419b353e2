"""Reading prompts out of input files, refusing bad input with a reason a user can act on.

Kinds of input, by name:
- ``*.txt``: one prompt per non-blank line; lines starting with ``#`` are comments.
- ``theme_<user>.json``: an AstroSource (or kerykeion) natal chart; one prompt built from it,
  images in ``images/<user>/``.
- other ``*.json``: a job, ``{"prompt": ...}`` or ``{"prompts": [...]}`` with options.
- ``*.csv``: a header row with a ``prompt`` column and optional option columns; one prompt per
  row, and a bad row fails alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from sora_watcher.astro import ChartError, build_prompt
from sora_watcher.backends.base import ANY_BACKEND, Capabilities, JobOptions

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
THEME_NAME = re.compile(r"theme_(?P<user>.*)\.json")
OPTION_KEYS = ("aspect_ratio", "variants", "size", "quality", "background", "model", "name")
TEXT_OPTIONS = ("size", "quality", "background", "model")
JOB_KEYS = ("prompt", "prompts", *OPTION_KEYS)


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


# -- checks shared by every kind ---------------------------------------------------------------


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
    variants = fields.get("variants") or 1
    if isinstance(variants, str) and variants.strip().isdigit():
        variants = int(variants)
    if not isinstance(variants, int) or isinstance(variants, bool):
        allowed = ", ".join(map(str, capabilities.variants))
        raise InputError(f"variants {variants!r} is not one of {allowed}")
    texts = {key: fields.get(key) or None for key in TEXT_OPTIONS}
    for key, value in [("aspect_ratio", aspect), *texts.items()]:
        if value is not None and not isinstance(value, str):
            raise InputError(f"{key} {value!r} is not a text")
    options = JobOptions(aspect, variants, **texts)
    problem = capabilities.problem(options)
    if problem is not None:
        raise InputError(problem)
    name = fields.get("name") or None
    folder = None if name is None else safe_folder(name, "name")
    return options, folder


# -- the kinds ---------------------------------------------------------------------------------


def prompts_from_text(text: str) -> list[Prompt]:
    """One prompt per non-blank line; lines starting with ``#`` are comments."""
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            prompts.append(Prompt(stripped, number))
    return prompts


def read_text(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    return prompts_from_text(decode_text(data))


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InputError(f"invalid JSON at {where}: {exc.msg}") from None


def read_theme(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    match = THEME_NAME.fullmatch(name)
    assert match is not None
    user = safe_folder(match["user"], "the user name in theme_<user>.json")
    try:
        text = build_prompt(parse_json(data), user, rules.template, rules.max_prompt_chars)
    except ChartError as exc:
        raise InputError(str(exc)) from None
    if not text:
        raise InputError("the chart gave an empty prompt: check SORA_PROMPT_TEMPLATE")
    logger.info("{}: prompt built from the chart: {}", name, text)
    return [Prompt(text, 1, folder=user)]


def read_job(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    job = parse_json(data)
    if not isinstance(job, dict):
        raise InputError('a JSON job is an object: {"prompt": "..."} or {"prompts": [...]}')
    unknown = sorted(set(job) - set(JOB_KEYS))
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)}: allowed are {', '.join(JOB_KEYS)}")
    if ("prompt" in job) == ("prompts" in job):
        raise InputError('give either "prompt" (a text) or "prompts" (a list of texts)')
    texts = [job["prompt"]] if "prompt" in job else job["prompts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InputError('"prompts" must be a list of texts')
    options, folder = job_options(job, rules.capabilities)
    return [
        Prompt(" ".join(text.split()), number, options, folder)
        for number, text in enumerate(texts, start=1)
        if text.strip()
    ]


def read_csv(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    reader = csv.DictReader(io.StringIO(decode_text(data), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "prompt" not in columns:
        raise InputError("the first row must be a header with a 'prompt' column")
    unknown = sorted(set(columns) - {"prompt", *OPTION_KEYS})
    if unknown:
        allowed = ", ".join(("prompt", *OPTION_KEYS))
        raise InputError(f"unknown column(s) {', '.join(unknown)}: allowed are {allowed}")
    prompts = []
    for row in reader:
        fields = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(fields.values()):
            continue  # a blank row
        text, line = " ".join(fields.get("prompt", "").split()), reader.line_num
        try:
            if None in row:
                raise InputError("more cells than columns")
            options, folder = job_options(fields, rules.capabilities)
            problem = "empty prompt" if not text else too_long(text, rules)
            if problem:
                raise InputError(problem)
        except InputError as exc:
            prompts.append(Prompt(text, line, error=f"row at line {line}: {exc}"))
            continue
        prompts.append(Prompt(text, line, options, folder))
    return prompts


Reader = Callable[[str, bytes, Rules], list[Prompt]]


def reader_for(name: str) -> Reader:
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        return read_theme if THEME_NAME.fullmatch(name) else read_job
    readers: dict[str, Reader] = {".txt": read_text, ".csv": read_csv}
    if suffix not in readers:
        raise InputError(f"unsupported input type {suffix or '(none)'!r}: use .txt, .json or .csv")
    return readers[suffix]


def read_prompts(path: Path, rules: Rules | None = None, name: str | None = None) -> list[Prompt]:
    """The prompts of an input; ``name`` is its name in the inbox, if it was renamed since."""
    rules = rules or Rules()
    name = name or path.name
    check_name(name)
    reader = reader_for(name)
    data = read_bytes(path, rules)
    try:
        prompts = reader(name, data, rules)
    except (ValueError, TypeError, RecursionError, csv.Error) as exc:
        # What the readers did not foresee: a nesting too deep, a field too large ...
        raise InputError(f"cannot read it: {type(exc).__name__}: {exc}") from None
    return check_prompts(prompts, rules)


def theme_user(name: str) -> str | None:
    """The user of a ``theme_<user>.json`` input, if that is what it is."""
    match = THEME_NAME.fullmatch(name)
    return match["user"] if match else None
