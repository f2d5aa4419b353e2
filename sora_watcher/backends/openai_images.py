"""The OpenAI Images API, through the official ``openai`` package: ``SORA_BACKEND=openai``.

A generation is one blocking call (seconds to more than a minute). ``submit`` starts it on a
thread of its own and returns at once, so that the daemon keeps several in flight, hears a
stop within half a second and keeps its heartbeat; ``finished`` says which calls are over;
``collect`` hands over the images or the classified error. The threads are daemon threads:
a call under way never holds up the end of the process. A call has no task to look up later,
so a prompt in flight at a crash is sent again at the next start (``follows_tasks=False``).

One retry policy: the package's own retries are turned off (``max_retries=0``); the daemon's
backoff, counted against ``SORA_MAX_RETRIES``, does the retrying.

Its settings, declared in ``openai_settings`` (``OPENAI_API_KEY``, ``SORA_OPENAI_MODEL`` ...),
are read again from the environment at each start: a key written into ``.env`` later is seen.

The key is a secret: it is never put in a message, and every text that comes back from the
API or the network goes through ``redact`` before it is kept in an error.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from sora_watcher.atomic import fingerprint
from sora_watcher.backends.base import (
    SIZE,
    Capabilities,
    Generation,
    ImageFile,
    JobOptions,
    to_png,
)
from sora_watcher.backends.calls import Calls
from sora_watcher.backends.openai_errors import KEYS_URL, Classifier, public_url, redact, said
from sora_watcher.backends.openai_settings import (
    BACKGROUNDS,
    OpenAISettings,
    qualities,
    read_settings,
)
from sora_watcher.config import Settings
from sora_watcher.errors import (
    CredentialsMissing,
    DownloadFailed,
    GenerationError,
    Resume,
    Unreachable,
)

if TYPE_CHECKING:  # imported for real on a thread of its own: see warm_up()
    import openai

FIXED_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
# The aspect ratios as sizes; the gpt-image-2 family takes any WxH in multiples of 16, the
# older models only FIXED_SIZES (the nearest is taken: 3:2 for 16:9).
FLEXIBLE_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536",
                  "16:9": "1536x864", "9:16": "864x1536"}  # fmt: skip
FIXED_FOR_RATIO = {**FLEXIBLE_SIZES, "16:9": "1536x1024", "9:16": "1024x1536"}
MIN_PROBE_SECONDS = 1.0  # even with SORA_PAUSE_SECONDS=0: no back-to-back probes
PROBE_SECONDS = 60.0  # at most, between two asks of a paused queue: key or model accepted?
PROBE_TIMEOUT = 5.0


def flexible(model: str) -> bool:
    return model.startswith("gpt-image-2")


def check_size(default_model: str) -> Callable[[str, str | None], str | None]:
    def check(size: str, model: str | None) -> str | None:
        model = model or default_model
        if not flexible(model):
            return f"{model} takes only {', '.join(FIXED_SIZES)}"
        match = SIZE.fullmatch(size)
        assert match is not None  # Capabilities checked the shape
        width, height = int(match["width"]), int(match["height"])
        if width % 16 or height % 16:
            return "both sides must be multiples of 16"
        if max(width, height) > 3 * min(width, height):
            return "the ratio must be between 1:3 and 3:1"
        if max(width, height) > 3840 or min(width, height) > 2160:
            return "at most 3840x2160"
        return None

    return check


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    model = read_settings(environ).model
    return Capabilities(
        aspect_ratios=tuple(FLEXIBLE_SIZES),
        variants=tuple(range(1, 11)),
        qualities=qualities(model),
        backgrounds=BACKGROUNDS,
        sizes=FIXED_SIZES,
        check_size=check_size(model),
        models=True,
        default_in_flight=4,
        max_in_flight=16,
        follows_tasks=False,
    )


def size_for(options: JobOptions, model: str) -> str:
    if options.size is not None:
        return options.size
    sizes = FLEXIBLE_SIZES if flexible(model) else FIXED_FOR_RATIO
    return sizes[options.aspect_ratio]


# -- the backend ---------------------------------------------------------------------------------


@dataclass
class Call:
    """One generation call, run on a thread of its own."""

    params: dict[str, Any]
    started: float = field(default_factory=time.monotonic)


class OpenAIImages:
    def __init__(
        self, config: OpenAISettings, classifier: Classifier, stop: threading.Event
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.stop = stop
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()
        self._closed = False
        self.calls: Calls[Call] = Calls("call", stop)

    def submit(self, prompt: str, options: JobOptions) -> str:
        model = options.model or self.config.model
        params: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "n": options.variants,
            "size": size_for(options, model),
            "quality": options.quality or self.config.quality,
            "moderation": self.config.moderation,
            "output_format": "png",  # what images/ keeps: no conversion on our side
        }
        if options.background is not None:
            params["background"] = options.background
        call = Call(params)
        task_id = self.calls.add(call)
        threading.Thread(target=self._run, args=(task_id, call), daemon=True, name=task_id).start()
        return task_id

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self.calls.finished(task_ids, wait)

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        return self.calls.collect(task_id)

    def find_task(self, prompt: str, since: float) -> str | None:
        return None  # the API keeps no task to find: the prompt is sent again

    def close(self) -> None:
        with self._client_lock:
            self._closed = True
            if self._client is not None:  # calls under way end with an error nobody collects
                self._client.close()

    @property
    def client(self) -> openai.OpenAI:
        """The package's client, made at the first call (the package may still be loading)."""
        with self._client_lock:
            if self._closed:  # a call that waited for the import past close(): not sent
                raise Unreachable("the backend was closed before the call was sent")
            if self._client is None:
                self._client = client_for(self.config, self.config.timeout)
            return self._client

    def _run(self, task_id: str, call: Call) -> None:
        """The call, on its own thread; what came of it is left in ``call`` for collect(),
        whatever happens: a call never left running for ever."""
        generation: Generation | None = None
        error: GenerationError | None = None
        try:
            generation = self._call(task_id, call)
        except GenerationError as exc:
            error = exc
        except Exception as exc:  # unforeseen: said with its traceback, tried again later
            logger.opt(exception=exc).error("{}: unexpected error in the call", task_id)
            error = Unreachable(redact(f"unexpected {type(exc).__name__}: {exc}", self.key))
        finally:
            self.calls.end(task_id, generation, error)

    def _call(self, task_id: str, call: Call) -> Generation:
        import openai  # loaded by warm_up(): at most the first call waits for it

        try:
            raw = self.client.images.with_raw_response.generate(**call.params)
        except openai.OpenAIError as exc:
            raise self.classifier.error(exc, call.params["model"]) from None
        seconds = round(time.monotonic() - call.started, 3)
        generation = self._generation(task_id, call, raw.parse(), raw.headers)
        generation.timings["call_s"] = seconds
        return generation

    @property
    def key(self) -> str:
        return self.config.api_key

    def _generation(
        self, task_id: str, call: Call, answer: object, headers: Mapping[str, str]
    ) -> Generation:
        """The images of a 200 answer; one that holds no whole image is a failed download."""
        from openai.types import ImagesResponse

        where = public_url(f"{self.config.base_url}/images/generations")
        request_id = headers.get("x-request-id")
        if not isinstance(answer, ImagesResponse):  # a proxy's page, with a 200
            kind = headers.get("content-type", "no content type")
            raise DownloadFailed(f"{where} answered 200 with {kind}, not the API's JSON")
        items = answer.data or []
        if not items:
            raise DownloadFailed(f"{where} answered 200 with no image (request {request_id})")
        images = []
        for item in items:
            try:
                data = base64.b64decode(item.b64_json or "", validate=True)
            except (binascii.Error, ValueError):
                raise DownloadFailed(f"{where}: the image is not valid base64") from None
            if not data:
                raise DownloadFailed(f"{where} answered an empty image (request {request_id})")
            png, width, height, source_format = to_png(data, where)
            images.append(ImageFile(png, width, height, where, source_format))
        usage = answer.usage.model_dump() if answer.usage is not None else None
        details: dict[str, object] = {
            "model": call.params["model"],
            "size": answer.size or call.params["size"],
            "quality": answer.quality or call.params["quality"],
            "background": answer.background or call.params.get("background"),
            "n": call.params["n"],
            "usage": usage,
            "request_id": request_id,
        }
        return Generation(task_id, images, details=details)


def warm_up() -> None:
    """Import the package on a thread of its own. It takes about a second (its many types),
    and the daemon is READY without waiting for it: the first call waits, if need be."""
    threading.Thread(
        target=importlib.import_module, args=("openai",), name="import-openai", daemon=True
    ).start()


def client_for(config: OpenAISettings, timeout: float) -> openai.OpenAI:
    import openai

    client = openai.OpenAI(
        api_key=config.api_key,
        base_url=config.base_url,
        organization=config.organization,
        project=config.project,
        timeout=timeout,
        max_retries=0,  # one retry policy: the daemon's
    )
    # None makes the package fall back to the process's environment, which .env filled at
    # start: a line since removed from .env must be gone from the calls too.
    client.organization, client.project = config.organization, config.project
    return client


def model_accepted(config: OpenAISettings) -> tuple[bool | None, str]:
    """Whether the key and the model are accepted (``GET /models/{model}``, free): True,
    False, or None when the key may not read models (a restricted key can still make images:
    only a real call tells)."""
    import openai

    where = public_url(config.base_url)
    try:
        with client_for(config, PROBE_TIMEOUT) as client:
            client.models.retrieve(config.model)
    except openai.PermissionDeniedError as exc:
        return None, redact(f"{said(exc)} (a key that may not read models)", config.api_key)
    except openai.APIStatusError as exc:
        return False, redact(said(exc), config.api_key)
    except openai.OpenAIError as exc:
        return False, redact(f"{where}: {type(exc).__name__}: {exc}", config.api_key)
    return True, f"key and model {config.model} accepted by {where}"


def missing_key(settings: Settings) -> CredentialsMissing:
    env_file = settings.env_file
    return CredentialsMissing(
        f"OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in {env_file} (or in the "
        f"service's environment) to use the OpenAI Images API; get a key at {KEYS_URL}",
        Resume(file=env_file, seen=fingerprint(env_file), hint="waiting for OPENAI_API_KEY"),
    )


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> OpenAIImages:
    values = environ()
    config = read_settings(values)
    if not config.api_key:
        raise missing_key(settings)
    warm_up()

    def probe() -> bool:  # None (cannot tell) goes on: the next call tells
        return model_accepted(read_settings(environ()))[0] is not False

    classifier = Classifier(
        model=config.model,
        base_url=config.base_url,
        key=config.api_key,
        timeout=config.timeout,
        env_file=str(settings.env_file),
        probe=probe,
        probe_every=max(MIN_PROBE_SECONDS, min(PROBE_SECONDS, settings.pause_seconds)),
    )
    return OpenAIImages(config, classifier, stop)


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    config = read_settings(environ)
    lines = [f"backend: openai, model {config.model}, {public_url(config.base_url)}"]
    if not config.api_key:
        return [*lines, f"  OPENAI_API_KEY is not set (put it in {settings.env_file})"], False
    if offline:
        return lines, True
    accepted, words = model_accepted(config)
    return [*lines, f"  {words}"], accepted is not False


def login(settings: Settings) -> int:
    print(
        "sora-watcher login is not needed with the openai backend: it uses OPENAI_API_KEY "
        f"(in {settings.env_file} or the environment). Get a key at {KEYS_URL}."
    )
    return 0
