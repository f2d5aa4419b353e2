"""The natal chart plug-in: ``theme_<user>.json`` in, one prompt out, ``result_<user>.json`` after.

The input is an AstroSource (or kerykeion) natal chart; one English prompt is built from it
(``reading`` reads the two chart shapes, ``prompt`` fills the template), its images go to
``images/<user>/``, and once one is published, ``images/<user>/result_<user>.json`` tells
the astrology app which it is. The template (``SORA_PROMPT_TEMPLATE``) is read and checked by
``load_template``, at start-up, so a wrong one is reported before any chart comes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from loguru import logger

from sora_watcher import logs
from sora_watcher.atomic import write_atomically
from sora_watcher.inputs.chart.prompt import (
    DEFAULT_TEMPLATE,
    TEMPLATE_FIELDS,
    build_prompt,
    chart_fields,
    check_template,
)
from sora_watcher.inputs.chart.reading import ChartError
from sora_watcher.inputs.common import InputError, Prompt, Rules, parse_json, safe_folder
from sora_watcher.options import ConfigError

__all__ = [
    "DEFAULT_TEMPLATE",
    "TEMPLATE_FIELDS",
    "THEME_NAME",
    "ChartError",
    "build_prompt",
    "chart_fields",
    "check_template",
    "finished",
    "load_template",
    "read_theme",
    "theme_user",
]

THEME_NAME = re.compile(r"theme_(?P<user>.*)\.json")


def theme_user(name: str) -> str | None:
    """The user of a ``theme_<user>.json`` input, if that is what it is."""
    match = THEME_NAME.fullmatch(name)
    return match["user"] if match else None


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


def load_template(path: Path | None) -> str | None:
    """The text of the chart prompt template at ``path``, checked; ``None`` without a path.

    Raises ConfigError naming SORA_PROMPT_TEMPLATE if it cannot be read or names an unknown
    field.
    """
    if path is None:
        return None
    try:
        template = path.read_text(encoding="utf-8")
        check_template(template)
    except (OSError, UnicodeDecodeError, ChartError) as exc:
        raise ConfigError(f"SORA_PROMPT_TEMPLATE={path}: {exc}") from None
    return template


def finished(input_name: str, prompt: str, image: Path, home: Path) -> None:
    """After a chart's image is published: ``result_<user>.json`` beside it, for the astrology
    app, replaced on each run. Nothing for other inputs."""
    user = theme_user(input_name)
    if user is None:
        return
    result = {"user_id": user, "prompt": prompt, "image": str(image)}
    path = image.parent / f"result_{user}.json"
    write_atomically(path, json.dumps(result, ensure_ascii=False, indent=2).encode("utf-8"))
    logger.info("{}: result written to {}", user, logs.relative(path, home))
