"""Failures of the real Images API, armed by tests and demos or asked for by a prompt.

A fault is armed for the next N generation calls (None: until cleared) and consumed by them,
once they have passed the key and parameter checks; a prompt containing `[fault:NAME]` gets
fault NAME on every call, without consuming what is armed.

    name                      answer                                       params (default)
    moderation_blocked        400 image_generation_user_error              violations="sexual"
    content_policy_violation  400 invalid_request_error (older wording)
    bad_request               400 "Invalid value: ..." naming `param`      param="size"
    invalid_api_key           401 (armed until cleared: model lookups too)
    org_not_verified          403 "Your organization must be verified ..."
    model_not_found           404 for the model asked
    rate_limit_exceeded       429 with retry-after and retry-after-ms      retry_after=1.0
    insufficient_quota        429, without retry-after by default
    server_error              500 JSON
    bad_gateway_html          502 HTML page, as from a proxy
    html_page_200             200 with an HTML page, as from a captive portal or a proxy
    overloaded                503 JSON
    hang                      nothing until stop(), or for `seconds`       seconds=None
                              and then answered as usual
    reset                     the connection is cut without an answer
    empty_data, broken_base64, truncated_image, not_an_image
                              200 after the usual latency, unusable `data`

Every fault also takes retry_after (default None, 1.0 for rate_limit_exceeded): seconds sent in
retry-after and retry-after-ms headers with its error answer, if it has one. Error faults
answer at once and take no generation slot; the four 200 faults are generations (a slot, the
latency) whose answer is spoiled.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from standin_kit import Switches

from . import errors
from .errors import ApiError
from .params import supported_values

# Each fault's own parameters with their defaults; the default's type is the accepted type
# (None: a number, or None).
_OWN_PARAMS: dict[str, dict[str, Any]] = {
    "moderation_blocked": {"violations": "sexual"},
    "content_policy_violation": {},
    "bad_request": {"param": "size"},
    "invalid_api_key": {},
    "org_not_verified": {},
    "model_not_found": {},
    "rate_limit_exceeded": {"retry_after": 1.0},
    "insufficient_quota": {},
    "server_error": {},
    "bad_gateway_html": {},
    "html_page_200": {},
    "overloaded": {},
    "hang": {"seconds": None},
    "reset": {},
    "empty_data": {},
    "broken_base64": {},
    "truncated_image": {},
    "not_an_image": {},
}
# retry_after is common to all, so that a test can arm any transient fault the same way.
DEFAULT_PARAMS = {name: {"retry_after": None, **own} for name, own in _OWN_PARAMS.items()}
NAMES = tuple(DEFAULT_PARAMS)
DATA_FAULTS = ("empty_data", "broken_base64", "truncated_image", "not_an_image")
MARKER = re.compile(r"\[fault:([a-z_]+)\]")
BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_NOT_AN_IMAGE = (
    b"<!DOCTYPE html><html><head><title>Access denied</title></head><body></body></html>"
)


def _check_value(name: str, key: str, value: Any, default: Any) -> None:
    # bool is an int in Python, but `retry_after=True` is surely a mistake.
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name}: {key} must be a string")
    # None only where it is the default: hang's seconds, meaning until stop().
    elif not number and not (value is None and default is None):
        raise ValueError(f"{name}: {key} must be a number >= 0")


def from_prompt(prompt: str) -> str | None:
    """The fault a prompt asks for with `[fault:NAME]` (unknown names are plain text)."""
    for match in MARKER.finditer(prompt):
        if match[1] in DEFAULT_PARAMS:
            return match[1]
    return None


class Faults(Switches):
    """Armed faults; every method is safe to call from the server's threads.

    take() consumes one call of the earliest armed fault: (name, params), or None.
    """

    def __init__(self) -> None:
        super().__init__(DEFAULT_PARAMS, _check_value, kind="fault", null="None")


def error(
    name: str, params: dict[str, Any], *, key: str, model: str, value: object, request_id: str
) -> ApiError:
    """The error answer of an error fault; `value` is the request's value of params["param"]."""
    answer = _error(name, params, key=key, model=model, value=value, request_id=request_id)
    if params["retry_after"] is not None and name != "rate_limit_exceeded":
        answer.headers += errors.retry_headers(params["retry_after"])
    return answer


def _error(
    name: str, params: dict[str, Any], *, key: str, model: str, value: object, request_id: str
) -> ApiError:
    if name == "moderation_blocked":
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, "
            f"contact us at help.openai.com and include the request ID {request_id}. "
            f"safety_violations=[{params['violations']}]."
        )
        return ApiError(400, message, "image_generation_user_error", code="moderation_blocked")
    if name == "content_policy_violation":
        message = (
            "Your request was rejected as a result of our safety system. Your prompt may "
            "contain text that is not allowed by our safety system."
        )
        return ApiError(400, message, code="content_policy_violation")
    if name == "bad_request":
        param = params["param"]
        supported = supported_values(param, model) or ("a valid value",)
        return errors.invalid_value(param, value, supported)
    if name == "invalid_api_key":
        return errors.invalid_api_key(key)
    if name == "org_not_verified":
        message = (
            f"Your organization must be verified to use the model `{model}`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify "
            "Organization. If you just verified, it can take up to 15 minutes for access to "
            "propagate."
        )
        return ApiError(403, message)
    if name == "model_not_found":
        return errors.model_not_found(model)
    if name == "rate_limit_exceeded":
        return errors.rate_limited(model, 5, 5, float(params["retry_after"]))
    if name == "insufficient_quota":
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        return ApiError(429, message, "insufficient_quota", code="insufficient_quota")
    if name == "server_error":
        return errors.server_error()
    if name == "overloaded":
        message = "The engine is currently overloaded, please try again later."
        return ApiError(503, message, "server_error")
    raise ValueError(f"fault {name!r} is not answered with a JSON error")


def spoil(name: str, b64_json: str) -> str:
    """The `b64_json` a data fault sends instead of a good image."""
    if name == "broken_base64":
        # Cut to 4k+1 characters and add non-alphabet ones: even lenient decoders refuse it.
        text = b64_json.rstrip("=")
        return text[: max(1, (len(text) // 4 - 1) * 4 + 1)] + "#$"
    if name == "truncated_image":
        data = base64.b64decode(b64_json)
        return base64.b64encode(data[: len(data) // 2]).decode()
    if name == "not_an_image":
        return base64.b64encode(_NOT_AN_IMAGE).decode()
    return b64_json
