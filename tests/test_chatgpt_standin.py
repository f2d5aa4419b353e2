"""The ChatGPT stand-in: its protocol over HTTP, its scenarios, and its page in real Chromium."""

from __future__ import annotations

import io
import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from chatgpt_standin import StandIn
from standin_kit.process import StandInServer, run_standin
from tests.conftest import wait_for

SECRET = "test-secret"
DELAY = 0.4
SENTINEL = "OpenAI-Sentinel-Chat-Requirements-Token"
REQUIREMENTS = "/backend-api/sentinel/chat-requirements"
FOX = "Generate two images of a red fox in the snow, portrait"


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with StandIn(delay=DELAY, secret=SECRET) as standin:
        yield standin


@pytest.fixture
def standin(server: StandIn) -> Iterator[StandIn]:
    server.delay = DELAY
    yield server
    server.clear_scenarios()
    server.page_variant = {}


class Site:
    """A client holding the session cookie and the bearer token, as the page does."""

    def __init__(self, standin: StandIn) -> None:
        cookies = {c["name"]: c["value"] for c in standin.storage_state()["cookies"]}
        self.http = httpx.Client(base_url=standin.base_url, cookies=cookies, timeout=10)
        token = self.http.get("/api/auth/session").json()["accessToken"]
        self.bearer = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.bearer)

    def send(self, text: str, hints: list[str] | None = None, **extra: Any) -> httpx.Response:
        """A conversation POST with a fresh sentinel token; the stream read whole."""
        token = self.http.post(REQUIREMENTS, headers=self.bearer).json()["token"]
        headers = {**self.bearer, SENTINEL: token}
        message = {
            "id": str(uuid.uuid4()),
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": [text]},
            "metadata": {"system_hints": hints or []},
        }
        body = {"action": "next", "messages": [message], "parent_message_id": "client-created-root"}
        return self.http.post("/backend-api/f/conversation", headers=headers, json=body | extra)

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        answer = self.get(f"/backend-api/conversation/{conversation_id}")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def site(standin: StandIn) -> Iterator[Site]:
    client = Site(standin)
    yield client
    client.http.close()


def events(response: httpx.Response) -> list[Any]:
    """The `data:` values of an event stream, `[DONE]` kept as a string."""
    assert response.headers["content-type"].startswith("text/event-stream")
    found = []
    for block in response.text.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            found.append("[DONE]" if data == ["[DONE]"] else json.loads("\n".join(data)))
    return found


def conversation_id(response: httpx.Response) -> str:
    (found,) = {e.get("conversation_id") for e in events(response) if isinstance(e, dict)} - {None}
    return str(found)


def messages(conversation: dict[str, Any], role: str) -> list[dict[str, Any]]:
    found = [n["message"] for n in conversation["mapping"].values() if n["message"]]
    return [m for m in found if m["author"]["role"] == role]


def texts(conversation: dict[str, Any]) -> list[str]:
    return [
        "".join(m["content"]["parts"])
        for m in messages(conversation, "assistant")
        if m["content"]["content_type"] == "text"
    ]


def tool_when(site: Site, cid: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The image tool message, once `check` holds for it."""

    def tool() -> dict[str, Any] | None:
        (message,) = messages(site.conversation(cid), "tool")
        return message if check(message) else None

    found: dict[str, Any] = wait_for(tool)
    return found


def file_id(part: dict[str, Any]) -> str:
    return str(part["asset_pointer"]).removeprefix("sediment://")


# -- protocol ---------------------------------------------------------------------------------


def test_session_and_bearer_gate(standin: StandIn, site: Site) -> None:
    anonymous = httpx.get(f"{standin.base_url}/api/auth/session")
    assert anonymous.json() == {}
    session = site.http.get("/api/auth/session").json()
    assert {"accessToken", "expires", "user"} <= set(session)
    assert session["user"]["email"] == "demo@example.com"
    assert httpx.get(f"{standin.base_url}/backend-api/conversations").status_code == 401
    # The shell is the same for everyone: its script decides what to show.
    page = httpx.get(f"{standin.base_url}/images/")
    assert page.status_code == 200 and '"workspace": "images"' in page.text


def test_send_streams_then_the_image_arrives_preview_first(standin: StandIn, site: Site) -> None:
    started = time.time()
    # No sentinel token: refused, as the real site refuses a direct API call.
    body = {"action": "next", "messages": []}
    refused = site.http.post("/backend-api/f/conversation", headers=site.bearer, json=body)
    assert refused.status_code == 403 and "detail" in refused.json()

    # The preview shows 1 s before the final (not DELAY / 2): time enough to see it under load.
    # The refused POST above did not spend this: it never got past the sentinel check.
    standin.scenario("slow_image", seconds=1.0)
    stream = site.send(FOX)
    assert stream.status_code == 200
    found = events(stream)
    assert found[0] == "v1" and found[-1] == "[DONE]"
    assert any(isinstance(e, dict) and "message_id" in e for e in found)
    raw = stream.text
    assert '"image_gen_async": true' in raw and '"async_task_type": "image_gen"' in raw
    assert '"image_gen_task_id"' in raw
    cid = conversation_id(stream)

    # The stream ended before the image exists; the preview comes first, then the final.
    preview = tool_when(site, cid, lambda m: bool(m["content"]["parts"]))
    assert preview["status"] == "in_progress"
    assert [(p["width"], p["height"]) for p in preview["content"]["parts"]] == [(256, 384)] * 2
    final = tool_when(site, cid, lambda m: m["status"] == "finished_successfully")
    parts = final["content"]["parts"]
    assert [(p["width"], p["height"]) for p in parts] == [(1024, 1536)] * 2
    assert all(p["metadata"]["generation"]["gen_size"] == "image" for p in parts)
    assert {file_id(p) for p in parts}.isdisjoint(file_id(p) for p in preview["content"]["parts"])

    conversation = site.conversation(cid)
    assert conversation["title"] == "A red fox in the snow"
    assert conversation["mapping"][conversation["current_node"]]["message"]["id"] == final["id"]
    listing = site.get("/backend-api/conversations", offset=0, limit=28).json()
    assert listing["items"][0]["id"] == cid and listing["total"] >= 1

    log = httpx.get(f"{standin.base_url}/__standin__/log").json()
    sends = [s for s in log["sends"] if s["conversation_id"] == cid]
    assert [s["prompt"] for s in sends] == [FOX]
    assert sends[0]["at"] >= started and log["images_made"] >= 2


def test_download_is_cookie_gated_and_the_png_follows_the_prompt(site: Site) -> None:
    finals = []
    for prompt in ("Create an image of a lighthouse, landscape", "Draw a picture of a teapot"):
        cid = conversation_id(site.send(prompt))
        tool = tool_when(site, cid, lambda m: m["status"] == "finished_successfully")
        (part,) = tool["content"]["parts"]
        answer = site.get(f"/backend-api/files/download/{file_id(part)}", conversation_id=cid)
        assert answer.json()["status"] == "success"
        url = answer.json()["download_url"]
        assert "/backend-api/estuary/content?id=file_" in url and "&sig=" in url
        assert httpx.get(url).status_code == 403  # no session cookie
        png = site.http.get(url)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert len(png.content) == part["size_bytes"] == answer.json()["file_size_bytes"]
        finals.append(png.content)
    sizes = [Image.open(io.BytesIO(data)).size for data in finals]
    assert sizes == [(1536, 1024), (1024, 1024)]
    assert finals[0] != finals[1]


def test_a_plain_question_gets_words_and_follow_ups_stay_in_the_conversation(site: Site) -> None:
    first = site.send("What is the capital of France?")
    cid = conversation_id(first)
    appended = [e["v"] for e in events(first) if isinstance(e, dict) and e.get("o") == "append"]
    assert len(appended) > 1 and all(isinstance(v, str) for v in appended)
    site.send("Make an image of Paris", conversation_id=cid)
    conversation = site.conversation(cid)
    assert len(messages(conversation, "user")) == 2
    assert len(messages(conversation, "tool")) == 1
    assert texts(conversation)[0].startswith("Here is my answer")


# -- scenarios --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        (
            "limit",
            {"words": "in 3 seconds", "plan": "Plus"},
            "You've hit the Plus plan limit for image generations requests. "
            "You can create more images when the limit resets in 3 seconds.",
        ),
        ("refusal", {}, "I can't assist with that request."),
        ("text_only", {}, "Here is a description of a fox"),
    ],
)
def test_answers_in_words_only(
    standin: StandIn, site: Site, name: str, params: dict[str, Any], expected: str
) -> None:
    standin.scenario(name, **params)
    cid = conversation_id(site.send("Generate an image of a fox", ["picture_v2"]))
    conversation = site.conversation(cid)
    assert messages(conversation, "tool") == []
    assert texts(conversation)[0].startswith(expected)
    if name == "refusal":
        assert conversation["title"] == "Request Denied"
    again = site.conversation(conversation_id(site.send("Generate an image of a fox")))
    assert len(messages(again, "tool")) == 1  # armed once: spent


def test_gen_failed_and_withdrawn(standin: StandIn, site: Site) -> None:
    standin.scenario("gen_failed")
    failed = conversation_id(site.send("Generate an image of a boat"))
    tool = tool_when(site, failed, lambda m: m["status"] != "in_progress")
    assert tool["status"] == "finished_with_error" and tool["content"]["parts"] == []
    assert texts(site.conversation(failed)) == ["Image generation failed"]

    # time enough between seeing the final image and asking for its download, under load
    standin.scenario("withdrawn", after=1.5)
    cid = conversation_id(site.send("Generate an image of a castle"))
    final = tool_when(site, cid, lambda m: m["status"] == "finished_successfully")
    (part,) = final["content"]["parts"]
    url = site.get(f"/backend-api/files/download/{file_id(part)}").json()["download_url"]
    removed = tool_when(site, cid, lambda m: m["metadata"].get("is_redacted") is True)
    assert removed["content"]["parts"] == []
    assert texts(site.conversation(cid))[-1].startswith("This image was removed")
    gone = site.get(f"/backend-api/files/download/{file_id(part)}")
    assert gone.status_code == 404
    assert gone.json() == {"status": "error", "error_code": "file_not_found"}
    assert site.http.get(url).status_code == 404


def test_busy_and_slow_image_take_longer(standin: StandIn, site: Site) -> None:
    standin.scenario("busy")
    started = time.monotonic()
    cid = conversation_id(site.send("Generate an image of a crowd"))
    assert texts(site.conversation(cid))[0].startswith("Lots of people are creating images")
    tool_when(site, cid, lambda m: m["status"] == "finished_successfully")
    assert time.monotonic() - started >= 3 * DELAY * 0.95

    standin.scenario("slow_image", seconds=1.0)
    started = time.monotonic()
    cid = conversation_id(site.send("Generate an image of a snail"))
    tool_when(site, cid, lambda m: bool(m["content"]["parts"]))
    tool_when(site, cid, lambda m: m["status"] == "finished_successfully")
    assert time.monotonic() - started >= DELAY / 2 + 1.0 * 0.95


def test_http_refusals(standin: StandIn, site: Site) -> None:
    standin.scenario("http_429")
    limited = site.send("Generate an image of a fox")
    assert limited.status_code == 429 and limited.json() == {"detail": "Too many requests"}
    assert standin.log()["refused"][-1]["prompt"] == "Generate an image of a fox"

    standin.scenario("token_expired")
    expired = site.get("/backend-api/conversations")
    assert expired.status_code == 401 and expired.json()["detail"]["code"] == "token_expired"
    assert site.http.get("/api/auth/session").json()["accessToken"]  # the session stays valid

    standin.scenario("suspended")
    suspended = site.get("/backend-api/conversations")
    assert suspended.status_code == 403
    assert suspended.json()["detail"]["code"] == "account_deactivated"

    standin.scenario("logged_out", count=2)
    assert site.http.get("/api/auth/session").json() == {}
    assert site.get("/backend-api/conversations").status_code == 401

    standin.scenario("cloudflare", count=2)
    for path in ("/c/" + str(uuid.uuid4()), "/backend-api/conversations"):
        challenge = site.http.get(path, headers=site.bearer)
        assert challenge.status_code == 403 and "<title>Just a moment...</title>" in challenge.text
        assert "/cdn-cgi/challenge-platform/" in challenge.text
    assert site.get("/backend-api/conversations").status_code == 200  # all spent


def test_control_endpoints(standin: StandIn) -> None:
    control = f"{standin.base_url}/__standin__"
    armed = httpx.post(
        f"{control}/scenario", json={"name": "limit", "count": None, "params": {"plan": "Free"}}
    )
    assert armed.json()["scenarios"]["limit"] == {
        "remaining": None,
        "params": {"words": "in 10 hours and 25 minutes", "plan": "Free"},
    }
    assert httpx.post(f"{control}/scenario", json={"name": "nope"}).status_code == 400
    bad = httpx.post(f"{control}/scenario", json={"name": "withdrawn", "params": {"after": "x"}})
    assert bad.status_code == 400
    page = httpx.post(f"{control}/config", json={"page": {"send": "2026", "plus_menu": False}})
    assert page.json()["page"] == {"send": "2026", "plus_menu": False}
    assert httpx.post(f"{control}/config", json={"page": {"send": "2027"}}).status_code == 400
    cleared = httpx.post(f"{control}/clear").json()
    assert cleared == {"scenarios": {}, "page": {}}
    assert httpx.get(f"{control}/health").json() == {"ok": True}


def test_command_line(tmp_path: Path) -> None:
    with StandInServer("chatgpt_standin", "--delay", "0.2", "--secret", SECRET) as server:
        out = tmp_path / "session.json"
        options = ["--base-url", server.base_url, "--out", str(out), "--secret", SECRET]
        made = run_standin("chatgpt_standin", "make-session", *options)
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        cookies = {c["name"]: c["value"] for c in json.loads(out.read_text())["cookies"]}
        assert "__Secure-next-auth.session-token" in cookies
        session = httpx.get(f"{server.base_url}/api/auth/session", cookies=cookies).json()
        assert session["user"]["name"] == "demo"
    refused = run_standin("chatgpt_standin", "--host", "0.0.0.0")
    assert refused.returncode == 2 and "only loopback" in refused.stderr


# -- the page in real Chromium ----------------------------------------------------------------


@pytest.fixture
def page(browser: Any, standin: StandIn) -> Iterator[Any]:
    context = browser.new_context(storage_state=standin.storage_state())
    context.set_default_timeout(8000)
    yield context.new_page()
    context.close()


FINAL_SHOWN = """() => {
  const img = document.querySelector('img[alt^="Generated image:"]');
  return img && img.src && !img.src.includes('#thumbnail') && img.complete && img.naturalWidth;
}"""


@pytest.mark.e2e
def test_page_sends_through_the_composer_and_shows_the_image(standin: StandIn, page: Any) -> None:
    standin.delay = 2.4  # the preview shows 1.2 s: more than the page's 0.7 s between polls
    page.goto(f"{standin.base_url}/")
    editor = page.locator("#prompt-textarea")
    send = page.locator('form button[data-testid="send-button"]#composer-submit-button')
    assert send.is_disabled()
    # Text put in from outside, without input events, does not count (as with ProseMirror).
    editor.evaluate("element => { element.innerHTML = '<p>sneaky</p>' }")
    assert send.is_disabled()
    editor.evaluate("element => { element.innerHTML = '' }")

    page.locator('[data-testid="composer-plus-btn"]').click()
    page.get_by_role("menuitemradio", name="Create image").click()
    assert page.locator('form [data-system-hint-type="picture_v2"]').is_visible()
    editor.click()
    page.keyboard.insert_text("a lighthouse at dusk")
    assert send.is_enabled()
    send.click()

    page.wait_for_url("**/c/*")
    image = page.locator('article[data-testid^="conversation-turn"] img[alt^="Generated image:"]')
    image.wait_for()
    assert image.get_attribute("src").endswith("#thumbnail")  # the preview comes first
    width = page.wait_for_function(FINAL_SHOWN).json_value()
    assert width == 1024  # the final file, loaded through the page's cookies
    page.locator('[data-testid="copy-turn-action-button"]').wait_for()
    assert page.locator('form [data-testid="stop-button"]').count() == 0
    (sent,) = [s for s in standin.log()["sends"] if s["prompt"] == "a lighthouse at dusk"]
    assert sent["hints"] == ["picture_v2"] and page.url.endswith(sent["conversation_id"])


@pytest.mark.e2e
def test_page_variants_and_logged_out(standin: StandIn, page: Any) -> None:
    standin.page_variant = {"send": "2026", "plus_menu": False, "composer": "renamed"}
    page.goto(f"{standin.base_url}/")
    editor = page.locator('[data-testid="chat-composer-input"]')
    editor.click()
    assert page.locator("#prompt-textarea, [data-testid='composer-plus-btn']").count() == 0
    assert page.locator('[data-testid="send-button"]').count() == 0
    send = page.locator('button[data-testid="composer-submit-button"][aria-label="Send message"]')
    assert send.is_disabled() and send.get_attribute("id") is None
    page.keyboard.insert_text("What is a lighthouse?")
    page.keyboard.press("Enter")
    page.locator('[data-message-author-role="assistant"] .markdown').wait_for()
    page.locator('[data-testid="copy-turn-action-button"]').wait_for()

    # Until cleared: the page's own session checks spend the scenario too, and the page left
    # above may make one before the new one loads.
    standin.scenario("logged_out", count=None)
    page.goto(f"{standin.base_url}/")
    page.locator('[data-testid="login-button"]').wait_for()
    assert page.locator('[contenteditable="true"], textarea').count() == 0
