"""The prompt and settings of an image, written into its PNG as text chunks.

An image that leaves ``images/`` (copied, uploaded, opened in another tool) should still say
what made it. Two text chunks go into every saved PNG:

- ``parameters``, in the format of Stable Diffusion WebUI (A1111): the prompt, an optional
  ``Negative prompt: ...`` line, then one line of ``Key: value`` pairs. WebUI's "PNG info" tab
  and the many tools that read that format (image browsers, ComfyUI and InvokeAI importers,
  Civitai) show it as the prompt and its settings.
- ``sora-watcher``, the image's sidecar record as JSON: everything, machine-readable.

Both are iTXt chunks: tEXt is Latin-1 only, so "夕焼け" would be lost, while iTXt holds UTF-8.
They are written uncompressed (a prompt is small next to an image, and simple readers, even
``grep``, then see it); text compressed by others (zTXt, compressed iTXt) is read all the same.

The chunks are spliced into the PNG bytes as received, never by decoding and re-encoding the
image: that would cost time on 20 MB images, could change how the pixels are stored (bit depth,
palette, colour profile, compression) and would drop chunks we do not know. Every other chunk,
the image data (IDAT) included, stays byte for byte, in order; only text chunks with the same
keywords are dropped. The new chunks go before the first IDAT, where readers that stop at the
image data (streaming readers, ``PIL.Image.open(...).info``) still find them.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping

__all__ = ["PARAMETERS", "RECORD", "embed", "parameters_text", "read_texts", "settings_line", "tag"]

PARAMETERS = "parameters"
"""Keyword of the A1111 text chunk."""
RECORD = "sora-watcher"
"""Keyword of the JSON chunk (the sidecar record)."""

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_TYPES = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_MAX_LENGTH = 2**31 - 1  # the largest chunk length the PNG format allows
_MAX_INFLATED = 64 * 1024 * 1024  # read_texts' limit for one compressed text (zip bombs)
_QUOTED = frozenset(',:"')
# Line breaks that json.dumps(ensure_ascii=False) leaves as they are but str.splitlines() splits on.
_ESCAPED = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


# Sidecar fields shown in the settings line, under the names A1111 readers know, in its order:
# those before the size, then those after. The x2 pass as A1111 writes its hires fix.
BEFORE_SIZE = {"steps": "Steps", "sampler": "Sampler", "guidance": "CFG scale", "seed": "Seed"}
SETTINGS = {"model": "Model", "refiner": "Refiner", "refiner_switch": "Refiner switch at",
            "upscale": "Hires upscale", "upscale_steps": "Hires steps",
            "upscale_strength": "Denoising strength", "quality": "Quality",
            "background": "Background", "backend": "Backend",
            "request_id": "Request id"}  # fmt: skip


def settings_line(record: Mapping[str, object]) -> dict[str, object]:
    """The ``Key: value`` settings of an image's sidecar ``record`` (it has width and height)."""
    line = _labelled(record, BEFORE_SIZE)
    line["Size"] = f"{record['width']}x{record['height']}"
    return line | _labelled(record, SETTINGS)


def _labelled(record: Mapping[str, object], labels: Mapping[str, str]) -> dict[str, object]:
    return {
        label: record[key] for key, label in labels.items() if record.get(key) not in (None, "")
    }


def parameters_text(
    prompt: str, settings: Mapping[str, object], negative_prompt: str | None = None
) -> str:
    """The A1111 ``parameters`` text: prompt, ``Negative prompt: ...`` line, settings line.

    Settings are written in order as ``Key: value`` joined by ", "; ``None`` values are left
    out, others written with ``str()`` (a whole float without its ".0", as A1111). A value with
    a comma, a colon, a quote, a line break or surrounding spaces is written as a JSON string,
    as A1111 does, so that the line still parses. A key with one of those raises
    ``ValueError``. No settings, no settings line; an empty negative prompt, no negative line.
    """
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    pairs = [f"{_key(k)}: {_value(v)}" for k, v in settings.items() if v is not None]
    if pairs:
        lines.append(", ".join(pairs))
    return "\n".join(lines)


def embed(png: bytes, texts: Mapping[str, str]) -> bytes:
    """``png`` with one iTXt chunk per keyword -> text, before the first IDAT.

    Text chunks (tEXt, zTXt, iTXt) already there with one of these keywords are removed; every
    other chunk, and any bytes after IEND, are kept as they are. Raises ``ValueError`` with a
    clear message if ``png`` is not a well-formed PNG (bad signature, a chunk running past the
    end, a bad CRC, no IHDR first, no IDAT, no IEND) or a keyword is not a valid PNG keyword.
    """
    new = [_itxt(keyword, text) for keyword, text in texts.items()]
    keywords = {keyword.encode("latin-1") for keyword in texts}
    view = memoryview(png)
    parts: list[bytes | memoryview] = []
    kept = 0  # start of the run of bytes kept since the last cut
    for ctype, start, end in _chunks(view):
        if ctype == b"IDAT" and new:
            parts += [view[kept:start], *new]
            new, kept = [], start
        elif ctype in _TEXT_TYPES and _keyword_of(view, start, end) in keywords:
            parts.append(view[kept:start])
            kept = end
    parts.append(view[kept:])
    return b"".join(parts)


def read_texts(png: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG by keyword: for tests and `status`-style tools.

    A keyword found twice gives its last text. Raises ``ValueError`` on a malformed PNG (as
    ``embed``) or text chunk; undecodable bytes in a text become U+FFFD.
    """
    view = memoryview(png)
    texts: dict[str, str] = {}
    for ctype, start, end in _chunks(view):
        if ctype in _TEXT_TYPES:
            keyword, text = _decode(ctype, bytes(view[start + 8 : end - 4]))
            texts[keyword] = text
    return texts


def tag(
    png: bytes,
    prompt: str,
    settings: Mapping[str, object],
    record: Mapping[str, object],
    negative_prompt: str | None = None,
) -> bytes:
    """``png`` with the A1111 ``parameters`` chunk and the ``sora-watcher`` JSON chunk."""
    return embed(
        png,
        {
            PARAMETERS: parameters_text(prompt, settings, negative_prompt),
            RECORD: json.dumps(dict(record), ensure_ascii=False, sort_keys=True),
        },
    )


def _key(key: str) -> str:
    if not key or key != key.strip() or not key.isprintable() or _QUOTED.intersection(key):
        raise ValueError(f"setting name {key!r} cannot be written in A1111 parameters")
    return key


def _value(value: object) -> str:
    text = _number(value) if isinstance(value, float) else str(value)
    if text != text.strip() or not text.isprintable() or _QUOTED.intersection(text):
        return json.dumps(text, ensure_ascii=False).translate(_ESCAPED)
    return text


def _number(value: float) -> str:
    """A float as A1111 writes it: "CFG scale: 7", "7.5", never "7.0" (and no digit lost)."""
    return str(int(value)) if value.is_integer() else str(value)


def _chunks(view: memoryview) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk, IHDR to IEND, checked: ``view[start:end]`` is a chunk."""
    if view[:8] != _SIGNATURE:
        raise ValueError("not a PNG: bad signature")
    chunks: list[tuple[bytes, int, int]] = []
    pos, size = 8, len(view)
    while not chunks or chunks[-1][0] != b"IEND":
        if pos == size:
            raise ValueError(f"truncated PNG: ends at byte {size} without an IEND chunk")
        if pos + 12 > size:
            raise ValueError(f"truncated PNG: the chunk at byte {pos} runs past the end")
        length, ctype = struct.unpack_from(">I4s", view, pos)
        name = ctype.decode("latin-1")
        end = pos + 12 + length
        if not ctype.isalpha():
            raise ValueError(f"corrupt PNG: bad chunk type {name!r} at byte {pos}")
        if length > _MAX_LENGTH or end > size:
            raise ValueError(f"truncated PNG: the {name} chunk at byte {pos} runs past the end")
        if zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", view, end - 4)[0]:
            raise ValueError(f"corrupt PNG: bad CRC in the {name} chunk at byte {pos}")
        chunks.append((ctype, pos, end))
        pos = end
    if chunks[0][0] != b"IHDR":
        raise ValueError(f"corrupt PNG: the first chunk is {chunks[0][0]!r}, not IHDR")
    if not any(ctype == b"IDAT" for ctype, _, _ in chunks):
        raise ValueError("corrupt PNG: no IDAT chunk")
    return chunks


def _keyword_of(view: memoryview, start: int, end: int) -> bytes:
    """The keyword of the text chunk at ``view[start:end]`` (what comes before its first NUL)."""
    return bytes(view[start + 8 : min(end - 4, start + 8 + 80)]).split(b"\0", 1)[0]


def _itxt(keyword: str, text: str) -> bytes:
    """An uncompressed iTXt chunk, without language or translated keyword."""
    if (
        not 1 <= len(keyword) <= 79
        or keyword != keyword.strip(" ")
        or "  " in keyword
        or not all(" " <= c <= "~" or "\xa1" <= c <= "\xff" for c in keyword)
    ):
        raise ValueError(
            f"invalid PNG text keyword {keyword!r}: 1 to 79 printable Latin-1 characters, "
            "no leading, trailing or double space"
        )
    data = keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")
    if len(data) > _MAX_LENGTH:
        raise ValueError(f"text for {keyword!r} too long for a PNG chunk")
    crc = zlib.crc32(data, zlib.crc32(b"iTXt"))
    return struct.pack(">I4s", len(data), b"iTXt") + data + struct.pack(">I", crc)


def _decode(ctype: bytes, data: bytes) -> tuple[str, str]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk's data."""
    name = ctype.decode("latin-1")
    keyword, found, rest = data.partition(b"\0")
    if not found or not keyword:
        raise ValueError(f"malformed {name} chunk: no keyword")
    if ctype == b"tEXt":
        return keyword.decode("latin-1"), rest.decode("latin-1")
    if ctype == b"zTXt":
        return keyword.decode("latin-1"), _inflate(name, rest[:1], rest[1:]).decode("latin-1")
    fields = rest[2:].split(b"\0", 2)  # iTXt: flag, method, language, translated keyword, text
    if len(rest) < 2 or rest[0] > 1 or len(fields) < 3:
        raise ValueError(f"malformed iTXt chunk {keyword!r}")
    text = _inflate(name, rest[1:2], fields[2]) if rest[0] else fields[2]
    return keyword.decode("latin-1"), text.decode("utf-8", errors="replace")


def _inflate(name: str, method: bytes, data: bytes) -> bytes:
    if method != b"\0":
        raise ValueError(f"{name} chunk: unknown compression method {method!r}")
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, _MAX_INFLATED)
    except zlib.error as exc:
        raise ValueError(f"{name} chunk: corrupt compressed text ({exc})") from exc
    if inflater.unconsumed_tail:
        raise ValueError(f"{name} chunk: compressed text over {_MAX_INFLATED} bytes")
    if not inflater.eof:
        raise ValueError(f"{name} chunk: truncated compressed text")
    return text
