"""Options declared once, in tables: the settings, the command-line flags and ``.env.example``
are derived from them.

An ``Option`` says its field (``key``, also the flag's ``dest``), its environment variable,
its default (as text, read like any value), how its text becomes a value (``convert``), one
line of help and its flag (``None``: from the environment only). ``resolve`` reads a table,
each value from its flag (``None`` = not given), else the environment, else the default, as
watchfiles does, in one place. A converter raises ``ConfigError`` with words that name the
variable, e.g. ``SORA_TIMEOUT='x': expected a float``.

This module knows no option: the core table is in ``sora_watcher.config``, each backend's
in a light module of its own (see ``sora_watcher.backends``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=Enum)

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}

Flags = Mapping[str, object | None]  # argparse's dests; None: the flag was not given
# (variable name, text, home) -> value. ``home`` is SORA_HOME, for relative paths.
Convert = Callable[[str, str, Path], T]


class ConfigError(ValueError):
    """A setting that cannot be read; the message names the variable."""


class Choice(str, Enum):
    """A setting's word among a few: its value is the word users write."""

    def __str__(self) -> str:  # the word in messages and f-strings, not Choice.NAME
        return str(self.value)


@dataclass(frozen=True)
class Option(Generic[T]):
    key: str  # the field's name and the flag's dest
    env: str  # the environment variable
    default: str  # text, converted like any value
    convert: Convert[T]
    help: str  # one line, for the flag and to review .env.example against
    flag: str | None = None  # e.g. "--base-url"; None: from the environment only
    const: str | None = None  # a flag without a value that stands for this text ("--headed")
    blank_is_default: bool = False  # an empty variable means the default, not ""

    def given(self, flags: Flags, environ: Mapping[str, str]) -> bool:
        """Whether the flag or the variable was set (rather than the default used)."""
        return flags.get(self.key) is not None or self.env in environ

    def text(self, flags: Flags, environ: Mapping[str, str]) -> str:
        flag = flags.get(self.key)
        if flag is not None:
            return str(flag)
        value = environ.get(self.env, self.default)
        return (value or self.default) if self.blank_is_default else value

    def read(self, flags: Flags, environ: Mapping[str, str], home: Path) -> T:
        return self.convert(self.env, self.text(flags, environ), home)


def or_default(key: str, env: str, default: str, convert: Convert[T], help: str) -> Option[T]:
    """An option of the environment only, whose empty variable (``X=`` as ``.env.example``
    writes it) means its default: the backends' sections."""
    return Option(key, env, default, convert, help, blank_is_default=True)


Table = tuple[Option[Any], ...]


def resolve(table: Table, flags: Flags, environ: Mapping[str, str], home: Path) -> dict[str, Any]:
    """Each option of ``table`` by its key: flag > environment > default, converted."""
    return {option.key: option.read(flags, environ, home) for option in table}


def add_flags(
    parser: argparse.ArgumentParser, table: Table, title: str | None = None, default: Any = None
) -> None:
    """The command-line flags of the options that have one (the dest is the option's key),
    under ``title`` in ``--help`` if given. ``default``: what a flag not given leaves
    (``argparse.SUPPRESS``: nothing, so that it does not hide the same flag given earlier)."""
    flagged = [(option.flag, option) for option in table if option.flag is not None]
    target = parser.add_argument_group(title) if title and flagged else parser
    for flag, option in flagged:
        words = f"{option.help} ({option.env})".replace("%", "%%")  # argparse formats help
        if option.const is None:
            target.add_argument(flag, dest=option.key, default=default, help=words)
        else:
            target.add_argument(
                flag,
                dest=option.key,
                action="store_const",
                const=option.const,
                default=default,
                help=words,
            )


def check_fields(table: Table, fields: type, besides: tuple[str, ...] = ()) -> None:
    """Fail at import when a settings class and its table do not name the same options
    (``besides``: the class's fields that are not options)."""
    names = {option.key for option in table} | set(besides)
    declared = {field.name for field in dataclasses.fields(fields)}
    if names != declared:
        raise TypeError(
            f"{fields.__name__} and its table differ: "
            f"fields without an option {sorted(declared - names)}, "
            f"options without a field {sorted(names - declared)}"
        )


# -- the checks, as the words of the messages say them ---------------------------------------


def number(
    name: str,
    text: str,
    kind: type[float] | type[int],
    minimum: float,
    maximum: float | None = None,
) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a {kind.__name__}") from None
    if not math.isfinite(value):  # "nan" compares false with any bound, "inf" passes a minimum
        raise ConfigError(f"{name}={text!r}: expected a finite {kind.__name__}")
    if value < minimum:
        raise ConfigError(f"{name}={text!r}: must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={text!r}: must be at most {maximum:g}")
    return value


def choice(name: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ConfigError(f"{name}={text!r}: expected one of {', '.join(allowed)}")
    return text


def boolean(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={text!r}: expected true or false")


# -- converters, for the tables --------------------------------------------------------------


def seconds(minimum: float) -> Convert[float]:
    """A float of at least ``minimum``."""
    return lambda name, text, _home: number(name, text, float, minimum)


def between(least: float, most: float) -> Convert[float]:
    """A float from ``least`` to ``most``."""
    return lambda name, text, _home: number(name, text, float, least, most)


def count(minimum: int) -> Convert[int]:
    """An int of at least ``minimum``."""
    return lambda name, text, _home: int(number(name, text, int, minimum))


def one_of(kind: type[E]) -> Convert[E]:
    """A member of the enum ``kind``, written as its value."""
    words = tuple(str(member.value) for member in kind)
    return lambda name, text, _home: kind(choice(name, text, words))


def flag_word(name: str, text: str, _home: Path) -> bool:
    return boolean(name, text)


def verbatim(_name: str, text: str, _home: Path) -> str:
    return text


def text_or_none(_name: str, text: str, _home: Path) -> str | None:
    return text or None


def url(_name: str, text: str, _home: Path) -> str:
    """A base URL, without the trailing slash that paths are joined after."""
    return text.rstrip("/")


def absolute_path(_name: str, text: str, _home: Path) -> Path:
    """A path of its own (``~`` expanded), relative to the current folder."""
    return Path(text).expanduser().resolve()


def under_home(_name: str, text: str, home: Path) -> Path:
    """A path relative to SORA_HOME (an absolute one stays as it is)."""
    return home / Path(text).expanduser()


def under_home_or_none(name: str, text: str, home: Path) -> Path | None:
    return under_home(name, text, home) if text else None
