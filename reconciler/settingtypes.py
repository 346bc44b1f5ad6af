"""The type of each setting, checked: a value from the TOML file must already have it, and an
environment variable's text is converted to it. A mismatch is one ConfigError naming the key.

TOML has types, so `max_retries = "3"` is a string where a whole number belongs: refused, not
quietly converted, as a misspelt key is refused rather than ignored.
"""

from __future__ import annotations

from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from reconciler.errors import ConfigError

_WHAT = {int: "a whole number", float: "a number", str: "a string", Path: "a string (a path)",
         bool: "true or false"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def kind_of(hint: Any) -> type:
    """The type a setting's annotation asks for: `int | None` -> int, a Literal -> str."""
    if get_origin(hint) in (Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is Literal:
        return str
    return get_origin(hint) or hint  # type: ignore[no-any-return]


def checked(key: str, kind: type, value: Any) -> Any:
    """A value read from the file, as `kind`; an integer is a number too (2 -> 2.0)."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind in (str, Path):
        ok = isinstance(value, str)
    else:
        return value                     # tables (daemon schedules) are checked by their reader
    if not ok:
        raise ConfigError(f"{key} must be {_WHAT[kind]}, not {_shown(kind, value)}")
    return kind(value)


def from_text(key: str, kind: type, text: str, variable: str) -> Any:
    """An environment variable's text as `kind` (text stays text)."""
    try:
        if kind is int:
            return int(text.strip())
        if kind is float:
            return float(text.strip())
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
    except ValueError:
        raise ConfigError(f"{key} must be {_WHAT[kind]}, not {text!r} (from {variable})"
                          ) from None
    return text


def _shown(kind: type, value: Any) -> str:
    if isinstance(value, str) and kind is not str:
        try:
            from_text("", kind, value, "")
        except ConfigError:
            return repr(value)
        return f"the string {value!r} (write it without quotes)"
    return repr(value)
