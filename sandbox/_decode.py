"""The fast path of the codec: one validating pass per payload, in C, then the models.

Each model field's check (sandbox/models.py) states what it accepts in its ``spec``.
From the specs of a class this module builds, once:

- a msgspec ``Struct`` mirroring the class on the wire (camelCase names, unknown keys
  refused, required keys required, strings, integers, arrays and enums with their
  bounds), which ``msgspec.convert`` checks a whole payload against in one pass in C;
- a builder, generated Python source (printable: ``print(builder_source(CartItem))``)
  that turns the Struct into the frozen attrs models directly, converting and checking
  what msgspec cannot express: numbers (exact Decimals, never binary floats, within the
  money bounds and 20 decimals), strings that are not valid Unicode text (unpaired
  surrogates), attribute values, and the class' cross-field rules.

Anything either step does not accept raises :class:`Refused`, and the codec then takes
its full path (cattrs, every problem with its pointer): a valid payload is decoded fast,
an invalid one is reported exactly as before. ``tests/test_decode.py`` checks both
paths agree.
"""

from __future__ import annotations

import linecache
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import attrs
import msgspec

from sandbox.models import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTE_NUMBER,
    MAX_STRING_LENGTH,
    cross_field_rules,
    surrogate_at,
    too_precise,
    wire_name,
)

__all__ = ["Refused", "builder_source", "decoder_for", "wire_struct"]

Decoder = Callable[[Any], Any]


class Refused(Exception):  # noqa: N818 - a signal, not an error a user sees
    """The fast path does not accept this value; the codec's full path says why."""


# Raised as the class, so each refusal is a fresh instance: one shared instance would
# collect every raise's frames (and their locals, the payload) in its traceback, forever.
_REFUSED = Refused


def _unsafe(text: str) -> bool:
    """Not valid Unicode text (an unpaired surrogate): the full path says where."""
    return not text.isascii() and surrogate_at(text) is not None


def _number(minimum: Decimal | None, maximum: Decimal) -> Callable[[Any], Decimal]:
    def convert(value: Any) -> Decimal:
        kind = type(value)
        number: Decimal
        if kind is Decimal:
            number = value
        elif kind is int:
            number = Decimal(value)
        elif kind is float:
            number = Decimal(repr(value))  # the shortest repr, never the binary value
        else:
            raise _REFUSED
        if (
            not number.is_finite()
            or (minimum is not None and number < minimum)
            or number.copy_abs() >= maximum
            or too_precise(number)
        ):
            raise _REFUSED
        return number

    return convert


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
        number = Decimal(repr(value)) if kind is float else Decimal(value)
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


def _key(key: str) -> str:
    if len(key) > MAX_STRING_LENGTH or _unsafe(key):
        raise _REFUSED
    return key


# ---------------------------------------------------------------------------
# A class' plan: its Struct type and its generated builder


@attrs.frozen
class _Plan:
    struct: Any
    build: Callable[[Any], Any]
    source: str


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _Planner(cls).plan()
    return plan


def decoder_for(cls: type) -> Decoder:
    """The fast decode of a model class: a wire dict to the model, or :class:`Refused`."""
    plan = _plan(cls)
    struct, build = plan.struct, plan.build
    convert = msgspec.convert
    error = msgspec.ValidationError

    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise _REFUSED  # a Mapping that is not a dict: the full path reads it
        try:
            found = convert(value, struct)
        except error:
            raise _REFUSED from None
        return build(found)

    return decode


def wire_struct(cls: type) -> Any:
    """The msgspec Struct type mirroring a model class on the wire."""
    return _plan(cls).struct


def builder_source(cls: type) -> str:
    """The generated source of a model class' builder, for reading and debugging."""
    return _plan(cls).source


class _Planner:
    """Writes one class' Struct type and builder from its fields' specs."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "_new": object.__new__,
            "_set": object.__setattr__,
            "_REFUSED": _REFUSED,
            "_unsafe": _unsafe,
            "_json": _json,
            "_key": _key,
            "_cls": cls,
        }
        self.counter = 0

    def plan(self) -> _Plan:
        fields: list[tuple[str, Any, Any]] = []
        body: list[str] = ["    o = _new(_cls)"]
        for field in attrs.fields(self.cls):
            spec = field.metadata["check"].spec
            required = field.default is attrs.NOTHING
            if not required and isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                raise TypeError(
                    f"{self.cls.__name__}.{field.name}: factory defaults are not planned"
                )
            wire_type = self._type(spec)
            name = wire_name(field)
            if required:
                fields.append((field.name, wire_type, msgspec.field(name=name)))
            else:
                fields.append((field.name, wire_type, msgspec.field(default=None, name=name)))
            body.extend(self._field(field.name, spec, field.default))
        cross = cross_field_rules(self.cls)
        if cross is not None:
            self.names["_cross"] = cross
            body.append("    if next(iter(_cross(o)), None) is not None:")
            body.append("        raise _REFUSED")
        body.append("    return o")
        struct = msgspec.defstruct(
            f"{self.cls.__name__}Wire",
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
        )
        filename = f"<promo-sandbox builder {self.cls.__name__}>"
        source = "\n".join([*self.lines, "def build(s):", *body]) + "\n"
        code = compile(source, filename, "exec")
        namespace = dict(self.names)
        exec(code, namespace)  # noqa: S102 - our own generated source, as attrs and cattrs do
        # A traceback through the builder shows its generated lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        return _Plan(struct, namespace["build"], source)

    # -- wire types -------------------------------------------------------------

    def _type(self, spec: Any) -> Any:
        kind = spec[0]
        if kind == "optional":
            return self._type(spec[1]) | None
        if kind == "text":
            return Annotated[str, msgspec.Meta(min_length=spec[1], max_length=spec[2])]
        if kind == "integer":
            return Annotated[int, msgspec.Meta(ge=spec[1], le=spec[2])]
        if kind in ("number", "json"):
            return Any  # converted and checked by the builder, exactly
        if kind == "enum":
            return spec[1]
        if kind == "array":
            item = self._type(spec[1])
            if spec[2] is None:
                return list[item]  # type: ignore[valid-type]
            return Annotated[list[item], msgspec.Meta(max_length=spec[2])]  # type: ignore[valid-type]
        if kind == "object":
            return dict[str, self._type(spec[1])]  # type: ignore[misc]
        if kind == "model":
            return _plan(spec[1]).struct
        raise TypeError(f"no wire type for {spec!r}")

    # -- builder lines ------------------------------------------------------------

    def _name(self, prefix: str, value: Any) -> str:
        self.counter += 1
        name = f"_{prefix}{self.counter}"
        self.names[name] = value
        return name

    def _field(self, name: str, spec: Any, default: Any) -> list[str]:
        optional = spec[0] == "optional"
        inner = spec[1] if optional else spec
        expression = self._value("v", inner)
        lines = [f"    v = s.{name}"]
        if expression != "v":
            if optional:
                lines += ["    if v is not None:", f"        v = {expression}"]
            else:
                lines.append(f"    v = {expression}")
        elif inner[0] == "text":
            test = "v is not None and _unsafe(v)" if optional else "_unsafe(v)"
            lines += [f"    if {test}:", "        raise _REFUSED"]
        if not optional and default is not attrs.NOTHING:
            # A key left out (the Struct's None) takes the model's default.
            lines.append(f"    if v is None: v = {self._name('default', default)}")
        lines.append(f"    _set(o, {name!r}, v)")
        return lines

    def _value(self, var: str, spec: Any) -> str:
        """An expression converting ``var`` (a Struct value) to the model's value."""
        kind = spec[0]
        if kind == "number":
            return f"{self._name('number', _number(spec[1], spec[2]))}({var})"
        if kind == "json":
            return f"_json({var})"
        if kind == "model":
            return f"{self._name('build', _plan(spec[1]).build)}({var})"
        if kind == "array":
            item = spec[1]
            inner = self._value("e", item)
            if inner != "e":
                return f"tuple([{inner} for e in {var}])"
            if item[0] == "text":
                checker = self._name("texts", _checked_texts)
                return f"{checker}({var})"
            return f"tuple({var})"
        if kind == "object":
            value = self._value("e", spec[1])
            return f"{{_key(k): {value} for k, e in {var}.items()}}"
        if kind in ("text", "integer", "enum"):
            return var
        raise TypeError(f"no builder for {spec!r}")


def _checked_texts(values: list[str]) -> tuple[str, ...]:
    for value in values:
        if _unsafe(value):
            raise _REFUSED
    return tuple(values)
