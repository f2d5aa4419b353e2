"""The answer to `POST /backend-api/f/conversation` as the real site streams it (delta
encoding "v1"): the conversation id first, then each new message as an "add" and its text as
"append" patches, then the end markers and `[DONE]`.

The stream of an image request ends while its tool message is still "in_progress": the image
arrives on the conversation later (see conversations.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .conversations import Node, Sent, message_json

TEXT_PART = "/message/content/parts/0"
WORDS_PER_CHUNK = 3
CHUNK_PAUSE = 0.03  # seconds between two pieces of streamed text
MAX_CHUNKS = 12

# (event name or None, data: JSON value or the literal "[DONE]", pause after it in seconds)
Event = tuple[str | None, Any, float]
DONE = "[DONE]"


def encode(name: str | None, data: Any) -> bytes:
    text = data if data == DONE else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    size = max(WORDS_PER_CHUNK, -(-len(words) // MAX_CHUNKS))
    pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [piece if i == 0 else " " + piece for i, piece in enumerate(pieces)]


def _message_events(node: Node, conversation_id: str, now: float, index: int) -> Iterator[Event]:
    message = message_json(node, now)
    assert message is not None
    content = message["content"]
    streamed_text = content.get("content_type") == "text" and node.role == "assistant"
    if not streamed_text:
        yield "delta", {"p": "", "o": "add", "v": _added(message, conversation_id), "c": index}, 0
        return
    started = {**message, "status": "in_progress", "content": {**content, "parts": [""]}}
    yield "delta", {"p": "", "o": "add", "v": _added(started, conversation_id), "c": index}, 0
    for piece in _chunks(content["parts"][0]):
        yield "delta", {"p": TEXT_PART, "o": "append", "v": piece}, CHUNK_PAUSE
    ending = [
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        {"p": "/message/end_turn", "o": "replace", "v": True},
    ]
    yield "delta", {"p": "", "o": "patch", "v": ending}, 0


def _added(message: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    return {"message": message, "conversation_id": conversation_id, "error": None}


def events(sent: Sent, now: float) -> Iterator[Event]:
    conversation_id = sent.conversation.id
    user_message = message_json(sent.user_node, now)
    yield "delta_encoding", "v1", 0
    yield None, {"type": "resume_conversation_token", "conversation_id": conversation_id}, 0
    input_message = {"type": "input_message", "input_message": user_message}
    yield None, {**input_message, "conversation_id": conversation_id}, 0
    marker = {"type": "message_marker", "conversation_id": conversation_id}
    first = sent.answer[0].id if sent.answer else sent.user_node.id
    yield None, {**marker, "message_id": first, "marker": "user_visible_token"}, 0
    for index, node in enumerate(sent.answer):
        yield from _message_events(node, conversation_id, now, index)
    yield None, {"type": "message_stream_complete", "conversation_id": conversation_id}, 0
    if sent.new_conversation:
        title = {"type": "title_generation", "title": sent.conversation.title}
        yield None, {**title, "conversation_id": conversation_id}, 0
    yield None, DONE, 0
