"""The ``/backend-api`` calls, made inside the page with the page's own bearer token.

Made with the page's ``fetch``, so that they go through Chromium's own network stack with the
site's cookies, as the page's own calls do (a client of its own would look like a bot to the
site's protection). The bearer token is the session endpoint's ``accessToken``, asked for once
and again after a 401; it never leaves this object (no log, no message).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlsplit

from playwright.sync_api import Page

from sora_driver.chatgpt.classify import ImageWithdrawn, http_error
from sora_driver.diagnostics import short_url
from sora_driver.errors import PageError
from sora_driver.session import SessionAnswer, session_url
from sora_watcher.errors import DownloadFailed

CONVERSATION = "/backend-api/conversation/{}"
CONVERSATIONS = "/backend-api/conversations?offset=0&limit=28&order=updated"
DOWNLOAD = "/backend-api/files/download/{}?conversation_id={}"

# In the page: one call, its status and its body (as base64 for an image).
FETCH = """async ([url, token, binary]) => {
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const answer = await fetch(url, {headers, credentials: "include"});
  if (!binary || !answer.ok) {
    return {status: answer.status, text: await answer.text(), data: ""};
  }
  const bytes = new Uint8Array(await answer.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return {status: answer.status, text: "", data: btoa(text)};
}"""


def unexpected(where: str, what: str) -> PageError:
    return PageError(f"unexpected answer: {where}: {what}")


def _json(where: str, text: str) -> dict[str, Any]:
    """An answer's JSON object; ``PageError`` for anything else (the site changed)."""
    try:
        body = json.loads(text)
    except ValueError:
        raise unexpected(where, f"not JSON ({text[:80]!r})") from None
    if not isinstance(body, dict):
        raise unexpected(where, f"not a JSON object ({text[:80]!r})")
    return body


class ChatApi:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._token: str | None = None

    def forget_token(self) -> None:
        self._token = None

    def session(self, page: Page) -> dict[str, Any]:
        """The session endpoint's answer; raises what it means if the session is not valid."""
        url = session_url(self.origin)
        status, text, _ = self._fetch(page, url, None)
        return SessionAnswer(status, text).checked(url, http_error)

    def conversation(self, page: Page, conversation_id: str) -> dict[str, Any]:
        return self.get(page, CONVERSATION.format(quote(conversation_id)))

    def conversations(self, page: Page) -> dict[str, Any]:
        return self.get(page, CONVERSATIONS)

    def get(self, page: Page, path: str) -> dict[str, Any]:
        """A JSON call with the bearer token (a fresh one once after a 401)."""
        where = "GET " + path.split("?")[0]
        status, text, _ = self._authorised(page, self.origin + path, binary=False)
        if not 200 <= status < 300:
            raise http_error(status, text, where)
        return _json(where, text)

    def image(self, page: Page, file_id: str, conversation_id: str) -> tuple[bytes, str]:
        """A generated file's bytes and where they came from: the download endpoint names
        the (signed) URL, fetched with the page's cookies and the token. Never a preview."""
        path = DOWNLOAD.format(quote(file_id), quote(conversation_id))
        where = "GET " + path.split("?")[0]
        status, text, _ = self._authorised(page, self.origin + path, binary=False)
        if status == 404:
            raise ImageWithdrawn(f"{where}: the site no longer has the image ({text[:120]})")
        if not 200 <= status < 300:
            raise http_error(status, text, where)
        answer = _json(where, text)
        url = answer.get("download_url")
        if answer.get("status") != "success" or not isinstance(url, str):
            if answer.get("error_code") == "file_not_found":
                raise ImageWithdrawn(f"{where}: file_not_found")
            raise unexpected(where, f"no download_url ({answer.get('status')})")
        if urlsplit(url).netloc and urlsplit(url).netloc != urlsplit(self.origin).netloc:
            raise unexpected(where, f"a download_url on another site ({short_url(url)})")
        status, text, data = self._authorised(page, url, binary=True)
        if status == 404:
            raise ImageWithdrawn(f"GET {short_url(url)}: HTTP 404")
        if not 200 <= status < 300:
            raise DownloadFailed(f"GET {short_url(url)}: HTTP {status}")
        return base64.b64decode(data), url

    def _authorised(self, page: Page, url: str, binary: bool) -> tuple[int, str, str]:
        """With the bearer token; after a 401, once more with a fresh one (it expired)."""
        fresh = self._token is None
        if self._token is None:
            self._token = self._new_token(page)
        answer = self._fetch(page, url, self._token, binary)
        if answer[0] == 401 and not fresh:
            self._token = self._new_token(page)
            answer = self._fetch(page, url, self._token, binary)
        return answer

    def _new_token(self, page: Page) -> str:
        return str(self.session(page).get("accessToken", ""))

    def _fetch(
        self, page: Page, url: str, token: str | None, binary: bool = False
    ) -> tuple[int, str, str]:
        answer = page.evaluate(FETCH, [url, token, binary])
        return int(answer["status"]), str(answer["text"]), str(answer["data"])
