"""Typed readers for the pack manifest's JSON: one place that says what a value must be.

Each reader takes the raw JSON value and its dotted path in the manifest (``encoders.text.layer``)
and returns the value with its Python type, or raises :class:`SchemaError` whose message names
the path, what was expected and what was found. JSON gives ``bool`` where a number is wanted as
easily as a number, so booleans are never numbers here; floats must be finite. The manifest
parser (:func:`msa_runtime.pack.parse_manifest`) turns a :class:`SchemaError` into a
:class:`~msa_runtime.errors.PackError`.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Collection, Mapping
from typing import Any

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SchemaError(ValueError):
    """A manifest value that is not what the format says (the message names its path)."""


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def obj(value: Any, where: str, *, nonempty: bool = False) -> dict[str, Any]:
    """A JSON object with string keys."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SchemaError(f"{where} must be an object, got {_show(value)}")
    if nonempty and not value:
        raise SchemaError(f"{where} must not be empty")
    return dict(value)


def array(value: Any, where: str, *, nonempty: bool = False, max_len: int = 100_000) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise SchemaError(f"{where} must be a list, got {_show(value)}")
    if nonempty and not value:
        raise SchemaError(f"{where} must not be empty")
    if len(value) > max_len:
        raise SchemaError(f"{where} has {len(value)} items, at most {max_len} allowed")
    return list(value)


def integer(value: Any, where: str, lo: int, hi: int) -> int:
    """An integer (never a bool or a float) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SchemaError(f"{where} must be an integer in [{lo}, {hi}], got {_show(value)}")
    number = int(value)
    if not lo <= number <= hi:
        raise SchemaError(f"{where} must be an integer in [{lo}, {hi}], got {number}")
    return number


def number(value: Any, where: str, lo: float, hi: float, *, above: bool = False) -> float:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``above``)."""
    span = f"{'(' if above else '['}{lo:g}, {hi:g}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SchemaError(f"{where} must be a number in {span}, got {_show(value)}")
    x = float(value)
    if not math.isfinite(x) or x < lo or x > hi or (above and x <= lo):
        raise SchemaError(f"{where} must be a number in {span}, got {value!r}")
    return x


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{where} must be true or false, got {_show(value)}")
    return value


def text(value: Any, where: str, *, nonempty: bool = True, max_len: int = 4096) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{where} must be a string, got {_show(value)}")
    if nonempty and not value:
        raise SchemaError(f"{where} must not be empty")
    if len(value) > max_len or "\x00" in value:
        raise SchemaError(f"{where} is not a usable string (too long or holds NUL)")
    return value


def choice(value: Any, where: str, options: Collection[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise SchemaError(f"{where} must be one of {', '.join(sorted(options))}; got {_show(value)}")
    return value


def sha256_hex(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise SchemaError(f"{where} must be a sha256 (64 lowercase hex digits), got {_show(value)}")
    return value


def file_name(value: Any, where: str) -> str:
    """A relative path inside the pack folder, written with ``/`` (no ``..``, not absolute)."""
    name = text(value, where, max_len=1024)
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise SchemaError(
            f"{where} {name!r} points outside the pack folder (give a relative path without '..')"
        )
    return name


def only_keys(data: Mapping[str, Any], known: Collection[str], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SchemaError(f"unknown {where} keys {unknown}; valid: {sorted(known)}")


def required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise SchemaError(f"{where} lacks the key {key!r}")
    return data[key]
