"""Typed field readers for the hand-written policy schema: each names the key path when it refuses."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime

from validator.policy.source import Source, suggest

_MISSING = object()


class Fields:
    """Reads values out of one mapping of the policy, checking type and range as it goes."""

    def __init__(self, raw: object, path: str, source: Source, allowed: Iterable[str], what: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise source.error(path, f"{what} must be a mapping, got {_type(raw)}")
        allowed = tuple(allowed)
        for key in raw:
            if key not in allowed:
                raise source.error(self._join(path, key), f"unknown key {key!r} in {what}"
                                   + suggest(key, allowed))
        self.raw, self.path, self.source = raw, path, source

    @staticmethod
    def _join(path: str, key: object) -> str:
        return f"{path}.{key}" if path else str(key)

    def key_path(self, key: str) -> str:
        return self._join(self.path, key)

    def error(self, key: str, message: str):
        return self.source.error(self.key_path(key), message)

    def _get(self, key: str, default: object):
        value = self.raw.get(key, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.error(key, f"required key {key!r} is missing")
            return default, False
        return value, True

    def string(self, key: str, default: object = _MISSING) -> str | None:
        value, given = self._get(key, default)
        if not given:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {_type(value)} {value!r}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: object = _MISSING) -> str:
        choices = tuple(choices)
        value, given = self._get(key, default)
        if given and value not in choices:
            raise self.error(key, f"unknown value {value!r}" + suggest(value, choices))
        return value

    def integer(self, key: str, default: object = _MISSING, *, lo: int | None = None) -> int | None:
        value, given = self._get(key, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_type(value)} {value!r}")
        if lo is not None and value < lo:
            raise self.error(key, f"must be >= {lo}, got {value}")
        return value

    def number(self, key: str, default: object = _MISSING, *, lo: float = -math.inf,
               hi: float = math.inf, what: str = "") -> float | None:
        value, given = self._get(key, default)
        if not given:
            return value
        return check_number(value, lo, hi, lambda msg: self.error(key, msg), what)

    def day(self, key: str) -> date:
        value, _ = self._get(key, _MISSING)
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(key, f"must be a date YYYY-MM-DD, got {_type(value)} {value!r}")

    def raw_value(self, key: str, default: object = None) -> object:
        value = self.raw.get(key, default)
        return default if value is None else value


def check_number(value: object, lo: float, hi: float, fail, what: str = "") -> float:
    """A finite int/float inside [lo, hi]; ``fail(message)`` builds the error to raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"must be a number, got {_type(value)} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise fail(f"must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise fail(f"{value:g} is outside {what or 'the valid range'} [{lo:g}, {hi:g}]")
    return value


def _type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
