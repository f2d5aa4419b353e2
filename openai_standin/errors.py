"""The OpenAI API's error answers, worded as the real API words them.

Route code raises ApiError; the handler answers `{"error": {message, type, param, code}}` with
its status and headers. The daemon classifies failures by status, type and code and shows the
message to its user, so the wording follows /work/shared/openai-images-notes.md closely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

KEYS_URL = "https://platform.openai.com/account/api-keys"


class ApiError(Exception):
    """An error answer: HTTP status, the four fields of the error object, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_
        self.param, self.code = param, code
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**error, "code": self.code}}


def mask_key(key: str) -> str:
    """The key as the real API echoes it: a few first characters, stars, the last 4."""
    if len(key) > 11:
        return key[:7] + "*" * (len(key) - 11) + key[-4:]
    # A short key would be almost entirely shown by the rule above.
    return key[:2] + "*" * max(len(key) - 2, 1)


def invalid_api_key(key: str) -> ApiError:
    message = (
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {KEYS_URL}."
    )
    return ApiError(401, message, code="invalid_api_key")


def missing_api_key() -> ApiError:
    message = (
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
        "field (with blank username) if you're accessing the API from your browser and are "
        f"prompted for a username. You can obtain an API key from {KEYS_URL}."
    )
    return ApiError(401, message)


def model_not_found(model: str) -> ApiError:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return ApiError(404, message, code="model_not_found")


def invalid_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})")


def unparsable_json() -> ApiError:
    message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
        "contact us through our help center at help.openai.com.)"
    )
    return ApiError(400, message)


def body_too_large(limit: int) -> ApiError:
    message = f"Request body too large: the maximum is {limit} bytes."
    return ApiError(413, message, code="request_too_large")


def rate_limited(model: str, limit: int, used: int, retry_after: float) -> ApiError:
    message = (
        f"Rate limit reached for {model} in organization org-standin on images per minute "
        f"(IPM): Limit {limit}, Used {used}, Requested 1. "
        f"Please try again in {retry_after:g}s."
    )
    headers = retry_headers(retry_after)
    return ApiError(429, message, "requests", code="rate_limit_exceeded", headers=headers)


def retry_headers(seconds: float) -> list[tuple[str, str]]:
    # retry-after in whole seconds as HTTP wants; retry-after-ms is exact and the openai
    # package reads it first.
    return [
        ("retry-after", str(math.ceil(seconds))),
        ("retry-after-ms", str(round(seconds * 1000))),
    ]


def server_error() -> ApiError:
    message = "The server had an error while processing your request. Sorry about that!"
    return ApiError(500, message, "server_error")


def quoted_list(values: Sequence[str]) -> str:
    """'a', 'b', and 'c': how the API lists supported values."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def invalid_value(param: str, value: object, supported: Sequence[str]) -> ApiError:
    message = f"Invalid value: '{value}'. Supported values are: {quoted_list(supported)}."
    return ApiError(400, message, param=param, code="invalid_value")
