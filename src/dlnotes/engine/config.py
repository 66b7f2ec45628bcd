"""Typed dataclass configs with ``--set key=value`` overrides.

A recipe's config is a ``@dataclass`` whose fields all have defaults (the defaults are the
``full`` budget); presets are dicts of dotted overrides applied on top. Nested dataclasses
are addressed with dots (``--set model.hidden=256``). Values are parsed against the field's
annotated type; anything unknown or unparsable raises :class:`ConfigError` with the list of
valid keys, which the CLI prints before exiting non-zero.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad config key or value; the message names it and lists what is valid."""


def require_positive(cfg, *names: str) -> None:
    """Raise ConfigError naming the first field in ``names`` whose value is not > 0 (with its default as an example)."""
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ConfigError(f"{name}: {value}; use a number > 0 (the default is {getattr(type(cfg)(), name)})")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cfg) -> dict[str, str]:
    """Every dotted key of ``cfg`` with a readable type name, nested dataclasses expanded."""
    out: dict[str, str] = {}
    for name, tp in _field_types(type(cfg)).items():
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value):
            for k, t in valid_keys(value).items():
                out[f"{name}.{k}"] = t
        else:
            out[name] = getattr(tp, "__name__", str(tp).replace("typing.", ""))
    return out


def _keys_help(cfg) -> str:
    rows = [f"  {k} ({t}) = {json.dumps(get_key(cfg, k), default=str)}" for k, t in valid_keys(cfg).items()]
    return "valid keys:\n" + "\n".join(rows)


def get_key(cfg, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def parse_value(text: str, tp, key: str = "?"):
    """Parse the string ``text`` as type ``tp`` (bool, int, float, str, Optional, Literal, tuple/list)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: cannot parse {text!r} as {tp}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ConfigError(f"{key}: {text!r} is not one of {list(args)}")
    if origin in (list, tuple):
        items = [s for s in text.strip("[]()").split(",") if s.strip()]
        inner = args[0] if args else str
        vals = [parse_value(s.strip(), inner, key) for s in items]
        return tuple(vals) if origin is tuple else vals
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: {text!r} is not a boolean (use true/false)")
    if tp is int:
        try:
            f = float(text)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not an integer") from None
        if not f.is_integer():
            raise ConfigError(f"{key}: {text!r} is not an integer")
        return int(f)
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not a number") from None
    if tp is str:
        return text
    raise ConfigError(f"{key}: unsupported field type {tp}")


def set_key(cfg, key: str, value) -> None:
    """Set dotted ``key``; ``value`` may be a string (parsed) or an already typed value."""
    parts = key.split(".")
    obj = cfg
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(obj) or part not in _field_types(type(obj)):
            raise ConfigError(f"unknown config key {key!r}\n{_keys_help(cfg)}")
        obj = getattr(obj, part)
    name = parts[-1]
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"unknown config key {key!r}\n{_keys_help(cfg)}")
    types_ = _field_types(type(obj))
    if name not in types_ or dataclasses.is_dataclass(getattr(obj, name)):
        raise ConfigError(f"unknown config key {key!r}\n{_keys_help(cfg)}")
    tp = types_[name]
    if isinstance(value, str) and tp is not str:
        try:
            value = parse_value(value, tp, key)
        except ConfigError as e:
            raise ConfigError(f"bad value for {e}\n{_keys_help(cfg)}") from None
    setattr(obj, name, value)


def apply_overrides(cfg, overrides) -> Any:
    """Apply ``["a.b=1", ...]`` or ``{"a.b": 1}`` to ``cfg`` in place and return it."""
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}\n{_keys_help(cfg)}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
        items = pairs
    for k, v in items:
        set_key(cfg, k, v)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a config from :func:`to_dict` output (nested dataclasses included)."""
    kwargs = {}
    types_ = _field_types(cls)
    for k, v in data.items():
        if k not in types_:
            raise ConfigError(f"config.json has unknown key {k!r} for {cls.__name__}")
        tp = types_[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            v = from_dict(tp, v)
        elif typing.get_origin(tp) is tuple and isinstance(v, list):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)
