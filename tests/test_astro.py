"""The image prompt built from a natal chart (the chart plug-in, sora_watcher.inputs.chart)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sora_watcher.inputs.chart import (
    DEFAULT_TEMPLATE,
    TEMPLATE_FIELDS,
    ChartError,
    build_prompt,
    chart_fields,
    check_template,
)

DATA = Path(__file__).resolve().parent / "data"
NO_CHART = "no chart data: expected planetes (AstroSource) or sun/moon objects (kerykeion)"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def alice() -> dict[str, Any]:
    return load("theme_alice.json")


# -- the AstroSource sample -------------------------------------------------------------------


def test_sample_chart_gives_its_signs_element_houses_aspects_and_palette(
    alice: dict[str, Any],
) -> None:
    fields = chart_fields(alice, "alice")
    # Sun 116.58 -> Cancer (90-120), Moon 54.31 -> Taurus (30-60), Ascendant 152.83 -> Virgo.
    assert (fields["sun_sign"], fields["moon_sign"], fields["rising_sign"]) == (
        "Cancer",
        "Taurus",
        "Virgo",
    )
    # Earth 5 (Moon x2, Pluto, Ascendant x2) beats fire 4; cardinal 7 beats fixed 4.
    assert (fields["element"], fields["modality"]) == ("earth", "cardinal")
    # Houses 8 and 9 hold three bodies each (Chiron and the North Node count too).
    assert fields["houses"] == (
        "the 8th house of transformation (3 planets) and the 9th house of far horizons (3 planets)"
    )
    assert fields["aspects"] == "Moon opposite Mercury, Sun square Venus, Mars opposite Neptune"
    assert fields["mood"] == "polarity and balance, tension and drive"
    # background, band, deco2, title, then the Sun's and the Moon's colours.
    assert fields["palette"] == "deep navy, golden, sky blue, cream, amber, silver"
    assert fields["retrogrades"] == ""
    assert fields["title"] == "Thème de alice (1992-03-14 06:20 Lyon)"

    prompt = build_prompt(alice, "alice")
    assert prompt.startswith(
        "A dreamlike astrological portrait for alice, Cancer sun, Taurus moon, Virgo rising; "
    )
    assert "Moon opposite Mercury" in prompt
    assert "palette: deep navy, golden, sky blue, cream, amber, silver;" in prompt
    assert " retrograde" not in prompt  # no retrograde planet: the clause is left out
    assert prompt.endswith("no text, no letters.")
    assert "\n" not in prompt and "  " not in prompt


def test_retrogrades_are_named_in_planet_order(alice: dict[str, Any]) -> None:
    alice["retrogrades"] = ["Saturn", "Mercury", "Saturn", 7]
    assert chart_fields(alice, "alice")["retrogrades"] == "Mercury and Saturn"
    assert "; Mercury and Saturn in retrograde;" in build_prompt(alice, "alice")


# -- missing and broken data ------------------------------------------------------------------


def test_only_planetes() -> None:
    prompt = build_prompt({"planetes": {"Sun": 0.5, "Moon": 359.9}}, "bob")
    assert prompt == (
        "A dreamlike astrological portrait for bob, Aries sun, Pisces moon; "
        "dominant fire element, cardinal modality; palette: crimson, amber, golden; "
        "celestial symbols, soft cosmic light, painterly detail, no text, no letters."
    )


def test_only_ascendant_and_longitudes_are_taken_modulo_360() -> None:
    fields = chart_fields({"ascendant": -30.0}, "bob")  # -30 is 330: Pisces
    assert fields["rising_sign"] == "Pisces"
    assert fields["sun_sign"] == ""
    assert build_prompt({"ascendant": 725}, "bob").startswith(
        "A dreamlike astrological portrait for bob, Aries rising; dominant fire element"
    )


def test_first_house_cusp_stands_in_for_a_missing_ascendant() -> None:
    chart = {"planetes": {"Sun": 10}, "maisons_deg": [200.0, 230.0]}
    assert chart_fields(chart, "bob")["rising_sign"] == "Libra"


def test_empty_theme_falls_back_to_the_element_palette(alice: dict[str, Any]) -> None:
    alice["theme"] = {}
    assert chart_fields(alice, "alice")["palette"] == "forest green, terracotta, sand"
    alice["theme"] = {"background": "navy", "band_color": "#12345", "planet_colors": []}
    assert chart_fields(alice, "alice")["palette"] == "forest green, terracotta, sand"


def test_aspects_without_orb_come_after_measured_ones() -> None:
    chart = {
        "planetes": {"Sun": 1},
        "aspects": [
            {"planetes": "Sun - Mars", "aspect": "△"},
            {"planetes": "Moon - Venus", "angle": 0},
            {"planetes": "Sun - Moon", "aspect": "□", "orb": 4.2},
            {"planetes": "nonsense", "aspect": "□", "orb": 0.1},
            {"planetes": "Sun - Pluto", "aspect": "?", "orb": 0.1},
        ],
    }
    fields = chart_fields(chart, "bob")
    assert fields["aspects"] == "Sun square Moon, Moon conjunct Venus, Sun trine Mars"
    assert fields["mood"] == "tension and drive, fusion and intensity, harmony and flow"


def test_garbage_values_are_ignored() -> None:
    chart = {
        "planetes": {"Sun": "Cancer", "Moon": None, "Mars": True, "Venus": float("nan"), "X": []},
        "ascendant": "Virgo",
        "planetes_maison": {"Sun": "7", "Moon": 13, "Mars": 2.5, 4: 4},
        "aspects": "many",
        "theme": ["#ffffff"],
        "retrogrades": "Mercury",
        "titre": 42,
    }
    fields = chart_fields(chart, "bob")
    assert fields["sun_sign"] == fields["element"] == fields["houses"] == fields["aspects"] == ""
    assert fields["title"] == "Natal chart of bob"
    assert build_prompt(chart, "bob") == (
        "A dreamlike astrological portrait for bob; palette: indigo, golden, ivory; "
        "celestial symbols, soft cosmic light, painterly detail, no text, no letters."
    )


@pytest.mark.parametrize(
    "chart",
    [{}, [], "theme", None, 3, {"theme": {"background": "#000000"}}, {"ascendant": "x"}],
)
def test_nothing_usable_is_a_chart_error(chart: Any) -> None:
    for attempt in (build_prompt, chart_fields):
        with pytest.raises(ChartError) as caught:
            attempt(chart, "bob")
        assert str(caught.value) == NO_CHART


# -- kerykeion --------------------------------------------------------------------------------


def test_kerykeion_v5_subject() -> None:
    fields = chart_fields(load("kerykeion_v5_subject.json"), "bob")
    assert (fields["sun_sign"], fields["moon_sign"], fields["rising_sign"]) == (
        "Cancer",
        "Scorpio",
        "Libra",
    )
    # Water and air tie at 5: the fixed order (fire, earth, air, water) gives air.
    assert (fields["element"], fields["modality"]) == ("air", "cardinal")
    assert fields["houses"] == (
        "the 3rd house of communication (3 planets) and the 9th house of far horizons (3 planets)"
    )
    # The mean node is always "retrograde": it is left out.
    assert fields["retrogrades"] == "Venus, Saturn, Uranus and Neptune"
    assert fields["palette"] == "sky blue, silver, pale yellow"
    assert fields["aspects"] == fields["mood"] == ""
    assert fields["title"] == "Natal chart of bob (1988-07-02 14:30 Montreal)"
    prompt = build_prompt(load("kerykeion_v5_subject.json"), "bob")
    assert "Cancer sun, Scorpio moon, Libra rising; dominant air element" in prompt
    assert "a mood of" not in prompt


def test_kerykeion_v4_subject_with_sign_names_and_first_house() -> None:
    chart = {
        "name": "carol",
        "sun": {"name": "Sun", "sign": "Leo", "house": 5, "retrograde": False},
        "moon": {"name": "Moon", "sign": "Pis", "abs_pos": "x", "house": "Fifth_House"},
        "mercury": {"name": "Mercury", "sign": "Vir", "abs_pos": 160.0, "retrograde": True},
        "first_house": {"name": "First_House", "sign": "Sag", "abs_pos": 250.0},
    }
    fields = chart_fields(chart, "carol")
    assert (fields["sun_sign"], fields["moon_sign"], fields["rising_sign"]) == (
        "Leo",
        "Pisces",
        "Sagittarius",
    )
    assert fields["houses"] == "the 5th house of creativity (2 planets)"
    assert fields["retrogrades"] == "Mercury"
    assert fields["title"] == "Natal chart of carol"


# -- a ready prompt ---------------------------------------------------------------------------


def test_a_ready_prompt_wins(alice: dict[str, Any]) -> None:
    alice["prompt"] = "  A golden crab\n under a\tTaurus moon  "
    assert build_prompt(alice, "alice") == "A golden crab under a Taurus moon"
    assert build_prompt({"prompt": "A crab"}, "x", template="$unknown") == "A crab"
    assert build_prompt({"prompt": "A golden crab"}, "x", max_chars=10) == "A golden"


def test_a_blank_or_non_text_ready_prompt_is_ignored(alice: dict[str, Any]) -> None:
    expected = build_prompt(alice, "alice")
    for ready in ("  ", None, ["A crab"]):
        alice["prompt"] = ready
        assert build_prompt(alice, "alice") == expected
    with pytest.raises(ChartError, match="no chart data"):
        build_prompt({"prompt": " "}, "alice")


# -- determinism ------------------------------------------------------------------------------


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same data with every object's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@pytest.mark.parametrize("name", ["theme_alice.json", "kerykeion_v5_subject.json"])
def test_same_chart_same_prompt_whatever_the_key_order(name: str) -> None:
    chart = load(name)
    expected = build_prompt(chart, "alice")
    assert build_prompt(copy.deepcopy(chart), "alice") == expected
    for seed in range(20):
        assert build_prompt(shuffled(chart, random.Random(seed)), "alice") == expected


def test_aspect_order_in_the_file_does_not_matter(alice: dict[str, Any]) -> None:
    expected = build_prompt(alice, "alice")
    alice["aspects"].reverse()
    assert build_prompt(alice, "alice") == expected


# -- templates --------------------------------------------------------------------------------


def test_default_template_uses_only_known_fields() -> None:
    check_template(DEFAULT_TEMPLATE)
    assert set(TEMPLATE_FIELDS) >= {
        "user", "title", "sun_sign", "moon_sign", "rising_sign", "element", "modality",
        "houses", "aspects", "mood", "palette", "retrogrades",
    }  # fmt: skip
    assert all(description.strip() for description in TEMPLATE_FIELDS.values())


def test_template_override(alice: dict[str, Any]) -> None:
    template = "${user}'s sky:\n$sun_sign sun, $moon_sign moon. Colours: $palette. Costs $$0"
    assert build_prompt(alice, "alice", template=template) == (
        "alice's sky: Cancer sun, Taurus moon. Colours: deep navy, golden, sky blue, cream, "
        "amber, silver. Costs $0"
    )


def test_template_pieces_with_only_empty_fields_are_left_out() -> None:
    template = "$sun_sign sun, $moon_sign moon; $retrogrades retrograde; $title, e.g. here."
    assert build_prompt({"planetes": {"Sun": 40}}, "bob", template=template) == (
        "Taurus sun; Natal chart of bob, e.g. here."
    )
    assert build_prompt({"ascendant": 40}, "bob", template="$sun_sign sun, end.") == "end."


def test_unknown_template_field_is_a_chart_error_naming_it(alice: dict[str, Any]) -> None:
    with pytest.raises(ChartError) as caught:
        build_prompt(alice, "alice", template="A $sun_sing portrait")
    message = str(caught.value)
    assert "$sun_sing" in message
    assert all(f"${name}" in message for name in TEMPLATE_FIELDS)
    with pytest.raises(ChartError, match=r"\$\{name\}"):
        build_prompt(alice, "alice", template="A portrait for $5")


# -- length -----------------------------------------------------------------------------------


def test_max_chars_cuts_between_words(alice: dict[str, Any]) -> None:
    full = build_prompt(alice, "alice")
    assert build_prompt(alice, "alice", max_chars=len(full)) == full
    for limit in range(len(full)):
        prompt = build_prompt(alice, "alice", max_chars=limit)
        assert len(prompt) <= limit
        assert full.startswith(prompt)
        # The cut falls where a word ends: at a space, or at punctuation before one.
        assert prompt == "" if limit == 0 else full[len(prompt)] in " ,;:"
        assert not prompt.endswith((" ", ",", ";", ":"))
    assert build_prompt(alice, "alice", max_chars=60) == (
        "A dreamlike astrological portrait for alice, Cancer sun"
    )
    assert build_prompt({"prompt": "Supercalifragilistic"}, "x", max_chars=5) == ""


# -- anything chart-like ----------------------------------------------------------------------

# One strategy, not a one_of: nested one_of branches are flattened, so junk would crowd out
# the well-formed alternatives it is offered beside.
JUNK: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, 0, -7, 1e308, float("nan"), "", "Cancer", [], {}]
)
BODIES = st.sampled_from(["Sun", "Moon", "Mercury", "Mars", "Pluto", "Chiron", "North Node", ""])
LONGITUDE = st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400), JUNK)
COLOUR = st.one_of(st.from_regex(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", fullmatch=True), JUNK)
ASPECT = st.fixed_dictionaries(
    {
        "planetes": st.one_of(st.builds("{} - {}".format, BODIES, BODIES), JUNK),
        "aspect": st.one_of(st.sampled_from(["☌", "✶", "□", "△", "☍", "trine"]), JUNK),
    },
    optional={
        "angle": st.one_of(st.sampled_from([0, 60, 90, 120, 180]), LONGITUDE),
        "orb": LONGITUDE,
    },
)
THEME = st.fixed_dictionaries(
    {},
    optional={
        "background": COLOUR,
        "band_color": COLOUR,
        "deco2_color": COLOUR,
        "title_color": COLOUR,
        "planet_colors": st.one_of(st.dictionaries(BODIES, COLOUR, max_size=4), JUNK),
    },
)
POINT = st.fixed_dictionaries(
    {},
    optional={
        "abs_pos": LONGITUDE,
        "sign": st.one_of(st.sampled_from(["Ari", "Leo", "Pisces", "Xyz"]), JUNK),
        "house": st.one_of(st.sampled_from(["First_House", "Twelfth_House", "Nope"]), JUNK),
        "retrograde": JUNK,
    },
)
CHART_PARTS = {
    "planetes": st.one_of(st.dictionaries(BODIES, LONGITUDE, max_size=6), JUNK),
    "planetes_maison": st.one_of(
        st.dictionaries(BODIES, st.one_of(st.integers(-1, 13), JUNK), max_size=6), JUNK
    ),
    "maisons_deg": st.one_of(st.lists(LONGITUDE, max_size=3), JUNK),
    "aspects": st.one_of(st.lists(st.one_of(ASPECT, JUNK), max_size=5), JUNK),
    "ascendant": st.one_of(LONGITUDE, POINT),
    "theme": st.one_of(THEME, JUNK),
    "retrogrades": st.one_of(st.lists(st.one_of(BODIES, JUNK), max_size=4), JUNK),
    "titre": JUNK,
    "prompt": JUNK,
    "name": JUNK,
    "sun": st.one_of(POINT, JUNK),
    "moon": st.one_of(POINT, JUNK),
    "first_house": st.one_of(POINT, JUNK),
}
CHART = st.one_of(
    # Mostly charts that get past the "no chart data" check, so the deep paths are exercised.
    st.fixed_dictionaries(
        {"planetes": st.dictionaries(BODIES, LONGITUDE, max_size=6)},
        optional={key: part for key, part in CHART_PARTS.items() if key != "planetes"},
    ),
    st.fixed_dictionaries(
        {"sun": POINT, "moon": POINT},
        optional={key: part for key, part in CHART_PARTS.items() if key not in ("sun", "moon")},
    ),
    st.fixed_dictionaries({}, optional=CHART_PARTS),
    JUNK,
)


@settings(max_examples=300, deadline=None)
@given(chart=CHART, user=st.text(max_size=10), max_chars=st.integers(-5, 600))
def test_any_chart_like_data_gives_a_prompt_or_a_chart_error(
    chart: Any, user: str, max_chars: int
) -> None:
    try:
        prompt = build_prompt(chart, user, max_chars=max_chars)
    except ChartError as exc:
        assert str(exc) == NO_CHART
        return
    assert len(prompt) <= max(max_chars, 0)
    assert "\n" not in prompt and prompt == prompt.strip()
    if max_chars >= 40 and not (isinstance(chart.get("prompt"), str) and chart["prompt"].strip()):
        assert prompt.startswith("A dreamlike astrological portrait")
    assert build_prompt(chart, user, max_chars=max_chars) == prompt
