"""``*.csv``: a header row with a ``prompt`` column and optional option columns; one prompt per
row, and a bad row fails alone."""

from __future__ import annotations

import csv
import io

from sora_watcher.inputs.common import (
    OPTION_KEYS,
    InputError,
    Prompt,
    Rules,
    decode_text,
    job_options,
    too_long,
)


def read_csv(name: str, data: bytes, rules: Rules) -> list[Prompt]:
    reader = csv.DictReader(io.StringIO(decode_text(data), newline=""))
    check_header([c.strip() for c in reader.fieldnames or []])
    prompts = []
    for row in reader:
        fields = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if any(fields.values()):  # a blank row is skipped
            prompts.append(row_prompt(fields, None in row, reader.line_num, rules))
    return prompts


def check_header(columns: list[str]) -> None:
    if "prompt" not in columns:
        raise InputError("the first row must be a header with a 'prompt' column")
    unknown = sorted(set(columns) - {"prompt", *OPTION_KEYS})
    if unknown:
        allowed = ", ".join(("prompt", *OPTION_KEYS))
        raise InputError(f"unknown column(s) {', '.join(unknown)}: allowed are {allowed}")


def row_prompt(fields: dict[str, str], extra_cells: bool, line: int, rules: Rules) -> Prompt:
    """The prompt of one row; a wrong row still gives one, which fails alone and says why."""
    text = " ".join(fields.get("prompt", "").split())
    try:
        if extra_cells:
            raise InputError("more cells than columns")
        options, folder = job_options(fields, rules.capabilities)
        problem = "empty prompt" if not text else too_long(text, rules)
        if problem:
            raise InputError(problem)
    except InputError as exc:
        return Prompt(text, line, error=f"row at line {line}: {exc}")
    return Prompt(text, line, options, folder)
