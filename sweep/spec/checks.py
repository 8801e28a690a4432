"""The checks a spec's values pass as it is parsed: each returns the value as the spec means it, or raises
SpecError naming the key path, the bad value, what is allowed and, for near-miss names, a "did you mean"."""
from __future__ import annotations

import difflib
import math
import re
from typing import Any

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SpecError(ValueError):
    """A spec that cannot be used; the message is one line for the user."""


def _fail(path: str, message: str) -> None:
    raise SpecError(f"{path}: {message}" if path else message)


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _did_you_mean(value: str, allowed) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choice(value: Any, allowed, path: str, what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        hint = _did_you_mean(value, allowed) if isinstance(value, str) else ""
        _fail(path, f"{_show(value)} is not a known {what}; allowed: {', '.join(allowed)}{hint}")
    return value


def _mapping(value: Any, path: str, allowed_keys, required=()) -> dict:
    if not isinstance(value, dict):
        _fail(path, f"expected a mapping, got {_show(value)}")
    unknown = [k for k in value if k not in allowed_keys]
    if unknown:
        key = unknown[0]
        where = f"{path}.{key}" if path else str(key)
        _fail(where, f"unknown key; allowed: {', '.join(allowed_keys)}{_did_you_mean(str(key), allowed_keys)}")
    for key in required:
        if key not in value:
            _fail(f"{path}.{key}" if path else key, "missing required key")
    return value


# YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants a dot (1.0e-3) and a sign on the exponent. Papers and
# `--where lr=1e-3` write it that way, so a string of exactly this form is the number it spells.
_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _whole(value: Any) -> int | None:
    """`value` as an int where it is a whole number, however written (6000, 6e3, 6.0e3, as papers write
    it); None for anything else (6.5, true, 'six')."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        value = float(value)
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: Any, path: str, minimum: int = 1) -> int:
    """A whole number >= minimum (see _whole)."""
    whole = _whole(value)
    if whole is None:
        _fail(path, f"{_show(value)} is not an integer")
    value = whole
    if value < minimum:
        _fail(path, f"{value} must be >= {minimum}")
    return value


def _number(value: Any, path: str, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, f"{_show(value)} is not a finite number")
    if positive and value <= 0:
        _fail(path, f"{value!r} must be > 0")
    if minimum is not None and value < minimum:
        _fail(path, f"{value!r} must be >= {minimum:g}")
    return float(value)


def _items(value: Any, path: str) -> list[tuple[str, Any]]:
    """(path, value) of each value of a list; a lone value (`seed: 0`, `activation: relu`) is a list of one,
    named by the key's own path."""
    if value is None:
        _fail(path, "expected a value or a list, got None")
    if not isinstance(value, list):
        return [(path, value)]
    if not value:
        _fail(path, "empty list; give at least one value")
    return [(f"{path}[{i}]", v) for i, v in enumerate(value)]


def _unique(values: list, path: str, key=lambda v: v) -> None:
    """Refuse repeated grid values: they would train the same trial twice."""
    seen = set()
    for i, v in enumerate(values):
        k = key(v)
        if k in seen:
            _fail(f"{path}[{i}]", f"duplicate value {k!r}; each grid value may appear once")
        seen.add(k)


def _safe_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        _fail(path, f"{_show(value)} is not a safe folder name; use letters, digits, '.', '_' or '-' "
                    "(starting with a letter or digit, at most 100 characters)")
    return value
