"""The two shapes of a natal chart, read into one ``Reading``.

Two shapes are read: AstroSource's ``astro_calcule.py`` output (``planetes``, ``maisons_deg``,
``planetes_maison``, ``aspects``, ``ascendant``, ``theme``, ``titre``, ``retrogrades``, maybe a
ready ``prompt``) and a kerykeion subject (``sun``, ``moon``, ... objects). Any key may be
missing or hold garbage: what cannot be read is left out of the prompt, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ChartError(ValueError):
    """The chart cannot give a prompt; the message says why, for a user."""


NO_CHART = "no chart data: expected planetes (AstroSource) or sun/moon objects (kerykeion)"

SIGNS = (
    "Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo",
    "Libra", "Scorpio", "Sagittarius", "Capricorn", "Aquarius", "Pisces",
)  # fmt: skip
CLASSICAL = (
    "Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto",
)  # fmt: skip
BODY_ORDER = (*CLASSICAL, "Chiron", "North Node", "South Node")
ORDINAL_WORDS = (
    "first", "second", "third", "fourth", "fifth", "sixth",
    "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
)  # fmt: skip


@dataclass(frozen=True)
class AspectKind:
    angle: int
    glyph: str
    name: str
    verb: str
    mood: str


ASPECT_KINDS = (
    AspectKind(0, "☌", "conjunction", "conjunct", "fusion and intensity"),
    AspectKind(60, "✶", "sextile", "sextile", "ease and opportunity"),
    AspectKind(90, "□", "square", "square", "tension and drive"),
    AspectKind(120, "△", "trine", "trine", "harmony and flow"),
    AspectKind(180, "☍", "opposition", "opposite", "polarity and balance"),
)

THEME_COLOUR_KEYS = ("background", "band_color", "deco2_color", "title_color")

# kerykeion subject attribute -> body name. The lunar nodes are left out: always "retrograde".
KERYKEION_BODIES = {name.lower(): name for name in (*CLASSICAL, "Chiron")}
KERYKEION_ASCENDANT = ("ascendant", "first_house")  # v4 may only have the first house cusp
KERYKEION_SIGNS = {sign[:3].lower(): index for index, sign in enumerate(SIGNS)}


@dataclass
class Reading:
    """What both chart shapes come down to; every part may be empty."""

    title: str = ""
    signs: dict[str, int] = field(default_factory=dict)  # body (or "Ascendant") -> sign index
    houses: dict[str, int] = field(default_factory=dict)  # body -> house 1-12
    aspects: list[tuple[float, str, str, AspectKind]] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)  # "#rrggbb", in the order they count
    retrogrades: list[str] = field(default_factory=list)


# -- reading the two chart shapes -------------------------------------------------------------


def read_chart(chart: object) -> Reading:
    if not isinstance(chart, Mapping):
        raise ChartError(NO_CHART)
    if isinstance(chart.get("planetes"), Mapping) or _number(chart.get("ascendant")) is not None:
        return _read_astrosource(chart)
    kerykeion_keys = (*KERYKEION_BODIES, *KERYKEION_ASCENDANT)
    if any(isinstance(chart.get(key), Mapping) for key in kerykeion_keys):
        return _read_kerykeion(chart)
    raise ChartError(NO_CHART)


def _read_astrosource(chart: Mapping[str, Any]) -> Reading:
    reading = Reading(title=_text(chart.get("titre")))
    for name, value in _items(chart.get("planetes")):
        reading.signs[name] = _sign_of(_number(value))
    ascendant = _number(chart.get("ascendant"))
    cusps = chart.get("maisons_deg")
    if ascendant is None and isinstance(cusps, list) and cusps:
        ascendant = _number(cusps[0])  # the first house cusp is the Ascendant
    reading.signs["Ascendant"] = _sign_of(ascendant)
    reading.signs = {name: sign for name, sign in reading.signs.items() if sign >= 0}

    for name, value in _items(chart.get("planetes_maison")):
        house = _house_number(value)
        if house:
            reading.houses[name] = house

    aspects = chart.get("aspects")
    for aspect in aspects if isinstance(aspects, list) else []:
        parsed = _astrosource_aspect(aspect)
        if parsed is not None:
            reading.aspects.append(parsed)

    theme = chart.get("theme")
    if isinstance(theme, Mapping):
        reading.colours = [_text(theme.get(key)) for key in THEME_COLOUR_KEYS]
        planet_colours = dict(_items(theme.get("planet_colors")))
        reading.colours += [_text(planet_colours[n]) for n in sorted(planet_colours, key=body_key)]

    retrogrades = chart.get("retrogrades")
    if isinstance(retrogrades, list):
        reading.retrogrades = [one_line(name) for name in retrogrades if isinstance(name, str)]
    return reading


def _astrosource_aspect(aspect: object) -> tuple[float, str, str, AspectKind] | None:
    """``{"planetes": "Sun - Moon", "aspect": "☌", "angle": 0, "orb": 6.38}``, or None."""
    if not isinstance(aspect, Mapping):
        return None
    names = [one_line(name) for name in _text(aspect.get("planetes")).split("-")]
    if len(names) != 2 or not all(names):
        return None
    symbol = _text(aspect.get("aspect")).lower()
    angle = _number(aspect.get("angle"))
    for kind in ASPECT_KINDS:
        if symbol in (kind.glyph, kind.name) or (angle is not None and abs(angle - kind.angle) < 1):
            orb = _number(aspect.get("orb"))
            # An aspect without an orb is kept, but after every measured one.
            return (abs(orb) if orb is not None else math.inf), names[0], names[1], kind
    return None


def _read_kerykeion(chart: Mapping[str, Any]) -> Reading:
    reading = Reading(title=_kerykeion_title(chart))
    for key, name in KERYKEION_BODIES.items():
        point = chart.get(key)
        if not isinstance(point, Mapping):
            continue
        sign = _kerykeion_sign(point)
        if sign >= 0:
            reading.signs[name] = sign
        house = _house_number(point.get("house"))
        if house:
            reading.houses[name] = house
        if point.get("retrograde") is True:
            reading.retrogrades.append(name)
    for key in KERYKEION_ASCENDANT:
        point = chart.get(key)
        sign = _kerykeion_sign(point) if isinstance(point, Mapping) else -1
        if sign >= 0:
            reading.signs["Ascendant"] = sign
            break
    return reading


def _kerykeion_title(chart: Mapping[str, Any]) -> str:
    name = one_line(_text(chart.get("name")))
    if not name:
        return ""
    # "1992-03-14T06:20:00+01:00" -> "1992-03-14 06:20", like AstroSource's titles.
    when = _text(chart.get("iso_formatted_local_datetime"))[:16].replace("T", " ")
    details = one_line(f"{when} {_text(chart.get('city'))}")
    return f"Natal chart of {name} ({details})" if details else f"Natal chart of {name}"


def _kerykeion_sign(point: Mapping[str, Any]) -> int:
    """Sign index from ``abs_pos``, else from ``sign`` ("Ari" or "Aries"); -1 if neither."""
    sign = _sign_of(_number(point.get("abs_pos")))
    if sign < 0:
        sign = KERYKEION_SIGNS.get(_text(point.get("sign")).strip()[:3].lower(), -1)
    return sign


# -- small helpers ----------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A finite JSON number; strings, booleans, NaN and the rest are not longitudes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too big for a float is no longitude either
        return None
    return number if math.isfinite(number) else None


def _sign_of(longitude: float | None) -> int:
    """Sign index (0 = Aries) of an ecliptic longitude in degrees; -1 if unknown."""
    if longitude is None:
        return -1
    return int((longitude % 360) // 30) % 12  # % 12: a tiny negative gives 360.0 after % 360


def _house_number(value: object) -> int:
    """1-12 from ``7`` or kerykeion's ``"Seventh_House"``; 0 if neither."""
    if isinstance(value, str):
        word = value.replace("_", " ").split(" ")[0].lower()
        return ORDINAL_WORDS.index(word) + 1 if word in ORDINAL_WORDS else 0
    number = _number(value)
    if number is not None and number.is_integer() and 1 <= number <= 12:
        return int(number)
    return 0


def _items(value: object) -> list[tuple[str, Any]]:
    """The string-keyed entries of a mapping, sorted so dict order never matters."""
    if not isinstance(value, Mapping):
        return []
    return sorted((key, item) for key, item in value.items() if isinstance(key, str))


def body_key(name: str) -> tuple[int, str]:
    """Planets in their usual order, anything else after them by name."""
    return (BODY_ORDER.index(name) if name in BODY_ORDER else len(BODY_ORDER), name)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def one_line(text: str) -> str:
    return " ".join(text.split())
