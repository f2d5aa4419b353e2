"""The conversations we wait on, and what each look at one decides (a state machine).

A look reads the conversation's last exchange (``classify.outcome``) and then marks it done,
waits on, or asks again in the same conversation, as a person would:

    pending                 wait on, until the deadline
    images                  done once they stayed for SETTLE_SECONDS (a withdrawal comes fast)
    text, no image          if the answer's stream announced an image: wait on; else after
                            ``text_only_grace``, ask once more firmly (then it is done)
    the limit, now reset    ask again
    failed, and reported    ask again (the core retries a generation that failed)
    anything else           done: ``collect`` raises what it means

After asking again, the conversation may still be read without our new message for a moment:
until it shows a newer user message than the one asked over, nothing is decided from it (or
every look would ask again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loguru import logger

from sora_driver.chatgpt import classify
from sora_driver.chatgpt.classify import Images, Limited, Outcome, Pending, TextOnly
from sora_driver.chatgpt.conversation import Exchange
from sora_driver.chatgpt.wording import FIRMLY, firmer
from sora_watcher.errors import Interrupted

SETTLE_SECONDS = 1.5  # an image seen finished may still be withdrawn: looked at again after
# A text answer may yet be followed by the image's tool message, and asking again costs an
# attempt of the plan's allowance: without the stream's word that an image is coming, the
# firmer request waits this long (peers wait minutes for an image; 30 s is a patient person).
TEXT_ONLY_SECONDS = 30.0
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 1.0, 3.0  # peers poll every 3-5 s; sooner while young
Clock = Callable[[], float]


class Conversations(Protocol):
    """What the follower needs of the site."""

    def exchange(self, conversation_id: str) -> Exchange: ...
    def ask_again(self, conversation_id: str, text: str) -> None: ...
    def image_announced(self, conversation_id: str) -> bool: ...


@dataclass
class Followed:
    """A conversation we wait on: its deadline and what we have seen of it."""

    deadline: float  # clock()
    started: float
    next_look: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)  # outcome kind -> first seen at
    outcome: Outcome = field(default_factory=Pending)
    done: bool = False
    asked_over: str | None = None  # the user message we asked again after, while it is last
    announced: bool = False  # the answer's stream said an image is coming
    exchange: Exchange | None = None  # the last look's, from which ``outcome`` was decided


class Follower:
    def __init__(
        self,
        site: Conversations,
        timeout: float,
        stop: threading.Event,
        text_only_grace: float = TEXT_ONLY_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.site = site
        self.timeout = timeout  # bound on one generation's wait, from its send
        self.stop = stop
        self.text_only_grace = text_only_grace
        self.clock = clock
        self.followed: dict[str, Followed] = {}
        self.reported: set[str] = set()  # conversations whose failure collect() raised

    def follow(self, conversation_id: str) -> Followed:
        now = self.clock()
        followed = Followed(now + self.timeout, now)
        self.followed[conversation_id] = followed
        return followed

    def wait_for_done(self, task_ids: list[str], wait: float) -> list[str]:
        """The conversations that came to something, looking at each when due; waits up to
        ``wait`` seconds for one (on the stop event)."""
        until = self.clock() + wait
        while True:
            for task_id in task_ids:
                followed = self.followed.get(task_id) or self.follow(task_id)
                if not followed.done and self.clock() >= followed.next_look:
                    self.look(task_id, followed)
            done = [t for t in task_ids if self.followed[t].done]
            now = self.clock()
            if done or now >= until:
                return done
            next_look = min(self.followed[t].next_look for t in task_ids)
            if self.stop.wait(max(min(next_look, until) - now, 0.01)):
                raise Interrupted()

    def look(self, task_id: str, followed: Followed) -> None:
        """Read the conversation; mark it done, or ask again, or wait on."""
        exchange = self.site.exchange(task_id)
        now = self.clock()
        age = now - followed.started
        followed.next_look = now + min(max(0.1 * age, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
        found = self._outcome(task_id, exchange, followed)
        first_seen = followed.seen.setdefault(type(found).__name__, now)
        followed.outcome, followed.exchange = found, exchange
        if isinstance(found, Pending):
            followed.done = now >= followed.deadline
        elif isinstance(found, Images):
            followed.done = now - first_seen >= SETTLE_SECONDS
            followed.next_look = min(followed.next_look, first_seen + SETTLE_SECONDS)
        elif isinstance(found, TextOnly) and not found.asked_firmly:
            if now - first_seen >= self.text_only_grace:
                logger.info("{}: an answer in text, no image; asking once more", task_id)
                first = exchange.first_ask.text if exchange.first_ask is not None else ""
                self._ask_again(task_id, exchange, firmer(first))
            else:
                followed.next_look = min(followed.next_look, first_seen + self.text_only_grace)
        elif isinstance(found, Limited) and limit_over(found):
            logger.info("{}: the limit has reset; asking again", task_id)
            self._ask_again(task_id, exchange, exchange.asked_text)
        elif isinstance(found, classify.Failed) and task_id in self.reported:
            logger.info("{}: the image generation failed before; asking again", task_id)
            self.reported.discard(task_id)
            self._ask_again(task_id, exchange, exchange.asked_text)
        else:
            followed.done = True

    def _outcome(self, task_id: str, exchange: Exchange, followed: Followed) -> Outcome:
        asked = exchange.asked.id if exchange.asked is not None else None
        if followed.asked_over is not None and asked == followed.asked_over:
            return Pending("our new request is not in the conversation yet")
        followed.asked_over = None
        found = classify.outcome(exchange, FIRMLY)
        if isinstance(found, TextOnly):
            followed.announced = followed.announced or self.site.image_announced(task_id)
            if followed.announced:
                return Pending("the answer's stream announced an image")
        return found

    def _ask_again(self, task_id: str, exchange: Exchange, text: str) -> None:
        """In the same conversation: its id, in the journal, stays the task's. Followed
        afresh, knowing which user message was last before (set before sending: a send that
        fails half-way may still have gone)."""
        followed = self.follow(task_id)
        followed.asked_over = exchange.asked.id if exchange.asked is not None else None
        self.site.ask_again(task_id, text)


def limit_over(limited: Limited) -> bool:
    """Whether the stated reset has passed (Unix time: the site states it in its clock)."""
    return time.time() >= limited.reset_at + classify.RESET_SLACK_SECONDS
