"""What is sent, in words: the lead-in, the prompt as given, what the site has no control for
(the shape, two images), and the firmer request after an answer in text alone.

The words are also how a conversation is recognised again after a restart
(``is_request_for``), so both directions live here, side by side.
"""

from __future__ import annotations

from sora_watcher.backends.base import JobOptions

FIRMLY = "Please create this image now with the image tool, as an image, not a description."
PORTRAIT, LANDSCAPE = ("2:3", "9:16"), ("3:2", "16:9")


def request_text(prefix: str, prompt: str, options: JobOptions) -> str:
    """The lead-in, the prompt as given, and in words what the site has no control for."""
    wants = []
    if options.aspect_ratio in PORTRAIT:
        wants.append(f"portrait, {options.aspect_ratio}")
    elif options.aspect_ratio in LANDSCAPE:
        wants.append(f"landscape, {options.aspect_ratio}")
    if options.variants > 1:
        wants.append(f"{options.variants} images")
    text = f"{prefix} {prompt}".strip()
    return f"{text} ({'; '.join(wants)})" if wants else text


def is_request_for(text: str, prefix: str, prompt: str) -> bool:
    """Whether ``text`` is what ``request_text`` sends for this prompt, whatever the options."""
    base = f"{prefix} {prompt}".strip()
    return text == base or text.startswith(base + " (")


def firmer(first_request: str) -> str:
    """The second request after an answer in text alone (``classify`` knows it by FIRMLY)."""
    return f"{FIRMLY} {first_request}"
