"""Sora's composer, driven as a user drives it: pop-ups closed, options chosen in the settings
menu, the prompt typed, the create button clicked (Enter where there is none).

The page's own JavaScript sends the request, with the headers the site expects; its answer is
read from what the page noted (``SitePage.submits``).
"""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from sora_driver.classify import api_error, blocked_by
from sora_driver.diagnostics import Diagnostics
from sora_driver.errors import ElementNotFound, PageError
from sora_driver.locate import Profile
from sora_driver.site_page import SitePage
from sora_driver.sora_api import ASPECT_RATIOS, SUBMIT, SoraApi, json_of, submitted_id
from sora_watcher.backends.base import JobOptions
from sora_watcher.errors import ContentRejected, GenerationError

SORA_PROFILE = Path(__file__).with_name("selectors.json")
BUTTON_WAIT_MS = 3000  # the composer is there: the rest of the form is, or is not
# The composer found before on the same page is filled at once; if it does not take the
# prompt within this time, the page has changed and it is looked for afresh.
KNOWN_ELEMENT_MS = 1000
CLICK_TIMEOUT_MS = 10000
RESEND_GRACE_SECONDS = 2.0


class Composer:
    def __init__(
        self,
        site: SitePage,
        api: SoraApi,
        profile: Profile,
        diagnostics: Diagnostics,
        page_timeout: float,
    ) -> None:
        self.site = site
        self.api = api
        self.profile = profile
        self.diagnostics = diagnostics
        self.page_timeout = page_timeout
        self._page: Page | None = None  # the page the state below belongs to
        # The composer and the create button found on the page (None: no button, Enter
        # submits), so that each prompt does not look for them again.
        self._found: dict[str, Locator | None] = {}
        self._options: JobOptions | None = None  # last chosen in the settings menu
        self._clicked_at = 0.0

    def submit(self, page: Page, prompt: str, options: JobOptions) -> str:
        """Send one prompt from the page; the task id the site gave it."""
        self._on(page)
        self.profile.dismiss_popups(page, CLICK_TIMEOUT_MS)
        page_timeout_ms = self.page_timeout * 1000
        composer = self._found.get("composer") or self._find(page, "composer", page_timeout_ms)
        self._choose_options(page, options)
        try:
            composer.fill(prompt, timeout=KNOWN_ELEMENT_MS)
        except PlaywrightTimeout:  # the page changed since it was found: look again
            composer = self._find(page, "composer", page_timeout_ms)
            composer.fill(prompt)
        self.diagnostics.step(page, "typed")
        self.site.expect_submit()
        self._clicked_at = time.monotonic()
        self._press_create(page, composer)
        self.diagnostics.step(page, "clicked")
        response = self.site.wait_until(
            self._submit_answer, self.page_timeout, lambda: self._no_submit_error(page)
        )
        if not response.ok:
            error = api_error(response.status, response.text(), f"POST {SUBMIT}")
            raise self.api.confirmed(error)
        self._check_options_taken(response, options)
        task_id = submitted_id(json_of(response, f"POST {SUBMIT}"))
        logger.debug("submitted as {}", task_id)
        return task_id

    def _on(self, page: Page) -> None:
        """What was found on another page is of no use on this one, and the site may
        remember options we set there: they are set again."""
        if page is not self._page:
            self._page, self._found, self._options = page, {}, None

    def _find(self, page: Page, element: str, timeout_ms: float) -> Locator:
        found = self.profile.find(page, element, timeout_ms)
        self._found[element] = found
        return found

    def _choose_options(self, page: Page, options: JobOptions) -> None:
        """Aspect ratio and variations through the page's settings menu, when it has one.

        Set on each new page, since the site remembers the last choice across jobs.
        """
        if options == self._options:
            return
        menu_button = self.profile.visible_now(page, "settings_button")
        if menu_button is None:
            if options != JobOptions():
                logger.warning("the page offers no settings menu; {} not applied", options)
            return
        choices = [("aspect_ratio", options.aspect_ratio), ("variants", str(options.variants))]
        for element, value in choices:
            menu_button.click(timeout=CLICK_TIMEOUT_MS)
            item = self.profile.find(page, element, BUTTON_WAIT_MS, value=value)
            item.click(timeout=CLICK_TIMEOUT_MS)
        self._options = options
        self.diagnostics.step(page, "options")

    def _press_create(self, page: Page, composer: Locator) -> None:
        """Click the create button as a user would; with none on the page, Enter submits."""
        for last_try in (False, True):
            button = self._create_button(page)
            if self.site.submit_sent:
                return  # the first click went through after all: a second would pay twice
            if button is None:
                logger.debug("no create button on the page; pressing Enter in the composer")
                composer.press("Enter")
                return
            try:
                button.click(timeout=CLICK_TIMEOUT_MS)
                return
            except PlaywrightTimeout:
                if last_try:
                    raise
                # Something covers it (a pop-up that came late), or the page changed since
                # it was found: clear the way, look for it again and try once more.
                self.profile.dismiss_popups(page, CLICK_TIMEOUT_MS)
                del self._found["create_button"]

    def _create_button(self, page: Page) -> Locator | None:
        """The create button found on this page before, or found now; None: the page has none."""
        if "create_button" not in self._found:
            try:
                self._find(page, "create_button", BUTTON_WAIT_MS)
            except ElementNotFound:
                self._found["create_button"] = None
        return self._found["create_button"]

    def _submit_answer(self) -> Response | None:
        """The answer to the page's POST. On a 401 the page may ask for a new token and send
        again by itself: its second answer is the one that counts, and a submission of our own
        on top of it would pay twice. So a 401 is only taken as the answer after a grace time.
        """
        answers = [r for request in self.site.submits if (r := request.response()) is not None]
        accepted = next((r for r in answers if r.status != 401), None)
        if accepted is not None:
            return accepted
        if answers and time.monotonic() - self._clicked_at > RESEND_GRACE_SECONDS:
            return answers[-1]
        return None

    def _check_options_taken(self, response: Response, options: JobOptions) -> None:
        """A warning when the page sent other options than those chosen (its menu changed)."""
        try:
            sent = response.request.post_data_json
        except PlaywrightError:  # not JSON: nothing to compare
            return
        sent = sent if isinstance(sent, dict) else {}
        wanted = (options.variants, *ASPECT_RATIOS[options.aspect_ratio])
        taken = (sent.get("n_variants", 1), sent.get("width"), sent.get("height"))
        if taken[0] != wanted[0] or (taken[1] and (taken[1], taken[2]) != wanted[1:]):
            logger.warning("the page sent {} for {}, not what was asked", taken, options)

    def _no_submit_error(self, page: Page) -> GenerationError:
        text = page.inner_text("body")[:5000]
        if "Unable to create" in text:
            line = next(line for line in text.splitlines() if "Unable to create" in line)
            return ContentRejected(f"the page says: {line.strip()}")
        blocked = blocked_by(text, "after the click")
        if blocked is not None:
            return blocked
        return PageError("the create button was clicked but the page sent no request")
