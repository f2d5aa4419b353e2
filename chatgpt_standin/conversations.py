"""The conversation store, and images that arrive on a conversation after its stream ended.

Like sora_standin's tasks, everything that happens later is decided at the send and read off
the clock: a message becomes visible at its `created` time, and an image job's stage (waiting,
preview, final, failed, withdrawn) is a pure function of the time. There is no worker thread to
start, stop or race with; every read builds the conversation as it is now.

A send adds one chain of nodes under the conversation's current node:
    user -> assistant (the text answer)                       a plain answer
    user -> assistant (tool call, hidden) -> tool (the image) [-> assistant text ...]
The texts that come with a failure or a withdrawal are nodes created in the future.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from . import images

ROOT_ID = "client-created-root"
IMAGE_TOOL = "t2uay3k.sj1i4kz"  # the real site's name for its image tool
GEN_FAILED_TEXT = "Image generation failed"
WITHDRAWN_TEXT = "This image was removed because it may violate our content policies."

Stage = Literal["waiting", "preview", "final", "failed", "withdrawn"]
FileKind = Literal["preview", "final"]


def new_file_id() -> str:
    return "file_" + secrets.token_hex(16)


@dataclass(frozen=True)
class ImagePlan:
    """What the server decided for an image request (scenarios included)."""

    prompt: str
    title: str
    size: tuple[int, int]
    count: int
    total: float  # seconds from the send to the final image
    slow: float | None = None  # slow_image: the final comes this long after the preview
    outcome: str | None = None  # None, "gen_failed" or "withdrawn"
    withdraw_after: float = 0.5
    busy_text: str | None = None


@dataclass(frozen=True)
class ImageJob:
    plan: ImagePlan
    task_id: str
    preview_at: float
    final_at: float
    preview_ids: tuple[str, ...]
    final_ids: tuple[str, ...]
    gen_ids: tuple[str, ...]

    @property
    def withdraw_at(self) -> float | None:
        if self.plan.outcome != "withdrawn":
            return None
        return self.final_at + self.plan.withdraw_after

    def stage(self, now: float) -> Stage:
        if now < self.preview_at:
            return "waiting"
        if now < self.final_at:
            return "preview"
        if self.plan.outcome == "gen_failed":
            return "failed"
        withdraw_at = self.withdraw_at
        if withdraw_at is not None and now >= withdraw_at:
            return "withdrawn"
        return "final"

    def file_available(self, kind: FileKind, now: float) -> bool:
        stage = self.stage(now)
        if kind == "final":
            return stage == "final"
        return stage in ("preview", "final")


@dataclass
class Node:
    id: str
    parent: str | None
    role: str  # "user", "assistant", "tool"
    created: float  # also when it becomes visible
    content: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    recipient: str = "all"
    author_name: str | None = None
    job: ImageJob | None = None


@dataclass
class Conversation:
    id: str
    user: str
    title: str
    created: float
    nodes: dict[str, Node] = field(default_factory=dict)  # in creation order
    sends: list[list[str]] = field(default_factory=list)  # each send's chain of node ids

    def visible(self, now: float) -> list[Node]:
        return [node for node in self.nodes.values() if node.created <= now]

    def current_node(self, now: float) -> str:
        """The last visible node of the latest send's chain."""
        if not self.sends:
            return ROOT_ID
        chain = [self.nodes[i] for i in self.sends[-1] if self.nodes[i].created <= now]
        return chain[-1].id if chain else ROOT_ID

    def update_time(self, now: float) -> float:
        return max(node.created for node in self.visible(now))


@dataclass(frozen=True)
class FileRef:
    conversation_id: str
    user: str
    job: ImageJob
    index: int
    kind: FileKind


@dataclass(frozen=True)
class Sent:
    """One send, as the stream tells it: the conversation and the nodes made at the send."""

    conversation: Conversation
    user_node: Node
    answer: list[Node]  # visible now: streamed
    new_conversation: bool


def text_content(text: str) -> dict[str, Any]:
    return {"content_type": "text", "parts": [text]}


class Store:
    """Every conversation of every user; safe to use from the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conversations: dict[str, Conversation] = {}
        self._files: dict[str, FileRef] = {}
        self._jobs: list[ImageJob] = []

    # --- sending ----------------------------------------------------------------------------

    def send(
        self,
        user: str,
        conversation_id: str | None,
        message_id: str,
        text: str,
        hints: list[str],
        answer_text: str | None,
        image: ImagePlan | None,
        title: str,
        now: float,
    ) -> Sent:
        """Add a user message and its answer: a text (`answer_text`), an image job, or both
        (the text then comes after the tool message, as the busy notice does).

        Raises KeyError for a conversation this user does not have.
        """
        with self._lock:
            conversation, new = self._conversation_for(user, conversation_id, title, now)
            parent = conversation.current_node(now)
            user_node = Node(
                message_id if message_id not in conversation.nodes else str(uuid.uuid4()),
                parent,
                "user",
                now,
                text_content(text),
                {"system_hints": list(hints)} if hints else {},
            )
            # The rest of the chain hangs under the user message (linked below).
            chain = [user_node]
            job = None
            if image is not None:
                job = self._new_job(conversation.id, user, image, now)
                chain += _image_nodes(job, now)
            if answer_text is not None:
                chain.append(_node("assistant", now, text_content(answer_text)))
            if job is not None:
                chain += _later_texts(job)
            for previous, node in itertools.pairwise(chain):
                node.parent = previous.id
            # New containers rather than in-place changes: readers iterate without the lock.
            conversation.nodes = {**conversation.nodes, **{node.id: node for node in chain}}
            conversation.sends = [*conversation.sends, [node.id for node in chain]]
            answer = [node for node in chain[1:] if node.created <= now]
            return Sent(conversation, user_node, answer, new)

    def _conversation_for(
        self, user: str, conversation_id: str | None, title: str, now: float
    ) -> tuple[Conversation, bool]:
        if conversation_id is not None:
            found = self._conversations.get(conversation_id)
            if found is None or found.user != user:
                raise KeyError(conversation_id)
            return found, False
        conversation = Conversation(str(uuid.uuid4()), user, title, now)
        conversation.nodes[ROOT_ID] = Node(ROOT_ID, None, "system", now, text_content(""))
        self._conversations[conversation.id] = conversation
        return conversation, True

    def _new_job(self, conversation_id: str, user: str, plan: ImagePlan, now: float) -> ImageJob:
        preview_at = now + plan.total / 2
        final_at = preview_at + plan.slow if plan.slow is not None else now + plan.total
        job = ImageJob(
            plan,
            task_id="task_" + secrets.token_hex(12),
            preview_at=preview_at,
            final_at=final_at,
            preview_ids=tuple(new_file_id() for _ in range(plan.count)),
            final_ids=tuple(new_file_id() for _ in range(plan.count)),
            gen_ids=tuple("gen_" + secrets.token_hex(10) for _ in range(plan.count)),
        )
        self._jobs.append(job)
        for index in range(plan.count):
            self._files[job.preview_ids[index]] = FileRef(
                conversation_id, user, job, index, "preview"
            )
            self._files[job.final_ids[index]] = FileRef(conversation_id, user, job, index, "final")
        return job

    # --- reading ----------------------------------------------------------------------------

    def get(self, user: str, conversation_id: str) -> Conversation | None:
        with self._lock:
            found = self._conversations.get(conversation_id)
        return found if found is not None and found.user == user else None

    def listing(self, user: str, now: float) -> list[Conversation]:
        """This user's conversations, the most recently updated first."""
        with self._lock:
            mine = [c for c in self._conversations.values() if c.user == user]
        return sorted(mine, key=lambda c: c.update_time(now), reverse=True)

    def file(self, file_id: str) -> FileRef | None:
        with self._lock:
            return self._files.get(file_id)

    def images_made(self, now: float) -> int:
        """Final images made so far (a withdrawn image was made, then taken back)."""
        with self._lock:
            jobs = list(self._jobs)
        return sum(j.plan.count for j in jobs if j.stage(now) in ("final", "withdrawn"))

    def recent_images(self, user: str, now: float) -> list[tuple[Conversation, Node, int]]:
        """(conversation, tool node, index) of this user's final images, newest first."""
        found = []
        for conversation in self.listing(user, now):
            for node in conversation.visible(now):
                if node.job is not None and node.job.stage(now) == "final":
                    found += [(conversation, node, i) for i in range(node.job.plan.count)]
        return sorted(found, key=lambda item: -(item[1].job.final_at if item[1].job else 0))


def _node(role: str, created: float, content: dict[str, Any], **extra: Any) -> Node:
    """A node whose parent is set when its chain is linked."""
    return Node(str(uuid.uuid4()), None, role, created, content, **extra)


def _image_nodes(job: ImageJob, now: float) -> list[Node]:
    """The hidden call to the image tool, and the tool message the image arrives on."""
    plan = job.plan
    width, height = plan.size
    call = {"prompt": plan.prompt, "size": f"{width}x{height}", "n": plan.count}
    code = {"content_type": "code", "language": "json", "text": json.dumps(call)}
    tool_call = _node("assistant", now, code, recipient=IMAGE_TOOL)
    metadata = {
        "image_gen_async": True,
        "image_gen_task_id": job.task_id,
        "async_task_type": "image_gen",
        "image_gen_title": plan.title,
        "trigger_async_ux": True,
    }
    content = {"content_type": "multimodal_text", "parts": []}
    tool = _node("tool", now, content, metadata=metadata, job=job, author_name=IMAGE_TOOL)
    return [tool_call, tool]


def _later_texts(job: ImageJob) -> list[Node]:
    """The text a failed or withdrawn image brings, created when that happens."""
    if job.plan.outcome == "gen_failed":
        return [_node("assistant", job.final_at, text_content(GEN_FAILED_TEXT))]
    withdraw_at = job.withdraw_at
    if withdraw_at is not None:
        return [_node("assistant", withdraw_at, text_content(WITHDRAWN_TEXT))]
    return []


# --- JSON shapes ----------------------------------------------------------------------------


def image_part(job: ImageJob, index: int, kind: FileKind) -> dict[str, Any]:
    size = job.plan.size if kind == "final" else images.preview_size(job.plan.size)
    file_id = (job.final_ids if kind == "final" else job.preview_ids)[index]
    data = file_bytes(job, index, kind)
    generation = {
        "gen_id": job.gen_ids[index],
        "gen_size": "image" if kind == "final" else "xlimage_preview",
        "seed": None,
        "parent_gen_id": None,
        "width": size[0],
        "height": size[1],
        "transparent_background": False,
        "serialization_title": "Image Generation Output",
    }
    return {
        "content_type": "image_asset_pointer",
        "asset_pointer": f"sediment://{file_id}",
        "size_bytes": len(data),
        "width": size[0],
        "height": size[1],
        "fovea": None,
        "metadata": {
            "dalle": None,
            "gizmo": None,
            "generation": generation,
            "container_pixel_height": size[1],
            "container_pixel_width": size[0],
            "sanitized": False,
            "asset_pointer_link": None,
            "watermarked_asset_pointer": None,
        },
    }


def file_bytes(job: ImageJob, index: int, kind: FileKind) -> bytes:
    if kind == "final":
        return images.final_png(job.plan.prompt, index, job.plan.size)
    return images.preview_jpeg(job.plan.prompt, index, job.plan.size)


def _tool_state(node: Node, now: float) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(status, content, metadata) of an image tool message at `now`."""
    assert node.job is not None
    job, metadata = node.job, dict(node.metadata)
    stage = job.stage(now)
    parts: list[dict[str, Any]] = []
    status = "in_progress"
    if stage == "preview":
        parts = [image_part(job, i, "preview") for i in range(job.plan.count)]
    elif stage == "final":
        parts = [image_part(job, i, "final") for i in range(job.plan.count)]
        status = "finished_successfully"
    elif stage == "failed":
        status = "finished_with_error"
        metadata["image_gen_error"] = True
    elif stage == "withdrawn":
        status = "finished_successfully"
        metadata["is_redacted"] = True
    return status, {"content_type": "multimodal_text", "parts": parts}, metadata


def message_json(node: Node, now: float) -> dict[str, Any] | None:
    if node.id == ROOT_ID:
        return None
    status, content, metadata = "finished_successfully", node.content, node.metadata
    if node.job is not None:
        status, content, metadata = _tool_state(node, now)
    return {
        "id": node.id,
        "author": {"role": node.role, "name": node.author_name, "metadata": {}},
        "create_time": node.created,
        "update_time": None,
        "content": content,
        "status": status,
        "end_turn": node.role == "assistant" and node.recipient == "all",
        "weight": 1.0,
        "metadata": metadata,
        "recipient": node.recipient,
        "channel": None,
    }


def conversation_json(conversation: Conversation, now: float) -> dict[str, Any]:
    visible = conversation.visible(now)
    children: dict[str, list[str]] = {node.id: [] for node in visible}
    for node in visible:
        if node.parent is not None and node.parent in children:
            children[node.parent].append(node.id)
    mapping = {
        node.id: {
            "id": node.id,
            "parent": node.parent,
            "children": children[node.id],
            "message": message_json(node, now),
        }
        for node in visible
    }
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "create_time": conversation.created,
        "update_time": conversation.update_time(now),
        "mapping": mapping,
        "current_node": conversation.current_node(now),
        "moderation_results": [],
        "is_archived": False,
        "default_model_slug": "gpt-4o",
        "safe_urls": [],
    }
