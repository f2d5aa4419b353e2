"""Contract of the local OpenAI Images API stand-in, driven by the real `openai` client."""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from PIL import Image, UnidentifiedImageError

from openai_standin import ImagesStandIn
from standin_kit.process import StandInServer, run_standin

KEY = "sk-standin-test"
LATENCY = 0.05
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture(scope="module")
def server() -> Iterator[ImagesStandIn]:
    with ImagesStandIn(latency=LATENCY, api_key=KEY).start() as api:
        yield api


@pytest.fixture
def api(server: ImagesStandIn) -> Iterator[ImagesStandIn]:
    server.clear()
    server.reset_calls()
    server.latency, server.max_in_flight = LATENCY, 16
    yield server
    server.clear()


@pytest.fixture
def client(api: ImagesStandIn) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.base_url, api_key=KEY, max_retries=0, timeout=5)


def decode(b64_json: str | None) -> Image.Image:
    assert b64_json is not None
    picture = Image.open(io.BytesIO(base64.b64decode(b64_json)))
    picture.load()  # a truncated file fails here, not at open()
    return picture


def raw(
    api: ImagesStandIn,
    method: str,
    path: str,
    body: bytes | None = None,
    key: str | None = KEY,
) -> tuple[int, dict[str, str], bytes]:
    """One request without the openai client: status, headers (lower-case names), body."""
    parts = urlsplit(api.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --- a good generation -----------------------------------------------------------------------


def test_generation_answers_whole_images_of_the_asked_size(
    api: ImagesStandIn, client: openai.OpenAI
) -> None:
    response = client.images.with_raw_response.generate(
        model="gpt-image-2", prompt="a red fox", n=2, size="1536x864"
    )
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["x-ratelimit-limit-requests"]) == 16
    result = response.parse()
    assert result.size == "1536x864" and result.quality == "medium"
    assert result.output_format == "png" and result.background == "opaque"
    assert result.data is not None and len(result.data) == 2
    pictures = [decode(item.b64_json) for item in result.data]
    assert all(p.format == "PNG" and p.size == (1536, 864) for p in pictures)
    assert pictures[0].getpixel((768, 432)) != pictures[1].getpixel((768, 432))
    assert result.usage is not None
    assert result.usage.output_tokens > 2 * 1056  # bigger than two medium 1024x1024 images
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    [call] = api.calls
    assert (call.prompt, call.model, call.n, call.size, call.status) == (
        "a red fox",
        "gpt-image-2",
        2,
        "1536x864",
        200,
    )
    assert call.request_id == response.headers["x-request-id"]
    assert call.ended is not None and call.ended - call.started >= LATENCY


def test_defaults_formats_and_transparency(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a moon")  # no model: gpt-image-2, auto size
    assert result.size == "1024x1024" and result.data is not None
    assert decode(result.data[0].b64_json).size == (1024, 1024)
    jpeg = client.images.generate(prompt="x", output_format="jpeg", output_compression=60)
    assert jpeg.data is not None and decode(jpeg.data[0].b64_json).format == "JPEG"
    webp = client.images.generate(prompt="x", output_format="webp", background="transparent")
    assert webp.background == "transparent" and webp.data is not None
    picture = decode(webp.data[0].b64_json)
    assert picture.format == "WEBP" and picture.mode == "RGBA"
    assert picture.getpixel((0, 0))[3] == 0  # type: ignore[index]
    ultra = client.images.generate(model="gpt-image-2.5-flare", prompt="x", quality="xhigh")
    low = client.images.generate(prompt="x", quality="low")
    assert ultra.usage is not None and low.usage is not None
    assert ultra.usage.output_tokens > low.usage.output_tokens


# --- refusals of the request -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param", "needle"),
    [
        ({"size": "1000x1000"}, "size", "multiples of 16"),
        ({"size": "2048x512"}, "size", "1:3 and 3:1"),
        ({"size": "4096x2304"}, "size", "3840x2160"),
        ({"n": 11}, "n", "<= 10"),
        ({"quality": "xhigh"}, "quality", "Invalid value: 'xhigh'"),
        ({"response_format": "url"}, "response_format", "not supported for this model"),
        ({"output_format": "jpeg", "background": "transparent"}, "background", "png"),
        ({"output_compression": 50}, "output_compression", "jpeg"),
        ({"extra_body": {"foo": 1}}, "foo", "Unknown parameter: 'foo'."),
        ({"prompt": "x" * 32001}, "prompt", "maximum length 32000"),
    ],
)
def test_bad_parameters_are_refused_with_the_param_named(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str, needle: str
) -> None:
    arguments = {"prompt": "a cat", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**arguments)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert needle in body["message"]


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1", "chatgpt-image-latest", "nope"])
def test_retired_and_unknown_models_are_not_found(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model=model, prompt="a cat")
    assert caught.value.code == "model_not_found"
    assert caught.value.message.endswith(
        f"The model `{model}` does not exist or you do not have access to it."
    )


def test_a_wrong_key_is_refused_and_masked(api: ImagesStandIn) -> None:
    wrong = openai.OpenAI(base_url=api.base_url, api_key="sk-wrong-key-9876", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.images.generate(prompt="a cat")
    assert caught.value.code == "invalid_api_key"
    assert "sk-wron******9876." in caught.value.message
    assert "wrong-key" not in caught.value.message
    status, headers, _ = raw(api, "POST", "/v1/images/generations", b'{"prompt": "x"}', key=None)
    assert status == 401 and REQUEST_ID.fullmatch(headers["x-request-id"])


def test_malformed_unknown_and_oversized_requests(api: ImagesStandIn) -> None:
    status, _, body = raw(api, "POST", "/v1/images/generations", b"{not json")
    assert status == 400
    assert json.loads(body)["error"]["message"].startswith(
        "We could not parse the JSON body of your request."
    )
    status, headers, body = raw(api, "GET", "/v1/nothing-here")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["message"] == "Invalid URL (GET /v1/nothing-here)"
    big = json.dumps({"prompt": "x" * (1 << 20)}).encode()
    status, _, body = raw(api, "POST", "/v1/images/generations", big)
    assert status == 413 and "error" in json.loads(body)


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "exception", "status", "code"),
    [
        ("moderation_blocked", openai.BadRequestError, 400, "moderation_blocked"),
        ("content_policy_violation", openai.BadRequestError, 400, "content_policy_violation"),
        ("bad_request", openai.BadRequestError, 400, "invalid_value"),
        ("invalid_api_key", openai.AuthenticationError, 401, "invalid_api_key"),
        ("org_not_verified", openai.PermissionDeniedError, 403, None),
        ("model_not_found", openai.NotFoundError, 404, "model_not_found"),
        ("rate_limit_exceeded", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("insufficient_quota", openai.RateLimitError, 429, "insufficient_quota"),
        ("server_error", openai.InternalServerError, 500, None),
        ("bad_gateway_html", openai.InternalServerError, 502, None),
        ("overloaded", openai.InternalServerError, 503, None),
    ],
)
def test_error_faults_raise_the_package_exception(
    api: ImagesStandIn,
    client: openai.OpenAI,
    fault: str,
    exception: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    api.arm(fault)
    with pytest.raises(exception) as caught:
        client.images.generate(prompt="a cat")
    error = caught.value
    assert error.status_code == status and error.code == code
    assert REQUEST_ID.fullmatch(error.response.headers["x-request-id"])
    assert api.calls[-1].fault == fault and api.calls[-1].status == status
    if fault == "moderation_blocked":
        assert isinstance(error.body, dict)
        assert error.body["type"] == "image_generation_user_error"
        assert f"request ID {error.request_id}." in error.message
        assert "safety_violations=[sexual]" in error.message
    if fault == "bad_gateway_html":
        assert error.response.headers["content-type"].startswith("text/html")
        assert "<title>502 Bad Gateway</title>" in error.response.text
    if fault == "insufficient_quota":
        assert "retry-after" not in error.response.headers
    client.images.generate(prompt="a cat")  # count=1 was consumed: the next call succeeds


def test_any_fault_can_carry_retry_after(api: ImagesStandIn, client: openai.OpenAI) -> None:
    api.arm("server_error", retry_after=0.3)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt="a cat")
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "300"
    api.arm("empty_data", retry_after=0.3)  # accepted, though a 200 has no such header
    assert client.images.generate(prompt="a cat").data == []
    with pytest.raises(ValueError, match="no parameter 'retry'"):
        api.arm("server_error", retry=1)


def test_rate_limit_fault_sends_retry_after(api: ImagesStandIn, client: openai.OpenAI) -> None:
    api.arm("rate_limit_exceeded", count=1, retry_after=1.5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a cat")
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    assert "Please try again in 1.5s." in caught.value.message


def test_hang_times_the_client_out_and_reset_cuts_the_connection(
    api: ImagesStandIn, client: openai.OpenAI
) -> None:
    api.arm("hang", seconds=30.0)
    with pytest.raises(openai.APITimeoutError):
        client.images.generate(prompt="a cat", timeout=0.3)
    api.arm("reset")
    with pytest.raises(openai.APIConnectionError) as caught:
        client.images.generate(prompt="a cat")
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert [(c.fault, c.status) for c in api.calls][-1] == ("reset", None)


def test_data_faults_answer_200_with_unusable_images(
    api: ImagesStandIn, client: openai.OpenAI
) -> None:
    api.arm("empty_data")
    assert client.images.generate(prompt="a cat").data == []
    for fault, failure in [
        ("broken_base64", binascii.Error),
        ("truncated_image", OSError),
        ("not_an_image", UnidentifiedImageError),
    ]:
        api.arm(fault)
        result = client.images.generate(prompt="a cat")
        assert result.data is not None and len(result.data) == 1
        with pytest.raises(failure):
            decode(result.data[0].b64_json)
        if fault == "not_an_image":
            assert base64.b64decode(result.data[0].b64_json or "").startswith(b"<!DOCTYPE html>")


def test_count_semantics_and_the_prompt_marker(api: ImagesStandIn, client: openai.OpenAI) -> None:
    api.arm("insufficient_quota", count=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.images.generate(prompt="a cat")
    client.images.generate(prompt="a cat")
    api.arm("overloaded", count=None)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.images.generate(prompt="a cat")
    api.clear()
    client.images.generate(prompt="a cat")
    # The marker fails its own line every time, and leaves armed faults for the others.
    api.arm("server_error", count=1)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(prompt="a cat [fault:moderation_blocked]")
        assert caught.value.code == "moderation_blocked"
    assert api.armed() == {"server_error": {"remaining": 1, "params": {"retry_after": None}}}
    with pytest.raises(ValueError, match="unknown fault"):
        api.arm("no_such_fault")


def test_models_endpoint(api: ImagesStandIn, client: openai.OpenAI) -> None:
    model = client.models.retrieve("gpt-image-2")
    assert (model.id, model.object, model.owned_by) == ("gpt-image-2", "model", "system")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("dall-e-3")
    # Quota and verification problems leave model lookups working; a refused key does not.
    api.arm("insufficient_quota", count=None)
    api.arm("org_not_verified", count=None)
    client.models.retrieve("gpt-image-2")
    api.arm("invalid_api_key", count=None)
    with pytest.raises(openai.AuthenticationError):
        client.models.retrieve("gpt-image-2")
    assert api.calls == []  # model lookups are not generation calls


# --- capacity, stop, command line --------------------------------------------------------


def test_one_call_beyond_max_in_flight_gets_429(api: ImagesStandIn, client: openai.OpenAI) -> None:
    api.latency, api.max_in_flight = 0.5, 2
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def one() -> None:
        start.wait()
        try:
            client.images.generate(prompt="a cat")
            outcomes.append("ok")
        except openai.RateLimitError as error:
            assert error.code == "rate_limit_exceeded"
            assert error.response.headers["retry-after"] == "1"
            outcomes.append("429")

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(outcomes) == ["429", "ok", "ok"]
    assert api.peak_in_flight == 2
    assert sorted(call.status or 0 for call in api.calls) == [200, 200, 429]


def test_a_client_that_gives_up_frees_its_slot(api: ImagesStandIn, client: openai.OpenAI) -> None:
    api.latency, api.max_in_flight = 30, 1
    with pytest.raises(openai.APITimeoutError):
        client.images.generate(prompt="a cat", timeout=0.3)
    assert api.wait_idle(timeout=2)
    [call] = api.calls
    assert call.status is None and call.ended is not None
    assert call.ended - call.started < 2
    api.latency = LATENCY
    client.images.generate(prompt="a cat")  # the slot is free: no 429


def test_stop_returns_fast_with_a_call_in_its_latency() -> None:
    api = ImagesStandIn(latency=30).start()
    client = openai.OpenAI(base_url=api.base_url, api_key="sk-any", max_retries=0, timeout=10)
    errors: list[Exception] = []

    def call() -> None:
        try:
            client.images.generate(prompt="a slow cat")
        except openai.APIError as error:
            errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    assert api.wait_in_flight(1, timeout=5)
    began = time.monotonic()
    api.stop()
    assert time.monotonic() - began < 1.0
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_non_loopback_hosts_are_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ImagesStandIn(host="0.0.0.0")


def test_command_line_serves_and_stops_on_sigterm() -> None:
    key = "sk-cli-secret-key-0123"
    options = ["--latency", "0.05", "--api-key", key, "--verbose"]
    with StandInServer("openai_standin", *options) as server:
        line = server.output[0]
        assert re.fullmatch(r"openai-standin listening on http://127\.0\.0\.1:\d+/v1", line), line
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=5)
        assert client.images.generate(prompt="a cat").data is not None
        port = int(urlsplit(server.base_url).port or 0)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        body = json.dumps({"name": "overloaded", "count": 1})
        connection.request("POST", "/_standin/fault", body=body)
        answer = connection.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["faults"]["overloaded"]["remaining"] == 1
        with pytest.raises(openai.InternalServerError):
            client.images.generate(prompt="a cat")
        connection.request("GET", "/_standin/calls")
        calls = json.loads(connection.getresponse().read())["calls"]
        assert [(c["status"], c["fault"]) for c in calls] == [(200, None), (503, "overloaded")]
        connection.close()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    logged = "\n".join(server.output)
    assert "POST /v1/images/generations" in logged
    assert "cli-secret" not in logged  # the key is never logged


def test_command_line_refuses_a_public_host() -> None:
    result = run_standin("openai_standin", "--host", "0.0.0.0", timeout=10)
    assert result.returncode == 2 and "loopback" in result.stderr
