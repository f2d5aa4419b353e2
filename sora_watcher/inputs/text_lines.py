"""``*.txt``: one prompt per non-blank line; lines starting with ``#`` are comments."""

from __future__ import annotations

from sora_watcher.inputs.common import Prompt, Rules, decode_text


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
