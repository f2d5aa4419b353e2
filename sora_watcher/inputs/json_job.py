"""``*.json``: a job, ``{"prompt": ...}`` or ``{"prompts": [...]}`` with options."""

from __future__ import annotations

from sora_watcher.inputs.common import (
    OPTION_KEYS,
    InputError,
    Prompt,
    Rules,
    job_options,
    parse_json,
)

JOB_KEYS = ("prompt", "prompts", *OPTION_KEYS)


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
