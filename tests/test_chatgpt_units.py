"""The chatgpt-web backend's parts without a browser: the site's words classified, reset
times read, conversations parsed, the state machine that follows a conversation (with a fake
site that records what is sent), the interval between sends, its settings."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sora_driver.chatgpt.api import ChatApi
from sora_driver.chatgpt.chat_page import ChatPage
from sora_driver.chatgpt.classify import (
    Failed,
    Images,
    ImageWithdrawn,
    Limited,
    NoImageGiven,
    Pending,
    Refused,
    TextOnly,
    Withdrawn,
    http_error,
    limit_error,
    outcome,
    outcome_error,
    reset_time,
)
from sora_driver.chatgpt.conversation import Exchange, last_exchange, listed
from sora_driver.chatgpt.driver import ChatGptDriver
from sora_driver.chatgpt.following import Follower
from sora_driver.chatgpt.pacing import Pacer, last_send_file
from sora_driver.chatgpt.settings import read_settings
from sora_driver.chatgpt.wording import FIRMLY, firmer, is_request_for, request_text
from sora_driver.errors import CloudflareChallenge, PageError, SessionExpired
from sora_watcher.backends.base import JobOptions
from sora_watcher.errors import (
    AccessDenied,
    ContentRejected,
    GenerationTimeout,
    Interrupted,
    RateLimited,
)

SAID = datetime(2026, 9, 1, 9, 0, 0).astimezone()
LIMIT = (
    "You've hit the Plus plan limit for image generations requests. You can create more "
    "images when the limit resets {}."
)


def node(nid: str, parent: str | None, role: str, parts: list[Any], **extra: Any) -> Any:
    message = {
        "id": nid,
        "author": {"role": role},
        "create_time": extra.pop("create_time", 1000.0),
        "status": extra.pop("status", "finished_successfully"),
        "content": {"content_type": extra.pop("content_type", "text"), "parts": parts},
        "metadata": extra.pop("metadata", {}),
    }
    return nid, {"id": nid, "parent": parent, "children": [], "message": message}


def conversation(*nodes: Any, title: str = "A title") -> dict[str, Any]:
    mapping = dict(nodes)
    return {
        "conversation_id": "c1",
        "title": title,
        "current_node": nodes[-1][0],
        "mapping": mapping,
    }


def image_part(file_id: str = "file_00ab", size: int = 1024) -> dict[str, Any]:
    return {
        "content_type": "image_asset_pointer",
        "asset_pointer": f"sediment://{file_id}",
        "width": size,
        "height": size,
        "size_bytes": 12345,
        "metadata": {"generation": {"gen_id": "g1", "gen_size": "image"}},
    }


PREFIX = "Generate an image:"
ASK = node("u1", "root", "user", [f"{PREFIX} a cat"], metadata={"system_hints": ["picture_v2"]})
IMAGE_GEN = {"async_task_type": "image_gen"}


def exchange_of(*answers: Any, title: str = "A title", ask: Any = ASK) -> Any:
    root: Any = ("root", {"id": "root", "parent": None, "children": [], "message": None})
    return last_exchange(conversation(root, ask, *answers, title=title), "c1")


# -- reset times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "seconds"),
    [
        ("in 10 hours and 25 minutes", 10 * 3600 + 25 * 60),
        ("in 3 seconds", 3),
        ("in 1 hour", 3600),
        ("in 2 days, 1 hour and 5 minutes", 2 * 86400 + 3600 + 300),
    ],
)
def test_a_limit_resets_after_the_delay_its_words_state(words: str, seconds: int) -> None:
    assert reset_time(LIMIT.format(words), SAID) == SAID.timestamp() + seconds


@pytest.mark.parametrize(
    ("words", "at"),
    [
        ("tomorrow at 14:33", datetime(2026, 9, 2, 14, 33)),
        ("at 14:33", datetime(2026, 9, 1, 14, 33)),
        ("at 8:15", datetime(2026, 9, 2, 8, 15)),  # already past today: tomorrow
        ("tomorrow at 2:33 PM", datetime(2026, 9, 2, 14, 33)),
    ],
)
def test_a_limit_resets_at_the_time_its_words_state(words: str, at: datetime) -> None:
    assert reset_time(LIMIT.format(words), SAID) == at.astimezone().timestamp()


def test_a_limit_without_a_time_and_the_pause_it_makes() -> None:
    assert (
        reset_time("You've hit the Free plan limit for image generations requests.", SAID) is None
    )
    error = limit_error(Limited("w", SAID.timestamp() + 3), SAID.timestamp())
    assert isinstance(error, RateLimited) and 3 <= (error.resume_after or 0) <= 5


# -- what an exchange came to ------------------------------------------------------------------


def test_only_a_finished_tool_message_gives_images_never_the_preview() -> None:
    preview = node(
        "t1",
        "u1",
        "tool",
        [image_part("file_prev", 256)],
        status="in_progress",
        content_type="multimodal_text",
        metadata=IMAGE_GEN,
    )
    assert isinstance(outcome(exchange_of(preview), FIRMLY), Pending)
    final = node(
        "t1",
        "u1",
        "tool",
        [image_part("file_final")],
        content_type="multimodal_text",
        metadata=IMAGE_GEN,
    )
    found = outcome(exchange_of(final), FIRMLY)
    assert isinstance(found, Images)
    assert [(p.file_id, p.width, p.height) for p in found.parts] == [("file_final", 1024, 1024)]


def test_an_uploaded_image_is_not_a_generated_one() -> None:
    upload = node(
        "a1",
        "u1",
        "assistant",
        [image_part()],
        content_type="multimodal_text",
        status="in_progress",
    )
    assert isinstance(outcome(exchange_of(upload), FIRMLY), Pending)


def test_the_sites_failures_by_their_words() -> None:
    def said(text: str, title: str = "A title", **extra: Any) -> Any:
        return outcome(
            exchange_of(node("a1", "u1", "assistant", [text], **extra), title=title), FIRMLY
        )

    limited = said(LIMIT.format("in 3 seconds"), create_time=SAID.timestamp())
    assert isinstance(limited, Limited) and limited.reset_at == SAID.timestamp() + 3
    assert said("I can't assist with that request.", "Request Denied") == Refused(
        "I can't assist with that request."
    )
    assert isinstance(said("This request may violate our content policies."), Refused)
    assert isinstance(said("Image generation failed"), Failed)
    assert isinstance(
        said(
            "Lots of people are creating images right now, so this might take "
            "a bit. We'll notify you when your image is ready."
        ),
        Pending,
    )
    assert said("Here is a description of a cat: ...") == TextOnly(
        "Here is a description of a cat: ...", asked_firmly=False
    )
    assert isinstance(said("Here is a d", status="in_progress"), Pending)


def test_a_text_answer_after_the_firmer_request_is_the_prompts_fault() -> None:
    firm = node("u2", "a1", "user", [f"{FIRMLY} {PREFIX} a cat"])
    earlier = node("a1", "u1", "assistant", ["Here is a description"])
    again = node("a2", "u2", "assistant", ["Still a description"])
    root: Any = ("root", {"id": "root", "parent": None, "children": [], "message": None})
    exchange = last_exchange(conversation(root, ASK, earlier, firm, again), "c1")
    assert exchange.first_ask is not None and exchange.first_ask.text == f"{PREFIX} a cat"
    found = outcome(exchange, FIRMLY)
    assert found == TextOnly("Still a description", asked_firmly=True)
    assert isinstance(outcome_error(found, "c1"), NoImageGiven)
    assert isinstance(outcome_error(found, "c1"), ContentRejected)


def test_a_withdrawn_image_and_a_failed_generation() -> None:
    redacted = node(
        "t1",
        "u1",
        "tool",
        [],
        content_type="multimodal_text",
        metadata={**IMAGE_GEN, "is_redacted": True},
    )
    words = node(
        "a2",
        "t1",
        "assistant",
        ["This image was removed because it may violate our content policies."],
    )
    found = outcome(exchange_of(redacted, words), FIRMLY)
    assert isinstance(found, Withdrawn) and "removed" in found.words
    assert isinstance(outcome_error(found, "c1"), ImageWithdrawn)
    failed = node("t1", "u1", "tool", [], status="finished_with_error", metadata=IMAGE_GEN)
    assert isinstance(outcome(exchange_of(failed), FIRMLY), Failed)


def test_http_answers() -> None:
    assert isinstance(http_error(401, '{"detail": {"code": "token_expired"}}', "x"), SessionExpired)
    suspended = http_error(403, '{"detail": {"code": "account_deactivated"}}', "x")
    assert isinstance(suspended, AccessDenied)
    challenge = "<title>Just a moment...</title><script src='/cdn-cgi/challenge-platform/x'>"
    assert isinstance(http_error(403, challenge, "x"), CloudflareChallenge)
    assert isinstance(http_error(429, '{"detail": "Too many requests"}', "x"), RateLimited)


def test_the_conversation_list() -> None:
    body = {
        "items": [
            {"id": "c2", "title": "B", "create_time": "2026-09-01T09:00:00Z"},
            {"id": "c1", "title": "A", "create_time": 1000.5},
            {"title": "no id"},
        ]
    }
    assert [(c.id, c.created) for c in listed(body)] == [
        ("c2", datetime.fromisoformat("2026-09-01T09:00:00+00:00").timestamp()),
        ("c1", 1000.5),
    ]


# -- what is sent ------------------------------------------------------------------------------


def test_the_request_asks_in_words_for_what_the_site_has_no_control_for() -> None:
    assert request_text(PREFIX, "a cat", JobOptions()) == "Generate an image: a cat"
    portrait = request_text(PREFIX, "a cat", JobOptions("2:3", 2))
    assert portrait == "Generate an image: a cat (portrait, 2:3; 2 images)"
    assert is_request_for(portrait, PREFIX, "a cat")
    assert not is_request_for("Generate an image: a cat in a hat", PREFIX, "a cat")


def test_the_interval_is_really_waited_and_a_stop_cuts_it_short() -> None:
    pacer, stop = Pacer(None), threading.Event()
    pacer.wait_turn(0.3, stop)  # nothing sent yet: at once
    started = time.monotonic()  # before sent(): the interval counts from the send's own time
    pacer.sent()
    pacer.wait_turn(0.3, stop)
    assert time.monotonic() - started >= 0.25
    pacer.sent()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        pacer.wait_turn(30, stop)  # a stop ends the wait at once
    assert time.monotonic() - started < 10


def test_the_interval_survives_a_restart(tmp_path: Path) -> None:
    now = [1000.0]
    noted = last_send_file(tmp_path / "session.json")
    first = Pacer(noted, clock=lambda: now[0])
    assert first.due_in(60) == 0
    first.sent()
    now[0] += 45
    after_restart = Pacer(noted, clock=lambda: now[0])  # a new process: the same file
    assert after_restart.due_in(60) == 15
    now[0] -= 3600  # a clock set back never means waiting longer than the interval
    assert after_restart.due_in(60) == 60
    noted.write_text("garbage")
    assert Pacer(noted).due_in(60) == 0


def test_the_settings_reuse_the_web_sections_shared_options(tmp_path: Any) -> None:
    chat = read_settings(
        {}, {"SORA_SESSION_FILE": "s.json", "SORA_MIN_INTERVAL": "0"}, tmp_path, debug=False
    )
    assert (chat.url, chat.prefix, chat.min_interval) == ("https://chatgpt.com", PREFIX, 0)
    assert chat.session_file == tmp_path / "s.json" and chat.headless


# -- more of the site's words ---------------------------------------------------------------------


def said_by_assistant(text: str, **extra: Any) -> Any:
    return outcome(exchange_of(node("a1", "u1", "assistant", [text], **extra)), FIRMLY)


def test_only_the_plans_limit_wording_pauses_the_queue() -> None:
    assert isinstance(said_by_assistant("Here is a car that hit the speed limit."), TextOnly)
    limited = said_by_assistant(
        "You've hit the Free plan limit. Try again later.", create_time=SAID.timestamp()
    )
    assert isinstance(limited, Limited)
    assert limited.reset_at == SAID.timestamp() + 3600  # no time stated: an hour, not a minute
    error = limit_error(limited, SAID.timestamp())
    assert (error.resume_after or 0) >= 3600


def test_the_structured_limit_hint() -> None:
    hint = {
        "limits_progress": [
            {"feature_name": "deep_research", "remaining": 0, "resets_after": 10},
            {"feature_name": "image_gen", "remaining": 0, "resets_after": "2026-09-01T12:00:00Z"},
        ]
    }
    limited = said_by_assistant("Sorry.", metadata=hint)
    assert isinstance(limited, Limited)
    assert limited.reset_at == datetime.fromisoformat("2026-09-01T12:00:00+00:00").timestamp()
    plenty = {"limits_progress": [{"feature_name": "image_gen", "remaining": 12}]}
    assert isinstance(said_by_assistant("A description", metadata=plenty), TextOnly)


def test_cannot_make_images_directly_is_text_not_a_refusal() -> None:
    words = "I can't generate images directly, but here's a description of the scene: ..."
    assert said_by_assistant(words) == TextOnly(words, asked_firmly=False)
    assert isinstance(said_by_assistant("I can't create that image."), Refused)


def test_a_preview_marked_finished_is_not_the_image() -> None:
    small = node(
        "t1",
        "u1",
        "tool",
        [image_part("file_prev", 256)],
        content_type="multimodal_text",
        metadata=IMAGE_GEN,
    )
    assert isinstance(outcome(exchange_of(small), FIRMLY), Pending)


def test_a_bare_429_waits_like_a_limit() -> None:
    error = http_error(429, '{"detail": "Too many requests"}', "POST /backend-api/f/conversation")
    assert isinstance(error, RateLimited) and (error.resume_after or 0) >= 3600
    assert "Too many requests" in error.detail


# -- following a conversation (a fake site that records what is sent) ------------------------------


class FakeSite:
    """Answers each look with the next exchange (the last one again when none is left)."""

    def __init__(self, *exchanges: Exchange, announced: bool = False) -> None:
        self.exchanges = list(exchanges)
        self.sends: list[str] = []
        self.announced = announced

    def exchange(self, conversation_id: str) -> Exchange:
        return self.exchanges.pop(0) if len(self.exchanges) > 1 else self.exchanges[0]

    def ask_again(self, conversation_id: str, text: str) -> None:
        self.sends.append(text)

    def image_announced(self, conversation_id: str) -> bool:
        return self.announced


def follower_of(site: FakeSite) -> Follower:
    return Follower(site, timeout=60, stop=threading.Event(), text_only_grace=0)


def looks(follower: Follower, count: int) -> None:
    for _ in range(count):
        follower.look("c1", follower.followed.get("c1") or follower.follow("c1"))


FIRST = f"{PREFIX} a cat"
TEXT = node("a1", "u1", "assistant", ["Here is a description of a cat"])
FIRM = node("u2", "a1", "user", [firmer(FIRST)])
STILL_TEXT = node("a2", "u2", "assistant", ["Still a description"])


def test_a_text_answer_is_asked_again_firmly_once_then_no_image_is_given() -> None:
    root: Any = ("root", {"id": "root", "parent": None, "children": [], "message": None})
    firm_answered = last_exchange(conversation(root, ASK, TEXT, FIRM, STILL_TEXT), "c1")
    site = FakeSite(exchange_of(TEXT), firm_answered)
    follower = follower_of(site)
    looks(follower, 3)
    assert site.sends == [firmer(FIRST)]
    followed = follower.followed["c1"]
    assert followed.done and isinstance(outcome_error(followed.outcome, "c1"), NoImageGiven)


def test_a_look_before_the_site_stored_our_new_request_does_not_ask_again() -> None:
    root: Any = ("root", {"id": "root", "parent": None, "children": [], "message": None})
    firm_pending = last_exchange(conversation(root, ASK, TEXT, FIRM), "c1")
    # the site shows the old exchange three more times before our firmer request
    site = FakeSite(*[exchange_of(TEXT)] * 4, firm_pending)
    follower = follower_of(site)
    looks(follower, 6)
    assert site.sends == [firmer(FIRST)]
    followed = follower.followed["c1"]
    assert not followed.done and isinstance(followed.outcome, Pending)


def test_a_limit_that_has_reset_is_asked_again_in_the_same_words() -> None:
    past = time.time() - 60
    limited = node("a1", "u1", "assistant", [LIMIT.format("in 3 seconds")], create_time=past)
    site = FakeSite(exchange_of(limited))
    follower = follower_of(site)
    looks(follower, 3)  # the same limit still shown: asked once, then waited on
    assert site.sends == [FIRST]


def test_a_stream_that_announced_an_image_is_waited_on() -> None:
    site = FakeSite(exchange_of(TEXT), announced=True)
    follower = follower_of(site)
    looks(follower, 3)
    assert site.sends == [] and isinstance(follower.followed["c1"].outcome, Pending)


# -- mended after a read-through ----------------------------------------------------------------


def test_a_429_that_states_its_reset_is_waited_that_long() -> None:
    body = '{"detail": {"message": "Too many requests", "access_resets_in_seconds": 120}}'
    error = http_error(429, body, "GET /backend-api/conversations")
    assert isinstance(error, RateLimited) and error.resume_after == 120


def test_a_403_refusing_the_token_is_an_expired_session_not_a_ban() -> None:
    invalidated = '{"detail": {"code": "token_invalidated", "message": "Token invalidated"}}'
    assert isinstance(http_error(403, invalidated, "GET /backend-api/x"), SessionExpired)
    suspended = '{"detail": {"code": "account_deactivated", "message": "Deactivated"}}'
    assert isinstance(http_error(401, suspended, "GET /backend-api/x"), AccessDenied)
    assert isinstance(
        http_error(403, '{"detail": "Forbidden"}', "GET /backend-api/x"), AccessDenied
    )


class FakePage:
    """``page.evaluate(FETCH, [url, token, binary])``: a valid session, then ``answer``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def evaluate(self, script: str, args: list[Any]) -> dict[str, Any]:
        if str(args[0]).endswith("/api/auth/session"):
            text = '{"user": {"name": "ada"}, "accessToken": "t"}'
            return {"status": 200, "text": text, "data": ""}
        return {"status": 200, "text": self.answer, "data": ""}


def test_json_that_is_not_an_object_is_a_page_error_not_a_crash() -> None:
    api, page = ChatApi("http://site.test"), FakePage('["not", "an", "object"]')
    with pytest.raises(PageError, match="not a JSON object"):
        api.conversation(page, "c1")  # type: ignore[arg-type]
    with pytest.raises(PageError, match="not a JSON object"):
        api.image(page, "file_1", "c1")  # type: ignore[arg-type]


def test_two_daemons_sharing_a_session_see_each_others_sends(tmp_path: Path) -> None:
    noted = last_send_file(tmp_path / "session.json")
    ours, theirs, stop = Pacer(noted), Pacer(noted), threading.Event()
    started = time.monotonic()  # before sent(), which writes the file and may take a while
    theirs.sent()  # after we started: only the file knows
    ours.wait_turn(0.4, stop)
    assert time.monotonic() - started >= 0.3


def test_an_announced_image_that_never_came_is_a_timeout_not_no_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"SORA_SESSION_FILE": "s.json", "SORA_MIN_INTERVAL": "0"}
    config = read_settings({}, environ, tmp_path, debug=False)
    driver = ChatGptDriver(config, timeout=0.5, stop=threading.Event())
    site = FakeSite(exchange_of(TEXT), announced=True)  # text, and the stream said an image
    driver.follower = Follower(site, timeout=0.5, stop=driver.stop, text_only_grace=0)
    monkeypatch.setattr(driver, "exchange", site.exchange)  # any look afresh sees the text
    with pytest.raises(GenerationTimeout):
        driver.collect("c1", JobOptions())
    assert site.sends == []


class FakeSend:
    """The page's conversation POST: its request, and a body counted as it is read."""

    def __init__(self, body: str) -> None:
        self.request = self
        self.method, self.url = "POST", "http://site.test/backend-api/f/conversation"
        self.body, self.reads = body, 0

    def text(self) -> str:
        self.reads += 1
        return self.body


def test_a_complete_stream_is_read_once_and_forgotten_with_the_browser(tmp_path: Path) -> None:
    config = read_settings({}, {"SORA_SESSION_FILE": "s.json"}, tmp_path, debug=False)
    driver = ChatGptDriver(config, timeout=60, stop=threading.Event())
    page: ChatPage = driver.site
    send = FakeSend('data: {"metadata": {"image_gen_task_id": "t1"}}')
    page._answers["c1"] = send  # type: ignore[assignment]  # as ask() notes it
    page._on_finished(send)  # type: ignore[arg-type]
    assert page.image_announced("c1") and page.image_announced("c1")
    assert send.reads == 1
    driver.close()
    assert not page.image_announced("c1")
