"""The site's conversation answers, read into typed values (pure code).

``GET /backend-api/conversation/{id}`` answers a tree of messages (``mapping``); the thread
shown is the path from the root to ``current_node``. What matters is its last exchange: the
last user message and what came after it (assistant text, tool messages). An image arrives
as a ``tool`` message of ``async_task_type`` "image_gen" whose parts are image pointers
(``sediment://file_...``); uploads use the same pointers, so only tool messages count.

Read leniently: a field of an odd type reads as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

IMAGE_GEN = "image_gen"
IMAGE_HINT = "picture_v2"  # the system hint of the "Create image" tool


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO 8601 text; None if unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def file_id(pointer: str) -> str:
    """``sediment://file_00ab`` (or ``file-service://file-XY``) -> ``file_00ab``."""
    return pointer.rsplit("://", 1)[-1]


@dataclass(frozen=True)
class ImagePart:
    """One image of a tool message: a pointer to a file, not the file."""

    file_id: str
    width: int | None
    height: int | None
    size_bytes: int | None
    gen_id: str | None

    @property
    def long_side(self) -> int | None:
        sides = [side for side in (self.width, self.height) if side is not None]
        return max(sides) if sides else None

    @classmethod
    def read(cls, raw: Any) -> ImagePart | None:
        part = _dict(raw)
        pointer = part.get("asset_pointer")
        if part.get("content_type") != "image_asset_pointer" or not isinstance(pointer, str):
            return None
        generation = _dict(_dict(part.get("metadata")).get("generation"))
        gen_id = generation.get("gen_id")
        return cls(
            file_id(pointer),
            _int(part.get("width")),
            _int(part.get("height")),
            _int(part.get("size_bytes")),
            gen_id if isinstance(gen_id, str) else None,
        )


@dataclass(frozen=True)
class Message:
    id: str
    role: str  # user, assistant, tool, system
    status: str | None  # in_progress, finished_successfully, finished_with_error ...
    text: str  # the text parts, joined
    images: tuple[ImagePart, ...]
    created: float | None  # Unix seconds
    metadata: dict[str, Any]

    @property
    def image_task(self) -> bool:
        """A tool message of an image generation (only these may carry our images)."""
        return self.role == "tool" and self.metadata.get("async_task_type") == IMAGE_GEN

    @property
    def redacted(self) -> bool:
        return bool(self.metadata.get("is_redacted"))

    @property
    def hints(self) -> list[str]:
        hints = self.metadata.get("system_hints")
        return [str(h) for h in hints] if isinstance(hints, list) else []

    @classmethod
    def read(cls, raw: Any) -> Message | None:
        message = _dict(raw)
        if not message:
            return None
        content = _dict(message.get("content"))
        parts = content.get("parts")
        parts = parts if isinstance(parts, list) else []
        images = tuple(p for p in map(ImagePart.read, parts) if p is not None)
        status = message.get("status")
        return cls(
            id=str(message.get("id", "")),
            role=str(_dict(message.get("author")).get("role", "")),
            status=status if isinstance(status, str) else None,
            text="\n".join(p for p in parts if isinstance(p, str)).strip(),
            images=images,
            created=timestamp(message.get("create_time")),
            metadata=_dict(message.get("metadata")),
        )


@dataclass(frozen=True)
class Exchange:
    """The last user message of a conversation and what came after it."""

    conversation_id: str
    title: str
    asked: Message | None
    answers: tuple[Message, ...]
    earlier_asks: tuple[Message, ...]  # the user messages before it, oldest first

    @property
    def tool_messages(self) -> list[Message]:
        return [m for m in self.answers if m.image_task]

    @property
    def assistant_text(self) -> str:
        return "\n".join(m.text for m in self.answers if m.role == "assistant" and m.text)

    @property
    def asked_text(self) -> str:
        """The last user message's words ("" when there is none)."""
        return self.asked.text if self.asked is not None else ""

    @property
    def first_ask(self) -> Message | None:
        return self.earlier_asks[0] if self.earlier_asks else self.asked


def thread(body: Any) -> list[Message]:
    """The messages shown, oldest first: from ``current_node`` up to the root."""
    mapping = _dict(_dict(body).get("mapping"))
    node_id = _dict(body).get("current_node")
    if node_id not in mapping:  # no current node: every message, by time
        messages = [Message.read(_dict(node).get("message")) for node in mapping.values()]
        found = [m for m in messages if m is not None]
        return sorted(found, key=lambda m: m.created or 0.0)
    path: list[Message] = []
    seen: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = _dict(mapping[node_id])
        message = Message.read(node.get("message"))
        if message is not None:
            path.append(message)
        node_id = node.get("parent")
    return path[::-1]


def last_exchange(body: Any, conversation_id: str) -> Exchange:
    messages = [m for m in thread(body) if m.role in ("user", "assistant", "tool")]
    asks = [i for i, m in enumerate(messages) if m.role == "user"]
    title = _dict(body).get("title")
    title = title if isinstance(title, str) else ""
    if not asks:
        return Exchange(conversation_id, title, None, tuple(messages), ())
    last = asks[-1]
    earlier = tuple(messages[i] for i in asks[:-1])
    return Exchange(conversation_id, title, messages[last], tuple(messages[last + 1 :]), earlier)


@dataclass(frozen=True)
class Listed:
    """A conversation of the list (``GET /backend-api/conversations``)."""

    id: str
    title: str
    created: float | None


def listed(body: Any) -> list[Listed]:
    items = _dict(body).get("items")
    found = []
    for raw in items if isinstance(items, list) else []:
        item = _dict(raw)
        if isinstance(item.get("id"), str):
            title = item.get("title")
            found.append(
                Listed(
                    item["id"],
                    title if isinstance(title, str) else "",
                    timestamp(item.get("create_time")),
                )
            )
    return found
