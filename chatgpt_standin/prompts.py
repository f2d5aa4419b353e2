"""What the stand-in's "model" reads in a user's words: is it an image request, which shape,
how many images, and a title for the conversation."""

from __future__ import annotations

import re

from . import images

PICTURE_HINT = "picture_v2"  # metadata.system_hints of a send made with "Create image"
MAX_IMAGES = 4
_VERB = re.compile(
    r"\b(generate|create|make|draw|paint|render|produce|design|illustrate|imagine)\b", re.I
)
_NOUN = re.compile(
    r"\b(image|images|picture|pictures|illustration|drawing|photo|photos|artwork|poster|logo)\b",
    re.I,
)
_PORTRAIT = re.compile(r"\b(portrait|vertical)\b|(?<![\d:])(9:16|2:3)(?![\d:])", re.I)
_LANDSCAPE = re.compile(r"\b(landscape|horizontal)\b|(?<![\d:])(16:9|3:2)(?![\d:])", re.I)
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4}
_COUNT = re.compile(
    r"\b(\d+|one|two|three|four)\s+(?:\w+\s+)?(images|pictures|variations|versions)\b", re.I
)
# Leading words that say "make an image" rather than what the image shows.
_PREAMBLE = re.compile(
    r"^\s*(please\s+)?((generate|create|make|draw|paint|render)\s+)?"
    r"((an?|one|two|three|four|\d+)\s+)?((images|image|pictures|picture)\s*)?(of|:)?\s*",
    re.I,
)


def asks_for_image(text: str, hints: list[str]) -> bool:
    return PICTURE_HINT in hints or bool(_VERB.search(text) and _NOUN.search(text))


def image_size(text: str) -> tuple[int, int]:
    """1024x1536 if the words ask for a portrait, 1536x1024 for a landscape, else square."""
    if _PORTRAIT.search(text):
        return images.PORTRAIT
    if _LANDSCAPE.search(text):
        return images.LANDSCAPE
    return images.SQUARE


def image_count(text: str) -> int:
    match = _COUNT.search(text)
    if match is None:
        return 1
    word = match[1].lower()
    count = _NUMBERS[word] if word in _NUMBERS else int(word)
    return min(max(count, 1), MAX_IMAGES)


def subject(text: str) -> str:
    """What the image shows, without "Generate an image of" in front."""
    rest = _PREAMBLE.sub("", text, count=1).strip().rstrip(".!")
    return rest or text.strip()


def title(text: str) -> str:
    # The subject up to its first comma, in six words at most: "A red fox in the snow".
    words = " ".join(subject(text).split(",")[0].split()[:6]).rstrip(".;:!?")
    return words[:1].upper() + words[1:60] if words else "New chat"
