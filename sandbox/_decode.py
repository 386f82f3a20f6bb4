"""The fast path of the codec: one decode plan per model class.

Each model field's check (sandbox/models.py) states what it accepts in its ``spec``;
from the specs of a class this module builds, once, a plan that walks a wire dict,
converts each value and checks it in one pass, then makes the frozen instance
directly (no ``__init__``, so no second round of checks). Anything the plan does not
accept raises :class:`Refused`, and the codec then takes its full path (cattrs, every
problem with its pointer): a valid payload is decoded fast, an invalid one is
reported exactly as before. ``tests/test_decode.py`` checks both paths agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from sandbox.models import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTE_NUMBER,
    MAX_STRING_LENGTH,
    surrogate_at,
    too_precise,
    wire_name,
)

__all__ = ["Refused", "decoder_for"]

Decoder = Callable[[Any], Any]
_MISSING = object()


class Refused(Exception):  # noqa: N818 - a signal, not an error a user sees
    """The fast path does not accept this value; the codec's full path says why."""


# Raised as the class, so each refusal is a fresh instance: one shared instance would
# collect every raise's frames (and their locals, the payload) in its traceback, forever.
_REFUSED = Refused


def _unsafe(text: str) -> bool:
    """Not valid Unicode text (an unpaired surrogate): the full path says where."""
    return not text.isascii() and surrogate_at(text) is not None


def _text(min_length: int, max_length: int) -> Decoder:
    def decode(value: Any) -> Any:
        if isinstance(value, str) and min_length <= len(value) <= max_length and not _unsafe(value):
            return value
        raise _REFUSED

    return decode


def _integer(minimum: int, maximum: int) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is int and minimum <= value <= maximum:
            return value
        raise _REFUSED

    return decode


def _to_number(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if type(value) is int:
        return Decimal(value)
    if type(value) is float:
        return Decimal(repr(value))
    raise _REFUSED


def _number(minimum: Decimal | None, maximum: Decimal) -> Decoder:
    def decode(value: Any) -> Any:
        number = _to_number(value)
        if (
            not number.is_finite()
            or (minimum is not None and number < minimum)
            or number.copy_abs() >= maximum
            or too_precise(number)
        ):
            raise _REFUSED
        return number

    return decode


def _enum(enum_type: Any) -> Decoder:
    members = enum_type._value2member_map_

    def decode(value: Any) -> Any:
        if type(value) is str:
            member = members.get(value)
            if member is not None:
                return member
        elif isinstance(value, enum_type):
            return value
        raise _REFUSED

    return decode


def _array(item: Decoder, max_items: int | None) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, list | tuple) or (
            max_items is not None and len(value) > max_items
        ):
            raise _REFUSED
        return tuple([item(element) for element in value])

    return decode


def _object(item: Decoder) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _REFUSED
        result = {}
        for key, element in value.items():
            if type(key) is not str or len(key) > MAX_STRING_LENGTH or _unsafe(key):
                raise _REFUSED
            result[key] = item(element)
        return result

    return decode


def _json(value: Any, depth: int = 1) -> Any:
    """An attribute value: floats become Decimal, bounds as models.json_value states."""
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        if len(value) > MAX_STRING_LENGTH or _unsafe(value):
            raise _REFUSED
        return value
    if kind is int or kind is Decimal or kind is float:
        if kind is float and not math.isfinite(value):
            raise _REFUSED
        number = _to_number(value)
        if not number.is_finite() or number.copy_abs() >= MAX_ATTRIBUTE_NUMBER:
            raise _REFUSED
        if too_precise(number):
            raise _REFUSED
        return value if kind is int else number
    if depth > MAX_ATTRIBUTE_DEPTH:
        raise _REFUSED
    if kind is list or kind is tuple:
        return [_json(element, depth + 1) for element in value]
    if kind is dict:
        result = {}
        for key, element in value.items():
            if type(key) is not str or len(key) > MAX_STRING_LENGTH or _unsafe(key):
                raise _REFUSED
            result[key] = _json(element, depth + 1)
        return result
    raise _REFUSED


def _from_spec(spec: Any) -> Decoder:
    if spec is None:
        raise TypeError("a field check without a spec cannot be planned")
    kind = spec[0]
    if kind == "optional":
        inner = _from_spec(spec[1])
        return lambda value: None if value is None else inner(value)
    if kind == "text":
        return _text(spec[1], spec[2])
    if kind == "integer":
        return _integer(spec[1], spec[2])
    if kind == "number":
        return _number(spec[1], spec[2])
    if kind == "enum":
        return _enum(spec[1])
    if kind == "array":
        return _array(_from_spec(spec[1]), spec[2])
    if kind == "object":
        return _object(_from_spec(spec[1]))
    if kind == "json":
        return _json
    if kind == "model":
        return decoder_for(spec[1])
    raise TypeError(f"no decoder for {spec!r}")


_PLANS: dict[type, Decoder] = {}


def decoder_for(cls: type) -> Decoder:
    """The decode plan of a model class, built on first use."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _build(cls)
        _PLANS[cls] = plan
    return plan


def _build(cls: type) -> Decoder:
    fields = attrs.fields(cls)
    by_wire: dict[str, tuple[str, Decoder]] = {}
    defaults: list[tuple[str, Any]] = []
    required: list[str] = []
    for field in fields:
        by_wire[wire_name(field)] = (field.name, _from_spec(field.metadata["check"].spec))
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}.{field.name}: factory defaults are not planned")
        else:
            defaults.append((field.name, field.default))
    cross = getattr(cls, "_cross_field_problems", None)
    setter = object.__setattr__
    new = object.__new__

    def decode(value: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _REFUSED
        found: dict[str, Any] = {}
        for key, raw in value.items():
            entry = by_wire.get(key)
            if entry is None:
                raise _REFUSED  # an unknown (or not a string) key
            found[entry[0]] = entry[1](raw)
        instance: Any = new(cls)
        for name in required:
            if name not in found:
                raise _REFUSED
            setter(instance, name, found[name])
        for name, default in defaults:
            setter(instance, name, found.get(name, default))
        if cross is not None and next(iter(cross(instance)), None) is not None:
            raise _REFUSED
        return instance

    return decode
