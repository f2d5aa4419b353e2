"""Switches armed for the next N occurrences (or until cleared) and consumed as they fire.

Each stand-in names its own (sora_standin's scenarios, openai_standin's faults): their default
parameters, how a parameter's value is checked, and the words of its error messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

# check(name, key, value, default) raises ValueError if `value` does not fit parameter `key`.
ValueCheck = Callable[[str, str, Any, Any], None]


@dataclass
class _Armed:
    remaining: int | None  # None: until cleared
    params: dict[str, Any]


class Switches:
    """Armed switches; every method is safe to call from the server's threads.

    `defaults` gives each switch's parameters with their defaults; `kind` ("scenario",
    "fault") and `null` (how the caller spells None: "null", "None") word the errors.
    """

    def __init__(
        self,
        defaults: Mapping[str, Mapping[str, Any]],
        check: ValueCheck,
        *,
        kind: str,
        null: str,
    ) -> None:
        self.defaults = defaults
        self._check = check
        self._kind, self._null = kind, null
        self._lock = threading.Lock()
        self._armed: dict[str, _Armed] = {}

    def arm(self, name: str, count: int | None, params: dict[str, Any]) -> None:
        """Arm `name` for `count` occurrences; arming it again replaces the previous one."""
        if name not in self.defaults:
            valid = ", ".join(self.defaults)
            raise ValueError(f"unknown {self._kind} {name!r} (valid: {valid})")
        if count is not None and (type(count) is not int or count < 1):
            raise ValueError(f"count must be {self._null} (until cleared) or an integer >= 1")
        armed = _Armed(count, self._checked_params(name, params))
        with self._lock:
            self._armed.pop(name, None)  # re-armed: it now comes last
            self._armed[name] = armed

    def _checked_params(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        defaults = self.defaults[name]
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            valid = ", ".join(defaults) or "none"
            raise ValueError(
                f"{self._kind} {name!r} has no parameter {unknown[0]!r} (valid: {valid})"
            )
        checked = dict(defaults)
        for key, value in params.items():
            self._check(name, key, value, defaults[key])
            checked[key] = value
        return checked

    def take(self, among: Container[str] | None = None) -> tuple[str, dict[str, Any]] | None:
        """Consume one occurrence of the earliest armed switch (`among` these names only, if
        given): (name, params), or None."""
        with self._lock:
            for name, armed in self._armed.items():
                if among is not None and name not in among:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        del self._armed[name]
                return name, dict(armed.params)
        return None

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{name: {"remaining": n or None, "params": {...}}} for what is still armed."""
        with self._lock:
            return {
                name: {"remaining": armed.remaining, "params": dict(armed.params)}
                for name, armed in self._armed.items()
            }

    def armed_forever(self, name: str) -> bool:
        """Whether `name` is armed until cleared."""
        with self._lock:
            armed = self._armed.get(name)
            return armed is not None and armed.remaining is None
