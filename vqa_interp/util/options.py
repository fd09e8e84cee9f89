"""Typed options: a frozen dataclass whose fields say their default, what they mean and what is
allowed (:func:`option`), read from one config section by :func:`read_options`, which checks every
value once and refuses unknown keys in one line naming the key, what is allowed and the fix.

The same fields give the reference tables of the docs and the config's help (:func:`option_rows`),
and the tests check the YAML defaults against them (:func:`default_values`), so an option is
defined in one place: the class beside the code that uses it (transformers' configuration style).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from vqa_interp.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    nullable: bool = False,
    kind: type | None = None,
    items: type | None = None,
):
    """A dataclass field with its meaning and checks: ``choices`` (allowed values), ``minimum`` /
    ``maximum`` (inclusive), ``above`` / ``below`` (exclusive bounds), ``nullable`` (null allowed),
    ``kind`` (bool, int, float or str; default: the default's type), ``items`` (a list of that type,
    read as a tuple)."""
    if kind is None and isinstance(default, dict):
        kind = dict
    elif kind is None and default is not None and not isinstance(default, (list, tuple)):
        kind = type(default)
    meta = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
        "below": below,
        "nullable": nullable or default is None,
        "kind": kind,
        "items": items,
    }
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta, hash=False)
    return dataclasses.field(default=default, metadata=meta)


def one_of(value, allowed, key: str) -> None:
    """``value`` must be one of ``allowed``, else a one-line :class:`ConfigError` naming ``key``."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; expected one of {list(allowed)}.")


def number(value, key: str, what: str) -> float:
    """A finite number, else a one-line :class:`ConfigError` naming ``key`` and ``what`` is expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a number; expected {what}.")
    return float(value)


def integer(value, key: str, minimum: int, what: str = "") -> int:
    """An integer ``>= minimum``, else a one-line :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}; expected an integer >= {minimum}{what}.")
    return int(value)


def _range_text(meta: dict) -> str:
    parts = []
    if meta["above"] is not None:
        parts.append(f"> {meta['above']:g}")
    if meta["minimum"] is not None:
        parts.append(f">= {meta['minimum']:g}")
    if meta["maximum"] is not None:
        parts.append(f"<= {meta['maximum']:g}")
    if meta["below"] is not None:
        parts.append(f"< {meta['below']:g}")
    return " and ".join(parts)


def check_value(value, meta: dict, key: str):
    """``value`` checked against one field's ``meta`` (see :func:`option`); returns it typed."""
    if value is None:
        if meta["nullable"]:
            return None
        raise ConfigError(f"{key}=null; expected {describe(meta)}.")
    if meta["choices"] is not None:
        one_of(value, meta["choices"], key)
        return value
    if meta["items"] is not None:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}={value!r}; expected a list, e.g. {key}=[...]")
        return tuple(
            check_value(v, {**meta, "items": None, "kind": meta["items"], "nullable": False}, f"{key}[]") for v in value
        )
    kind = meta["kind"]
    if kind is bool:
        if not isinstance(value, bool):  # no, off, 0 are refused, never read as true
            raise ConfigError(f"{key}={value!r}; expected true or false.")
        return value
    if kind in (int, float):
        return _check_number(value, meta, key)
    if kind is str:
        return str(value)
    if kind is dict and not isinstance(value, Mapping):
        raise ConfigError(f"{key}={value!r}; expected {describe(meta)} (a group of keys, e.g. {key}.name=value).")
    return value


def _check_number(value, meta: dict, key: str) -> float | int:
    """A finite number of the field's kind within its bounds, typed."""
    kind = meta["kind"]
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{key}={value!r}; expected {describe(meta)}.")
    value = kind(value)
    low_ok = meta["minimum"] is None or value >= meta["minimum"]
    above_ok = meta["above"] is None or value > meta["above"]
    high_ok = meta["maximum"] is None or value <= meta["maximum"]
    below_ok = meta["below"] is None or value < meta["below"]
    if not (low_ok and above_ok and high_ok and below_ok):
        raise ConfigError(f"{key}={value!r}; expected {describe(meta)}.")
    return value


def describe(meta: dict) -> str:
    """What a field allows, in words: ``an integer >= 1``, ``one of [...]``, ``true or false``."""
    if meta["choices"] is not None:
        text = f"one of {list(meta['choices'])}"
    elif meta["items"] is not None:
        text = f"a list of {meta['items'].__name__} values"
    elif meta["kind"] is bool:
        text = "true or false"
    elif meta["kind"] is dict:
        text = "a group of keys"
    elif meta["kind"] in (int, float):
        text = ("an integer" if meta["kind"] is int else "a number") + (
            f" {_range_text(meta)}" if _range_text(meta) else ""
        )
    else:
        text = "a string"
    return text + (" or null" if meta["nullable"] else "")


def read_options(cls, values: Mapping | None, prefix: str, *, keep_unknown: bool = False, **given):
    """An instance of the options class ``cls`` from a config section ``values`` (a plain mapping;
    a missing key keeps its default). ``given``: fields set by the caller, not read from ``values``.
    An unknown key is refused, naming the allowed ones, unless ``keep_unknown`` (the caller's
    ``(instance, unknown)`` pair is returned then)."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("help") is not None}
    unknown = sorted(k for k in values if k not in fields and k not in given)
    if unknown and not keep_unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]} is not a key of {prefix}; expected one of {sorted(fields)} "
            f"(conf/ and docs/reference/config.md list each with its meaning)."
        )
    read = {
        name: check_value(values[name], f.metadata, f"{prefix}.{name}")
        for name, f in fields.items()
        if name in values and name not in given
    }
    instance = cls(**read, **given)
    if keep_unknown:
        return instance, {k: values[k] for k in unknown}
    return instance


def default_values(cls) -> dict[str, Any]:
    """Every documented field's default, by name."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("help") is None:
            continue
        out[f.name] = f.default if f.default is not _MISSING else f.default_factory()
    return out


def option_rows(cls, prefix: str) -> list[dict[str, str]]:
    """One row per documented field: ``key``, ``default``, ``allowed`` and ``meaning``."""
    defaults = default_values(cls)
    return [
        {
            "key": f"{prefix}.{f.name}",
            "default": _shown(defaults[f.name]),
            "allowed": describe(f.metadata),
            "meaning": f.metadata["help"],
        }
        for f in dataclasses.fields(cls)
        if f.metadata.get("help") is not None
    ]


def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
