"""Typed, validated stage options, declared as dataclasses.

A stage declares ``Options`` as a dataclass whose fields have defaults and
simple types (``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, unions
with ``None``, ``dict[str, str]``, lists and tuples of those, and nested
options dataclasses given as tables). :func:`parse_options` turns a mapping
(from a preset table or ``--set``) into an instance, and refuses unknown keys
and wrong types with a message naming what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from vsr.errors import UsageError

T = TypeVar("T")


@dataclasses.dataclass
class NoOptions:
    """For stages that take no options."""


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "none"
    if origin is dict:
        return "table"
    if origin in (list, tuple):
        return f"a list of {' and '.join(_describe(a) for a in get_args(tp) if a is not Ellipsis)}"
    if dataclasses.is_dataclass(tp):
        return f"a table of {tp.__name__} options"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise ``TypeError``."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None or value in ("none", ""):
            return None
        raise TypeError
    if origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: str(v) for k, v in value.items()}
        raise TypeError
    if origin is list:
        if isinstance(value, list | tuple):
            return [_coerce(item, get_args(tp)[0]) for item in value]
        raise TypeError
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise TypeError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in value)
        if len(value) != len(args):
            raise TypeError
        return tuple(_coerce(item, arg) for item, arg in zip(value, args, strict=True))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return parse_options(tp, value, f"the {tp.__name__} table")  # its own errors name its keys
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def option_fields(cls: type) -> dict[str, Any]:
    """Field name to resolved type for an options dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe_options(cls: type) -> list[tuple[str, str, Any]]:
    """``(name, type description, default)`` for each option."""
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append((f.name, _describe(option_fields(cls)[f.name]), default))
    return out


def parse_options(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Validate ``values`` against the options dataclass ``cls``.

    Args:
        cls: the stage's ``Options`` dataclass.
        values: option values, e.g. a preset table with ``--set`` applied.
        where: what to name in errors, e.g. ``"upscale stage 'esrgan'"``.
    """
    fields = option_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise UsageError(f"unknown option {', '.join(unknown)} for {where} (known options: {known})")
    kwargs = {}
    for name, value in values.items():
        try:
            kwargs[name] = _coerce(value, fields[name])
        except TypeError:
            raise UsageError(f"option {name} for {where} must be {_describe(fields[name])}, got {value!r}") from None
    instance = cls(**kwargs)
    check = getattr(instance, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            raise UsageError(f"{where}: {problem}")
    return instance
