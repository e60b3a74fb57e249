"""Checks of configuration dataclasses against their annotations: a mistyped value in a YAML recipe
or a JSON file is an error naming the field, not a silent other behaviour. Every config dataclass of
ntkit calls ``check_fields`` in its ``__post_init__`` (or when read)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal

_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def check_fields(obj) -> None:
    """Check a config dataclass's values against its annotations (``Literal`` choices, ``int`` not
    ``"8"``, ``X | None``, ``tuple[float, float]``, ``list[str]``), so a mistyped value in a YAML
    recipe or a JSON file is an error naming the field, not a silent other behaviour."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()) and _matches(1.0, hints[f.name]):
            value = float(value)  # YAML 1.1 reads 1e6 (no dot) as a string; a number field means the number
            object.__setattr__(obj, f.name, value)
        if not _matches(value, hints[f.name]):
            raise ValueError(f"{type(obj).__name__}.{f.name}: {value!r} is not {_describe(hints[f.name])}")


def _matches(v, t) -> bool:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any:
        return True
    if origin is Literal:
        return v in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(v, a) for a in args)
    if t is type(None):
        return v is None
    if t is bool:
        return isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if origin is tuple:
        return isinstance(v, (tuple, list)) and len(v) == len(args) and all(_matches(x, a) for x, a in zip(v, args))
    if origin is list:
        return isinstance(v, list) and all(_matches(x, args[0]) for x in v)
    if origin is dict:
        return isinstance(v, dict)
    return isinstance(v, origin or t)


def _describe(t) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if t is type(None):
        return "null"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(t) or (f"a {getattr(t, '__name__', str(t))}" if origin is None else f"a {t}")
