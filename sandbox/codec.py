"""The wire format: one strict cattrs converter, camelCase on the wire.

cattrs coerces by default (``"2"`` -> 2, ``3.7`` -> 3, ``"false"`` -> True);
here every primitive hook is strict, unknown keys are refused with the closest
known key, and numbers become ``Decimal`` exactly. Every problem in a payload
is reported, each with a JSON pointer in wire names.

>>> s = from_wire(NewCustomerSession, {"profileId": "p1", "total": 9.99})
>>> s.total
Decimal('9.99')
>>> to_wire(s)
{'profileId': 'p1', 'state': 'open', 'total': 9.99}
"""

from __future__ import annotations

import difflib
import enum
import json
import math
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from sandbox._decode import Refused, decoder_for
from sandbox.errors import Problem, ValidationError, escape_pointer_token
from sandbox.models import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_NUMBER_TEXT,
    Check,
    IntegrationRequest,
    NewCustomerSession,
    NewCustomerSessionV2,
    ProfileResponseContent,
    ResponseContent,
    SessionState,
    check_total,
    describe,
    hint_candidate,
    json_value,
    size_problems,
    type_name,
    wire_name,
)

__all__ = [
    "converter",
    "dumps",
    "from_wire",
    "loads",
    "parse_json",
    "session_from_wire",
    "to_plain",
    "to_wire",
]

T = TypeVar("T")


class _InvalidError(Exception):
    """Raised inside hooks; pointers are relative to the value being structured."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def _fail(message: str) -> _InvalidError:
    return _InvalidError([Problem("", message)])


# ---------------------------------------------------------------------------
# Strict primitive hooks. Messages name no field: the pointer says where.


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise _fail(f"must be a string (got {type_name(value)} {describe(value)})")
    return value


def _structure_int(value: Any, _: type) -> int:
    if type(value) is not int:
        raise _fail(f"must be an integer (got {type_name(value)} {describe(value)})")
    return value


def _structure_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"must be a boolean (got {type_name(value)} {describe(value)})")
    return value


def _structure_decimal(value: Any, _: type) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _fail(f"must be a number (got {type_name(value)} {describe(value)})")
    # Floats via the shortest repr, never the binary value: 0.1 -> Decimal('0.1').
    result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not result.is_finite():
        raise _fail(f"must be a finite number: {result}")
    return result


def _enum_hook(enum_type: type[enum.StrEnum]) -> Callable[[Any, Any], Any]:
    allowed = ", ".join(repr(m.value) for m in enum_type)
    values = [m.value for m in enum_type]

    def structure(value: Any, _: Any) -> Any:
        try:
            return enum_type(value)
        except (ValueError, TypeError):
            close = _closest(value, values) if isinstance(value, str) else ""
            raise _fail(f"must be one of {allowed} (got {describe(value)}){close}") from None

    return structure


def _structure_json(value: Any, _: Any) -> Any:
    """A free-form attribute value: floats become Decimal, everything else is checked."""
    converted = _floats_to_decimal(value, 1)  # an attribute's value: one level in
    problems = list(json_value(None, converted))
    if problems:
        raise _InvalidError(problems)
    return converted


def _floats_to_decimal(value: Any, depth: int) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return Decimal(repr(value))
    if depth > MAX_ATTRIBUTE_DEPTH:
        return value  # too deep: the check refuses it without walking any further
    if isinstance(value, list):
        return [_floats_to_decimal(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _floats_to_decimal(v, depth + 1) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------
# Collections: strict about the container, and every element's problems kept.


def _is_homogeneous_tuple(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_str_dict(t: Any) -> bool:
    return get_origin(t) is dict and get_args(t)[:1] == (str,)


def _tuple_hook(conv: cattrs.Converter, t: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    element_type = get_args(t)[0]
    element_hook = conv.get_structure_hook(element_type)

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(f"must be an array (got {type_name(value)} {describe(value)})")
        result: list[Any] = []
        problems: list[Problem] = []
        for index, element in enumerate(value):
            try:
                result.append(element_hook(element, element_type))
            except Exception as exc:
                problems.extend(_problems(exc, f"/{index}"))
        if problems:
            raise _InvalidError(problems)
        return tuple(result)

    return structure


def _dict_hook(conv: cattrs.Converter, t: Any) -> Callable[[Any, Any], dict[str, Any]]:
    value_type = get_args(t)[1]
    value_hook = conv.get_structure_hook(value_type)

    def structure(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _fail(f"must be an object (got {type_name(value)} {describe(value)})")
        result: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, element in value.items():
            if not isinstance(key, str):
                problems.append(Problem("", f"keys must be strings: {key!r}"))
                continue
            try:
                result[key] = value_hook(element, value_type)
            except Exception as exc:
                problems.extend(_problems(exc, f"/{escape_pointer_token(key)}"))
        if problems:
            raise _InvalidError(problems)
        return result

    return structure


# ---------------------------------------------------------------------------
# attrs models: camelCase names, unknown keys refused, field checks in the hook.


def _checked(hook: Callable[[Any, Any], Any], check: Check, name: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, t: Any) -> Any:
        # An array over its size bound is refused before its elements are decoded: a
        # million cart items cost one len(), not a million element checks.
        sizes = size_problems(check, name, value)
        if sizes:
            raise _InvalidError(sizes)
        result = hook(value, t)
        problems = list(check(name, result))
        if problems:
            raise _InvalidError(problems)
        return result

    return structure


def _model_structure_hook(conv: cattrs.Converter, cls: type) -> Callable[[Any, Any], Any]:
    overrides: dict[str, Any] = {}
    for a in attrs.fields(cls):
        name = wire_name(a)
        check: Check | None = a.metadata.get("check")
        field_hook = conv.get_structure_hook(a.type)
        if check is not None:
            field_hook = _checked(field_hook, check, name)
        overrides[a.name] = override(rename=name, struct_hook=field_hook)
    generated: Callable[[Any, Any], Any] = make_dict_structure_fn(
        cls, conv, _cattrs_forbid_extra_keys=True, **overrides
    )

    def structure(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _fail(f"must be an object (got {type_name(value)} {describe(value)})")
        bad_keys = [k for k in value if not isinstance(k, str)]
        if not bad_keys:
            return generated(value, t)
        # A Python dict may have keys JSON cannot: report each, and the rest's problems too.
        problems = [
            Problem(f"/{escape_pointer_token(str(k))}", f"keys must be strings: {describe(k)}")
            for k in bad_keys
        ]
        try:
            generated({k: v for k, v in value.items() if isinstance(k, str)}, t)
        except Exception as exc:
            problems.extend(_problems(exc, ""))
        raise _InvalidError(problems)

    return structure


def _model_unstructure_hook(conv: cattrs.Converter, cls: type) -> Callable[[Any], Any]:
    overrides: dict[str, Any] = {
        # Absent is not empty: None fields stay off the wire; state is always written.
        a.name: override(rename=wire_name(a), omit_if_default=a.default is None)
        for a in attrs.fields(cls)
    }
    return make_dict_unstructure_fn(cls, conv, **overrides)


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and attrs.has(t)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(Decimal, _structure_decimal)
    # Each enum by name: the str hook would otherwise claim them (they subclass str).
    for enum_type in (SessionState, ResponseContent, ProfileResponseContent):
        conv.register_structure_hook(enum_type, _enum_hook(enum_type))
    conv.register_structure_hook(Any, _structure_json)
    conv.register_structure_hook_factory(_is_homogeneous_tuple, lambda t: _tuple_hook(conv, t))
    conv.register_structure_hook_factory(_is_str_dict, lambda t: _dict_hook(conv, t))
    conv.register_structure_hook_factory(_is_model, lambda t: _model_structure_hook(conv, t))
    conv.register_unstructure_hook(Decimal, lambda d: d)  # to_wire decides the number form
    for enum_type in (SessionState, ResponseContent, ProfileResponseContent):
        conv.register_unstructure_hook(enum_type, lambda member: member.value)
    conv.register_unstructure_hook_factory(_is_model, lambda t: _model_unstructure_hook(conv, t))
    return conv


converter = _make_converter()
"""The one converter behind :func:`from_wire` and :func:`to_wire`."""


# ---------------------------------------------------------------------------
# Errors: cattrs' exception groups -> Problems with wire pointers.


def _closest(key: str, known: list[str]) -> str:
    if hint_candidate(key) is None:
        return ""  # no hint for a value of insane length: difflib is quadratic
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not match:
        match = [k for k in known if k.lower() == key.lower()]
    return f"; did you mean {match[0]!r}?" if match else ""


def _wire_names(cls: type) -> dict[str, str]:
    return {a.name: wire_name(a) for a in attrs.fields(cls)}


def _problems(exc: BaseException, prefix: str) -> Iterator[Problem]:
    if isinstance(exc, _InvalidError):
        yield from (p.within(prefix) for p in exc.problems)
    elif isinstance(exc, ValidationError):
        yield from (p.within(prefix) for p in exc.errors)
    elif isinstance(exc, ClassValidationError):
        names = _wire_names(exc.cl)
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            wire = names.get(note.name, note.name)
            if isinstance(sub, KeyError):
                yield Problem(f"{prefix}/{wire}", f"{wire!r} is required")
            else:
                yield from _problems(sub, f"{prefix}/{wire}")
        for sub in without:
            if isinstance(sub, ForbiddenExtraKeysError):
                known = sorted(names.values())
                for key in sorted(sub.extra_fields, key=str):
                    yield Problem(
                        f"{prefix}/{escape_pointer_token(key)}",
                        f"unknown key {describe(key)}{_closest(key, known)}",
                    )
            else:
                yield from _problems(sub, prefix)
    elif isinstance(exc, IterableValidationError):
        indexed, rest = exc.group_exceptions()
        for sub, index_note in indexed:
            yield from _problems(sub, f"{prefix}/{index_note.index}")
        for sub in rest:
            yield from _problems(sub, prefix)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields, key=str):
            yield Problem(f"{prefix}/{escape_pointer_token(key)}", f"unknown key {describe(key)}")
    else:
        # Not a payload problem the hooks know; say what it was without dumping the value.
        yield Problem(prefix, f"{type(exc).__name__}: {describe(str(exc))}")


def _named(problem: Problem) -> Problem:
    """Hooks don't know field names; name the field from the pointer, attrs-style."""
    if not problem.message.startswith("must "):
        return problem
    tokens = problem.pointer.split("/")[1:]
    indexes = ""
    while tokens and tokens[-1].isdigit():
        indexes = f"[{tokens.pop()}]" + indexes
    name = (tokens[-1].replace("~1", "/").replace("~0", "~") if tokens else "payload") + indexes
    return Problem(problem.pointer, f"{name!r} {problem.message}")


# ---------------------------------------------------------------------------
# Public functions


def from_wire(cls: type[T], data: Any, *, strict_total: bool = True) -> T:
    """Structure a camelCase wire dict into a model, or raise ValidationError.

    For a :class:`NewCustomerSession`, ``strict_total`` refuses a ``total``
    that differs from a non-empty cart's sum (at ``/total``).
    """
    try:
        # The decode plan: one pass, for payloads it accepts (nearly all of them).
        result: T = decoder_for(cls)(data)
    except Refused:
        # The full path: cattrs, every problem with its pointer and message.
        try:
            result = converter.structure(data, cls)
        except Exception as exc:
            problems = [_named(p) for p in _problems(exc, "")]
            _drop_tracebacks(exc)
            raise ValidationError(problems, subject=cls.__name__) from None
    if strict_total and isinstance(result, NewCustomerSession):
        check_total(result)
    return result


def _drop_tracebacks(exc: BaseException) -> None:
    """Free a refused payload at once: cattrs' generated code keeps each caught error in
    a local list of the frame its traceback holds, a cycle only the garbage collector
    would break, and the frames hold the payload."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


# The keys only one dialect has, and what replaces a V1 key in V2.
_V1_KEYS = {
    "coupon": "write 'couponCodes': [...] instead",
    "referral": "write 'referralCode' instead",
    "total": "leave it out: V2 computes the total from 'cartItems' and 'additionalCosts'",
}
_V2_KEYS = (
    "couponCodes",
    "referralCode",
    "additionalCosts",
    "loyaltyCards",
    "storeIntegrationId",
    "evaluableCampaignIds",
)

Session = NewCustomerSession | NewCustomerSessionV2 | IntegrationRequest


def session_from_wire(
    data: Any, *, strict_total: bool = True, version: int | None = None
) -> Session:
    """A wire dict of either dialect.

    ``version=1`` reads a V1 :class:`NewCustomerSession` (a V2 key is an unknown
    key); ``version=2`` a V2 one: ``{"customerSession": ...}`` is an
    :class:`IntegrationRequest`, anything else a :class:`NewCustomerSessionV2`.
    Without ``version`` the keys decide: ``customerSession`` is an
    IntegrationRequest, a bare session with any of ``coupon``, ``referral``,
    ``total`` is V1, and any other bare session (``{"state": "closed"}``, which
    both dialects could mean) is V2, Talon.One's current API. V1 and V2 keys
    together are an error at each V1 key, saying what replaces it.
    """
    if version not in (None, 1, 2):
        raise ValidationError(
            [
                Problem(
                    "", f"version must be 1, 2 or None (the keys decide), got {describe(version)}"
                )
            ]
        )
    if not isinstance(data, Mapping):
        raise ValidationError(
            [
                Problem(
                    "",
                    "a session must be a camelCase object (a V1 or V2 session, or "
                    f'{{"customerSession": ...}}), got {type_name(data)} {describe(data)}',
                )
            ]
        )
    if version == 1:
        return from_wire(NewCustomerSession, data, strict_total=strict_total)
    if "customerSession" in data:
        return from_wire(IntegrationRequest, data)
    v1 = [key for key in _V1_KEYS if key in data]
    if not v1:
        return from_wire(NewCustomerSessionV2, data)
    if version == 2:
        raise ValidationError(
            [
                Problem(f"/{key}", f"{key!r} is a V1 key, but version=2 was asked: {_V1_KEYS[key]}")
                for key in v1
            ],
            subject="NewCustomerSessionV2",
        )
    v2 = [key for key in _V2_KEYS if key in data]
    if v2:
        shown = ", ".join(map(repr, v2))
        raise ValidationError(
            [
                Problem(
                    f"/{key}",
                    f"{key!r} is a V1 (NewCustomerSession) key, but the session also has the "
                    f"V2 key(s) {shown}: {_V1_KEYS[key]}",
                )
                for key in v1
            ],
            subject="session",
        )
    return from_wire(NewCustomerSession, data, strict_total=strict_total)


def to_plain(value: Any) -> Any:
    """Replace Decimals by JSON numbers: int when written as an integer, else float."""
    if isinstance(value, Decimal):
        # An integer as written (80) stays an int; 80.0, 8.00 and 1E+23 were floats.
        if value.as_tuple().exponent == 0:
            return int(value)
        return float(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def to_wire(obj: Any, *, exact: bool = False) -> Any:
    """Unstructure a model to its camelCase wire dict.

    Money goes out as JSON numbers (``int`` or ``float``); ``exact=True`` keeps
    ``Decimal`` values instead (what :func:`dumps` writes, digit for digit).
    """
    raw = converter.unstructure(obj)
    return raw if exact else to_plain(raw)


def _json_error(message: str) -> ValidationError:
    return ValidationError([Problem("", message)], subject="JSON")


def _parse_constant(name: str) -> Any:
    raise _json_error(f"{name} is not a JSON number")


def _number_text(text: str) -> str:
    if len(text) > MAX_NUMBER_TEXT:
        raise _json_error(
            f"a JSON number of {len(text)} characters ({text[:20]}...): numbers have at most "
            f"{MAX_NUMBER_TEXT} characters"
        )
    return text


def _parse_int(text: str) -> int:
    return int(_number_text(text))


def _parse_float(text: str) -> Decimal:
    return Decimal(_number_text(text))


def parse_json(text: str | bytes | bytearray) -> Any:
    """JSON text to Python values, numbers exact (``Decimal``), or a ValidationError.

    Never raises anything else: not UTF-8, not JSON, numbers too long for the
    bounds, nesting too deep for the parser all say what is wrong and where.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _json_error(
                f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
            ) from None
    if not isinstance(text, str):
        raise _json_error(f"JSON text must be a str or bytes, got {type(text).__name__}")
    try:
        return json.loads(
            text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant
        )
    except json.JSONDecodeError as exc:
        raise _json_error(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise _json_error(
            "JSON nested too deeply to parse; payloads nest at most "
            f"{MAX_ATTRIBUTE_DEPTH} levels inside 'attributes'"
        ) from None


def loads(text: str | bytes, cls: type[T] = NewCustomerSession, **options: Any) -> T:  # type: ignore[assignment]
    """Parse JSON text (numbers as exact Decimals) and structure it into ``cls``."""
    return from_wire(cls, parse_json(text), **options)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Write a model (or any plain JSON value) as JSON text, Decimals digit for digit."""
    raw = converter.unstructure(obj) if attrs.has(type(obj)) else obj
    return _encode(raw, indent, 0)


def _encode(value: Any, indent: int | None, level: int) -> str:
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(float(value))
    if isinstance(value, Mapping | list | tuple):
        items: list[str]
        if isinstance(value, Mapping):
            items = [
                f"{json.dumps(str(k))}: {_encode(v, indent, level + 1)}" for k, v in value.items()
            ]
            open_, close = "{", "}"
        else:
            items = [_encode(v, indent, level + 1) for v in value]
            open_, close = "[", "]"
        if not items:
            return open_ + close
        if indent is None:
            return open_ + ", ".join(items) + close
        pad, inner = " " * indent * level, " " * indent * (level + 1)
        return open_ + "\n" + ",\n".join(inner + i for i in items) + "\n" + pad + close
    return json.dumps(value)
