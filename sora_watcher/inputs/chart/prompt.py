"""An English image prompt from a natal chart, filled from a template.

The prompt is filled from a ``string.Template``. A missing value is an empty field, and a piece
of the template between punctuation marks (``,`` ``;`` ``.``) whose fields are all empty is
left out, so "Cancer sun, $moon_sign moon, Virgo rising" reads "Cancer sun, Virgo rising".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from string import Template
from typing import Any

from sora_watcher.inputs.chart.reading import (
    CLASSICAL,
    SIGNS,
    ChartError,
    body_key,
    one_line,
    read_chart,
)

DEFAULT_TEMPLATE = (
    "A dreamlike astrological portrait for $user, $sun_sign sun, $moon_sign moon, "
    "$rising_sign rising; dominant $element element, $modality modality; emphasis on $houses; "
    "a mood of $mood ($aspects); $retrogrades in retrograde; palette: $palette; "
    "celestial symbols, soft cosmic light, painterly detail, no text, no letters."
)

TEMPLATE_FIELDS: dict[str, str] = {
    "user": "the user's name, from the file name theme_<user>.json",
    "title": "the chart's own title, e.g. 'Thème de alice (1992-03-14 06:20 Lyon)'",
    "sun_sign": "the Sun's sign, e.g. 'Cancer'",
    "moon_sign": "the Moon's sign, e.g. 'Taurus'",
    "rising_sign": "the Ascendant's sign, e.g. 'Virgo'",
    "element": "the dominant element: fire, earth, air or water",
    "modality": "the dominant modality: cardinal, fixed or mutable",
    "houses": "the most occupied houses, e.g. 'the 8th house of transformation (3 planets)'",
    "aspects": "the three tightest aspects, e.g. 'Moon opposite Mercury, Sun square Venus'",
    "mood": "the moods of those aspects, e.g. 'polarity and balance, tension and drive'",
    "palette": "colour words from the chart's colours (else from its element), e.g. 'golden'",
    "retrogrades": "the retrograde planets, e.g. 'Mercury and Saturn'",
}

# The elements and the modalities follow each other around the zodiac from Aries.
ELEMENTS = ("fire", "earth", "air", "water")
MODALITIES = ("cardinal", "fixed", "mutable")
# The lights and the Ascendant colour a chart the most, so they count twice.
HEAVY = {"Sun": 2, "Moon": 2, "Ascendant": 2}
HOUSE_MEANINGS = (
    "the self", "possessions", "communication", "home and roots", "creativity", "daily work",
    "partnership", "transformation", "far horizons", "vocation", "friendship", "the hidden",
)  # fmt: skip

# Plain words an image model understands, for the nearest-colour match.
COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 16),
    "charcoal": (54, 58, 66),
    "slate grey": (112, 122, 138),
    "silver": (192, 192, 192),
    "white": (248, 248, 245),
    "ivory": (255, 250, 232),
    "cream": (242, 230, 201),
    "sand": (214, 190, 150),
    "pale yellow": (250, 240, 150),
    "golden": (212, 160, 23),
    "amber": (255, 179, 0),
    "orange": (240, 130, 30),
    "coral": (250, 128, 100),
    "terracotta": (196, 98, 66),
    "brown": (110, 70, 40),
    "scarlet": (225, 35, 35),
    "crimson": (165, 20, 45),
    "burgundy": (100, 20, 40),
    "rose pink": (232, 150, 180),
    "magenta": (200, 40, 150),
    "lavender": (190, 170, 230),
    "violet": (140, 80, 200),
    "deep purple": (70, 25, 95),
    "indigo": (60, 40, 130),
    "deep navy": (16, 24, 64),
    "royal blue": (50, 80, 200),
    "sky blue": (90, 170, 225),
    "pale blue": (180, 215, 240),
    "turquoise": (60, 200, 200),
    "teal": (0, 120, 128),
    "emerald green": (20, 140, 80),
    "forest green": (34, 80, 40),
    "sage green": (150, 175, 130),
    "olive": (120, 125, 50),
}
ELEMENT_PALETTES = {
    "fire": ("crimson", "amber", "golden"),
    "earth": ("forest green", "terracotta", "sand"),
    "air": ("sky blue", "silver", "pale yellow"),
    "water": ("deep navy", "teal", "silver"),
    "": ("indigo", "golden", "ivory"),  # nothing known: a calm night sky
}
MAX_PALETTE = 6  # more colour words only blur the image


# -- public API -------------------------------------------------------------------------------


def build_prompt(
    chart: Mapping[str, Any], user: str, template: str | None = None, max_chars: int = 4000
) -> str:
    """The one-line image prompt of ``chart``, at most ``max_chars`` long (cut between words).

    A ready ``prompt`` in the chart wins over the template. Raises ChartError when the chart
    has nothing usable or the template names an unknown field.
    """
    if isinstance(chart, Mapping):
        ready = chart.get("prompt")
        if isinstance(ready, str) and ready.strip():
            return _shorten(one_line(ready), max_chars)
    text = template if template is not None else DEFAULT_TEMPLATE
    check_template(text)
    return _shorten(one_line(_fill(text, chart_fields(chart, user))), max_chars)


def chart_fields(chart: Mapping[str, Any], user: str) -> dict[str, str]:
    """The template fields of ``chart`` (see TEMPLATE_FIELDS); an unknown value is ``""``."""
    reading = read_chart(chart)
    who = one_line(user) or "someone"
    aspects = sorted(reading.aspects, key=lambda a: (a[0], a[1], a[2], a[3].angle))[:3]
    element, modality = _dominant(reading.signs)
    return {
        "user": who,
        "title": one_line(reading.title) or f"Natal chart of {who}",
        "sun_sign": _sign_name(reading.signs.get("Sun")),
        "moon_sign": _sign_name(reading.signs.get("Moon")),
        "rising_sign": _sign_name(reading.signs.get("Ascendant")),
        "element": element,
        "modality": modality,
        "houses": _houses_phrase(reading.houses),
        "aspects": ", ".join(f"{a} {kind.verb} {b}" for _, a, b, kind in aspects),
        "mood": ", ".join(_unique(kind.mood for *_, kind in aspects)),
        "palette": ", ".join(_palette(reading.colours, element)),
        "retrogrades": _and_list(sorted(_unique(reading.retrogrades), key=body_key)),
    }


def check_template(template: str) -> None:
    """Raise ChartError if ``template`` names an unknown field or has a stray ``$``.

    Worth calling once at start-up, so a wrong template is reported before any chart comes.
    """
    for match in Template.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if name is not None and name not in TEMPLATE_FIELDS:
            valid = ", ".join(f"${known}" for known in TEMPLATE_FIELDS)
            raise ChartError(f"unknown field ${name} in the prompt template; valid fields: {valid}")
        if match.group("invalid") is not None:
            raise ChartError(
                f"stray $ at character {match.start() + 1} of the prompt template: "
                "write $name or ${name} for a field, $$ for a dollar sign"
            )


# -- turning the reading into words -----------------------------------------------------------


def _dominant(signs: Mapping[str, int]) -> tuple[str, str]:
    """The dominant element and modality over Sun..Pluto and the Ascendant; "" if none."""
    elements: Counter[str] = Counter()
    modalities: Counter[str] = Counter()
    for name in (*CLASSICAL, "Ascendant"):
        if name in signs:
            weight = HEAVY.get(name, 1)
            elements[ELEMENTS[signs[name] % 4]] += weight
            modalities[MODALITIES[signs[name] % 3]] += weight
    # max() keeps the first of equals, so ties go to the fixed order of ELEMENTS and MODALITIES.
    element = max(ELEMENTS, key=lambda word: elements[word]) if elements else ""
    modality = max(MODALITIES, key=lambda word: modalities[word]) if modalities else ""
    return element, modality


def _houses_phrase(houses: Mapping[str, int]) -> str:
    """The most occupied house, and the next one if it holds two bodies or more."""
    counts = Counter(houses.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    chosen = [ranked[0]] if ranked else []
    if len(ranked) > 1 and ranked[1][1] >= 2:
        chosen.append(ranked[1])
    return " and ".join(
        f"the {_ordinal(house)} house of {HOUSE_MEANINGS[house - 1]} "
        f"({count} planet{'s' if count > 1 else ''})"
        for house, count in chosen
    )


def _palette(colours: Iterable[str], element: str) -> list[str]:
    words = _unique(word for word in map(_colour_word, colours) if word)
    return words[:MAX_PALETTE] or list(ELEMENT_PALETTES[element])


def _colour_word(text: str) -> str:
    """The nearest named colour of ``#rrggbb`` (or ``#rgb``); "" for anything else."""
    match = re.fullmatch(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})", text.strip())
    if match is None:
        return ""
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))

    def distance(word: str) -> float:
        # "Redmean" weighting: closer to what an eye sees than plain RGB distance.
        r, g, b = COLOUR_WORDS[word]
        mean = (red + r) / 2
        return (
            (2 + mean / 256) * (red - r) ** 2
            + 4 * (green - g) ** 2
            + (2 + (255 - mean) / 256) * (blue - b) ** 2
        )

    return min(COLOUR_WORDS, key=distance)


# -- filling the template ---------------------------------------------------------------------

# A "." ends a piece only before a space or the end, so "e.g." and "1.5" stay whole.
_SEPARATOR = re.compile(r"([,;]|\.(?=\s|$))")
_STRENGTH = {"": 0, ",": 1, ";": 2, ".": 3}


def _fill(template: str, fields: Mapping[str, str]) -> str:
    """Substitute ``fields``, leaving out the pieces whose fields are all empty."""
    pieces = _SEPARATOR.split(template)
    text, pending = "", ""
    for index in range(0, len(pieces), 2):
        piece = pieces[index]
        after = pieces[index + 1] if index + 1 < len(pieces) else ""
        names = _field_names(piece)
        if names and not any(fields[name] for name in names):
            # Of the separators around a dropped piece, keep the stronger: "a, [b]; c" -> "a; c".
            if text:
                pending = max(pending, after, key=_STRENGTH.__getitem__)
            continue
        text += pending + piece
        pending = after
    return Template(text + pending).substitute(fields)


def _field_names(text: str) -> list[str]:
    matches = Template.pattern.finditer(text)
    return [name for m in matches if (name := m.group("named") or m.group("braced"))]


def _sign_name(index: int | None) -> str:
    return SIGNS[index] if index is not None else ""


def _ordinal(number: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10 if number not in (11, 12, 13) else 0)
    return f"{number}{suffix or 'th'}"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _and_list(items: list[str]) -> str:
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` at a space, never inside a word."""
    if len(text) <= max_chars:
        return text
    space = text.rfind(" ", 0, max(max_chars, 0) + 1)
    return text[:space].rstrip(" ,;:") if space > 0 else ""
