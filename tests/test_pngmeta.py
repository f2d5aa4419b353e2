"""PNG text chunks: prompt and settings embedded without touching the image data."""

from __future__ import annotations

import io
import json
import random
import re
import struct
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from sora_watcher.pngmeta import embed, parameters_text, read_texts, tag

PROMPT = "Éclat doré sur la mer, 夕焼け"
SETTINGS: dict[str, object] = {
    "Steps": 30,
    "Size": "1536x864",
    "Seed": 42,
    "Model": "gpt-image-2",
    "Backend": "openai",
    "Quality": "high",
}
RECORD: dict[str, object] = {"prompt": PROMPT, "seed": 42, "note": "naïve «test» 🦊", "n": [1, 2]}


def make_png(
    size: tuple[int, int] = (32, 24), pnginfo: PngImagePlugin.PngInfo | None = None, **kw: object
) -> bytes:
    """An RGB PNG of noise (incompressible: 1024x1024 gives ~3 MB, in several IDAT chunks)."""
    noise = random.Random(size[0] * size[1]).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(out, "PNG", pnginfo=pnginfo, **kw)
    return out.getvalue()


SMALL = make_png()
BIG = make_png((1024, 1024))


def chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of each chunk: a reader independent of the module under test."""
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        yield png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def types(png: bytes) -> list[bytes]:
    return [ctype for ctype, _ in chunks(png)]


def keyword(data: bytes) -> bytes:
    return data.split(b"\0", 1)[0]


def pillow_text(png: bytes) -> dict[str, str]:
    """``PIL.Image.open(...).text``: every text chunk, as A1111's "PNG info" reads them."""
    with Image.open(io.BytesIO(png)) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile)
        return dict(image.text)


def expected_texts(negative: str | None = None) -> dict[str, str]:
    return {
        "parameters": parameters_text(PROMPT, SETTINGS, negative),
        "sora-watcher": json.dumps(RECORD, ensure_ascii=False, sort_keys=True),
    }


@pytest.mark.parametrize("png", [SMALL, BIG], ids=["32x24", "1024x1024"])
def test_tag_is_read_by_pillow_and_keeps_the_image_data(png: bytes) -> None:
    tagged = tag(png, PROMPT, SETTINGS, RECORD, negative_prompt="blurry, «flou»")

    assert pillow_text(tagged) == expected_texts("blurry, «flou»")
    with Image.open(io.BytesIO(tagged)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as before, Image.open(io.BytesIO(tagged)) as after:
        assert (after.mode, after.size) == (before.mode, before.size)
        assert after.tobytes() == before.tobytes()
    # Every chunk but the new ones is kept byte for byte, in order; IDATs included.
    assert [c for c in chunks(tagged) if c[0] != b"iTXt"] == list(chunks(png))
    assert types(png).count(b"IDAT") > (1 if png is BIG else 0)
    assert read_texts(tagged) == expected_texts("blurry, «flou»")


def test_chunks_come_before_the_first_idat_for_streaming_readers() -> None:
    tagged = tag(SMALL, PROMPT, SETTINGS, RECORD)
    order = types(tagged)
    assert order[order.index(b"IDAT") - 2 : order.index(b"IDAT")] == [b"iTXt", b"iTXt"]
    with Image.open(io.BytesIO(tagged)) as image:  # .info holds what precedes IDAT only
        assert image.info["parameters"] == expected_texts()["parameters"]
        assert json.loads(str(image.info["sora-watcher"])) == RECORD


def test_the_chunks_are_utf8_itxt_uncompressed() -> None:
    tagged = embed(SMALL, {"parameters": PROMPT})
    [data] = [data for ctype, data in chunks(tagged) if ctype == b"iTXt"]
    assert data == b"parameters\0\0\0\0\0" + PROMPT.encode()


def test_tagging_twice_keeps_one_chunk_per_keyword_with_the_newest_text() -> None:
    once = tag(SMALL, "first", SETTINGS, {"n": 1})
    twice = tag(once, PROMPT, SETTINGS, RECORD)
    keywords = [keyword(data) for ctype, data in chunks(twice) if ctype == b"iTXt"]
    assert sorted(keywords) == [b"parameters", b"sora-watcher"]
    assert read_texts(twice) == expected_texts()
    assert twice == tag(SMALL, PROMPT, SETTINGS, RECORD)


@pytest.mark.parametrize("how", ["tEXt", "zTXt", "iTXt", "compressed iTXt"])
def test_existing_text_chunks_with_the_keyword_are_replaced_others_kept(how: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "keep me")
    if how.endswith("iTXt"):
        info.add_itxt("parameters", "old prompt", zip=how.startswith("compressed"))
    else:
        info.add_text("parameters", "old prompt", zip=how == "zTXt")
    png = make_png(pnginfo=info, dpi=(72, 72))
    assert pillow_text(png)["parameters"] == "old prompt"

    tagged = tag(png, PROMPT, SETTINGS, RECORD)

    assert pillow_text(tagged) == {"Comment": "keep me", **expected_texts()}
    keywords = [keyword(data) for ctype, data in chunks(tagged) if ctype in {b"tEXt", b"zTXt"}]
    assert keywords == [b"Comment"]
    kept = [c for c in chunks(png) if keyword(c[1]) != b"parameters"]
    assert [c for c in chunks(tagged) if c[0] != b"iTXt"] == kept
    assert b"pHYs" in types(tagged)


def test_a_text_chunk_after_the_image_data_is_replaced_too() -> None:
    png = SMALL[:-12] + chunk(b"tEXt", b"sora-watcher\0{}") + SMALL[-12:]
    tagged = tag(png, PROMPT, SETTINGS, RECORD)
    assert types(tagged)[-2:] == [b"IDAT", b"IEND"]
    assert read_texts(tagged) == expected_texts()


def test_read_texts_reads_every_kind_of_text_chunk() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "café")
    info.add_text("Author", "Zoë", zip=True)
    info.add_itxt("Description", "夕焼け " * 400, lang="ja", tkey="説明", zip=True)
    info.add_itxt("Comment", "plain iTXt ✓")
    png = make_png(pnginfo=info)
    expected = {
        "Title": "café",
        "Author": "Zoë",
        "Description": "夕焼け " * 400,
        "Comment": "plain iTXt ✓",
    }
    assert read_texts(png) == expected
    assert read_texts(SMALL) == {}


@pytest.mark.parametrize(
    "data",
    [b"parameters", b"\0text", b"k\0\2\0\0\0t", b"k\0\0\0\0t", b"k\0\1\0\0\0garbage"],
    ids=["no NUL", "no keyword", "bad flag", "no language", "bad zlib"],
)
def test_read_texts_rejects_malformed_text_chunks(data: bytes) -> None:
    png = SMALL[:33] + chunk(b"iTXt", data) + SMALL[33:]
    with pytest.raises(ValueError, match="iTXt"):
        read_texts(png)


def test_bytes_after_iend_are_kept() -> None:
    assert tag(SMALL + b"trailer", PROMPT, {}, {}).endswith(b"IEND\xaeB`\x82trailer")


def test_no_texts_changes_nothing() -> None:
    assert embed(BIG, {}) == BIG


def ihdr_idat_iend() -> list[bytes]:
    return [chunk(ctype, data) for ctype, data in chunks(SMALL)]


@pytest.mark.parametrize(
    ("png", "message"),
    [
        (b"", "bad signature"),
        (b"GIF89a garbage" * 10, "bad signature"),
        (b"<html>not an image</html>", "bad signature"),
        (SMALL[:8], "without an IEND"),
        (SMALL[:40], "runs past the end"),
        (SMALL[:-6], "runs past the end"),
        (SMALL[:-12], "without an IEND"),
        (SMALL[:8] + b"\0\0\0\0" + b"IE\0D" + b"\0" * 4, "bad chunk type"),
        (SMALL[:8] + b"\x80\0\0\0IHDR" + SMALL[16:], "runs past the end"),
        (SMALL[:8] + b"".join(ihdr_idat_iend()[1:]), "not IHDR"),
        (SMALL[:8] + ihdr_idat_iend()[0] + ihdr_idat_iend()[-1], "no IDAT"),
    ],
    ids=[
        "empty",
        "gif",
        "html",
        "signature only",
        "truncated in IDAT",
        "truncated in IEND",
        "no IEND",
        "bad type",
        "huge length",
        "no IHDR",
        "no IDAT",
    ],
)
def test_malformed_pngs_raise_value_error(png: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tag(png, PROMPT, SETTINGS, RECORD)
    with pytest.raises(ValueError, match=message):
        read_texts(png)


@pytest.mark.parametrize("offset", [20, 45, 60, -5])
def test_a_bad_crc_raises_value_error(offset: int) -> None:
    png = bytearray(SMALL)
    png[offset] ^= 0x01
    with pytest.raises(ValueError, match="bad CRC"):
        embed(bytes(png), {"parameters": "x"})


@pytest.mark.parametrize(
    "bad", ["", "x" * 80, " lead", "trail ", "dou  ble", "new\nline", "夕焼け", "nul\0", "\x7f"]
)
def test_invalid_keywords_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="keyword"):
        embed(SMALL, {bad: "text"})


def test_valid_latin1_keywords() -> None:
    texts = {"Café crème": "ok", "k" * 79: "long", "a~!": "punct"}
    assert read_texts(embed(SMALL, texts)) == texts


def test_parameters_text_format() -> None:
    assert parameters_text("a red fox in the snow, golden hour", SETTINGS) == (
        "a red fox in the snow, golden hour\n"
        "Steps: 30, Size: 1536x864, Seed: 42, Model: gpt-image-2, Backend: openai, Quality: high"
    )
    assert parameters_text("fox", {"Steps": 30}, "blurry, dark") == (
        "fox\nNegative prompt: blurry, dark\nSteps: 30"
    )
    assert parameters_text("fox\nin snow", {}) == "fox\nin snow"
    assert parameters_text("fox", {"Steps": 30}, "") == "fox\nSteps: 30"
    assert parameters_text("fox", {"Seed": None, "Steps": 30}) == "fox\nSteps: 30"


def test_parameters_text_quotes_values_as_a1111() -> None:
    text = parameters_text(
        "p",
        {
            "Style": "vivid, warm",
            "Ratio": "16:9",
            "Title": 'the "fox"',
            "Note": "two\nlines",
            "Pad": " x ",
            "Plain": "Éclat doré 夕焼け",
            "Scale": 7.5,
        },
    )
    assert text.splitlines()[-1] == (
        'Style: "vivid, warm", Ratio: "16:9", Title: "the \\"fox\\"", Note: "two\\nlines", '
        'Pad: " x ", Plain: Éclat doré 夕焼け, Scale: 7.5'
    )


@pytest.mark.parametrize("key", ["", "a,b", "a:b", 'a"b', "a\nb", " Steps"])
def test_parameters_text_rejects_keys_that_would_not_parse(key: str) -> None:
    with pytest.raises(ValueError, match="setting name"):
        parameters_text("p", {key: 1})


# A1111's own parser (modules/infotext_utils.py, parse_generation_parameters).
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_settings(text: str) -> dict[str, str]:
    parsed = {}
    for key, value in A1111_PARAM.findall(text.splitlines()[-1]):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        parsed[key] = value
    return parsed


def test_a1111_parses_the_settings_line() -> None:
    assert a1111_settings(parameters_text(PROMPT, SETTINGS)) == {
        k: str(v) for k, v in SETTINGS.items()
    }


@settings(max_examples=200)
@given(st.lists(st.text(min_size=1), min_size=3, max_size=6))
def test_a1111_parses_any_values_back(values: list[str]) -> None:
    given_settings = {f"Key {i}": value for i, value in enumerate(values)}
    assert a1111_settings(parameters_text("prompt", given_settings)) == given_settings


@settings(max_examples=200)
@given(st.text(), st.text())
def test_any_text_round_trips(parameters: str, record: str) -> None:
    texts = {"parameters": parameters, "sora-watcher": record}
    tagged = embed(SMALL, texts)
    assert read_texts(tagged) == texts
    assert pillow_text(tagged) == texts


def test_the_settings_line_of_a_diffusers_image_reads_as_a1111_writes_it() -> None:
    from sora_watcher.pngmeta import settings_line

    record = {"width": 2048, "height": 2048, "steps": 30, "sampler": "DPM++ 2M Karras",
              "guidance": 7.0, "seed": 42, "model": "sd_xl_base", "upscale": 2,
              "upscale_steps": 30, "upscale_strength": 0.3}  # fmt: skip
    assert parameters_text("fox", settings_line(record)) == (
        "fox\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 2048x2048, "
        "Model: sd_xl_base, Hires upscale: 2, Hires steps: 30, Denoising strength: 0.3"
    )
    assert "CFG scale: 7.5," in parameters_text("fox", settings_line(record | {"guidance": 7.5}))
