"""Rule conditions: any callable ``(ctx) -> bool``, plus readable helpers.

A condition receives the :class:`~sandbox.engine.Context` of one campaign's
evaluation (``session``, ``total``, ``items``, ``profile_id``,
``identifiers``, ``attributes``, ``now``). Its description, used by
``explain()`` and in ``ruleFailureReasons``, comes from :func:`named`, the
callable's docstring, or its source.

>>> from sandbox import conditions as c
>>> c.total_at_least(50).description
'cart total >= 50'
>>> c.as_condition(lambda ctx: ctx.total > 10).description
'ctx.total > 10'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox.errors import DefinitionError

if TYPE_CHECKING:
    from sandbox.engine import Context

__all__ = [
    "Condition",
    "Hint",
    "NotABoolError",
    "all_of",
    "any_of",
    "as_bool",
    "as_condition",
    "attribute_equals",
    "coupon_valid",
    "has_item",
    "identifier_present",
    "named",
    "not_",
    "profile_present",
    "referral_valid",
    "total_at_least",
    "total_below",
]


@attrs.frozen
class Hint:
    """A constant a condition compares against, for rule-aware session strategies.

    ``kind`` is one of ``total``, ``attribute``, ``sku``, ``category``,
    ``identifier``, ``profile``; ``key`` names the attribute for ``attribute``.
    """

    kind: str
    value: Any
    key: str | None = None


@attrs.frozen(eq=False)
class Condition:
    """A predicate with a description; calling it evaluates it on a context."""

    fn: Callable[[Context], Any]
    description: str
    kind: str = "custom"
    hints: tuple[Hint, ...] = ()

    def __call__(self, ctx: Context) -> bool:
        result = self.fn(ctx)
        if result is True or result is False:
            return result
        return as_bool(result)

    def __repr__(self) -> str:
        return f"<condition {self.description!r}>"


class NotABoolError(TypeError):
    """A condition (or ``where=``) returned something other than a bool."""

    def __init__(self, value: Any) -> None:
        self.value = value
        from sandbox.models import describe

        hint = " (a forgotten `return`?)" if value is None else ""
        super().__init__(f"returned {describe(value)}, not a bool{hint}")


def as_bool(value: Any) -> bool:
    """``value`` if it is a bool (numpy's bool counts), else :class:`NotABoolError`.

    Truthiness would let a forgotten ``return`` (None) fail silently and let
    ``Decimal("NaN")`` pass: a condition must say yes or no.
    """
    if isinstance(value, bool):
        return value
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool"):
        return bool(value)
    raise NotABoolError(value)


def named(description: str, fn: Callable[[Context], Any]) -> Condition:
    """Give a condition an explicit description.

    >>> named("VIP customer", lambda ctx: ctx.attributes.get("tier") == "vip").description
    'VIP customer'
    """
    if not isinstance(description, str) or not description.strip():
        raise DefinitionError(
            f"a condition's description must be a non-empty string: {description!r}"
        )
    if not callable(fn):
        raise DefinitionError(f"named({description!r}, ...) needs a callable, got {fn!r}")
    base = fn if isinstance(fn, Condition) else None
    return Condition(
        fn=base.fn if base else fn,
        description=description,
        kind=base.kind if base else "custom",
        hints=base.hints if base else _code_hints(fn),
    )


def as_condition(value: Any, *, where: str = "condition") -> Condition:
    """Turn any callable into a :class:`Condition`, describing it once."""
    if isinstance(value, Condition):
        return value
    if not callable(value):
        raise DefinitionError(
            f"{where} must be a callable taking the evaluation context, got {value!r}; "
            "write it as `lambda ctx: ...` or use a helper from sandbox.conditions"
        )
    return Condition(fn=value, description=_describe(value), hints=_code_hints(value))


# ---------------------------------------------------------------------------
# Talon's built-ins


coupon_valid: Condition = Condition(
    fn=lambda ctx: bool(ctx.coupon_valid), description="coupon code is valid", kind="couponValid"
)
"""Talon.One's ``couponValid``: the session's coupon belongs to this campaign and
passed every validity and limit check. A rule needs it to accept the coupon."""

referral_valid: Condition = Condition(
    fn=lambda ctx: bool(ctx.referral_valid),
    description="referral code is valid",
    kind="referralValid",
)
"""Talon.One's ``referralValid``, the referral counterpart of :data:`coupon_valid`."""


# ---------------------------------------------------------------------------
# Readable helpers


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise DefinitionError(f"{what} must be a number, got {value!r}")
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        raise DefinitionError(f"{what} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise DefinitionError(f"{what} must be finite, got {value!r}")
    return result


def total_at_least(amount: Decimal | int | float | str) -> Condition:
    """The effective total is at least ``amount``."""
    threshold = _decimal(amount, "total_at_least(amount)")
    return Condition(
        fn=lambda ctx: ctx.total >= threshold,
        description=f"cart total >= {threshold}",
        kind="total_at_least",
        hints=(Hint("total", threshold),),
    )


def total_below(amount: Decimal | int | float | str) -> Condition:
    """The effective total is below ``amount``."""
    threshold = _decimal(amount, "total_below(amount)")
    return Condition(
        fn=lambda ctx: ctx.total < threshold,
        description=f"cart total < {threshold}",
        kind="total_below",
        hints=(Hint("total", threshold),),
    )


def has_item(
    *, sku: str | None = None, category: str | None = None, quantity: int = 1
) -> Condition:
    """The cart holds at least ``quantity`` units matching ``sku`` and/or ``category``."""
    if sku is None and category is None:
        raise DefinitionError("has_item() needs sku=... or category=...")
    if type(quantity) is not int or quantity < 1:
        raise DefinitionError(f"has_item(quantity=...) must be an integer >= 1, got {quantity!r}")

    def matches(ctx: Context) -> bool:
        units = sum(
            item.quantity
            for item in ctx.items
            if (sku is None or item.sku == sku) and (category is None or item.category == category)
        )
        return units >= quantity

    parts = [
        f"sku {sku!r}" if sku is not None else "",
        f"category {category!r}" if category else "",
    ]
    what = " and ".join(p for p in parts if p)
    hints = tuple(
        h
        for h in (
            Hint("sku", sku) if sku is not None else None,
            Hint("category", category) if category is not None else None,
        )
        if h is not None
    )
    return Condition(
        fn=matches,
        description=f"cart has {quantity} x item with {what}"
        if quantity > 1
        else f"cart has item with {what}",
        kind="has_item",
        hints=hints,
    )


def attribute_equals(key: str, value: Any) -> Condition:
    """The session attribute ``key`` equals ``value``."""
    if not isinstance(key, str) or not key:
        raise DefinitionError(f"attribute_equals(key) must be a non-empty string, got {key!r}")
    return Condition(
        fn=lambda ctx: ctx.attributes.get(key) == value,
        description=f"session attribute {key!r} == {value!r}",
        kind="attribute_equals",
        hints=(Hint("attribute", value, key),),
    )


def identifier_present(identifier: str | None = None) -> Condition:
    """The session carries ``identifier`` (or, without an argument, any identifier)."""
    if identifier is None:
        return Condition(
            fn=lambda ctx: bool(ctx.identifiers),
            description="session has an identifier",
            kind="identifier_present",
        )
    return Condition(
        fn=lambda ctx: identifier in ctx.identifiers,
        description=f"session has identifier {identifier!r}",
        kind="identifier_present",
        hints=(Hint("identifier", identifier),),
    )


profile_present = Condition(
    fn=lambda ctx: bool(ctx.profile_id), description="session has a profile", kind="profile_present"
)
"""The session names a customer profile."""


def all_of(*conditions: Any) -> Condition:
    """Every condition holds (evaluated in order, stopping at the first false)."""
    parts = [as_condition(x, where=f"all_of(...)[{i}]") for i, x in enumerate(conditions)]
    return Condition(
        fn=lambda ctx: all(p(ctx) for p in parts),
        description="(" + " and ".join(p.description for p in parts) + ")",
        kind="all_of",
        hints=tuple(h for p in parts for h in p.hints),
    )


def any_of(*conditions: Any) -> Condition:
    """At least one condition holds."""
    parts = [as_condition(x, where=f"any_of(...)[{i}]") for i, x in enumerate(conditions)]
    return Condition(
        fn=lambda ctx: any(p(ctx) for p in parts),
        description="(" + " or ".join(p.description for p in parts) + ")",
        kind="any_of",
        hints=tuple(h for p in parts for h in p.hints),
    )


def not_(condition: Any) -> Condition:
    """The condition does not hold."""
    part = as_condition(condition, where="not_(...)")
    return Condition(
        fn=lambda ctx: not part(ctx),
        description=f"not {part.description}",
        kind="not",
        hints=part.hints,
    )


# ---------------------------------------------------------------------------
# Describing arbitrary callables, once, at definition time


def _describe(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn)
    if doc and not isinstance(fn, type):
        return doc.strip().splitlines()[0]
    if getattr(fn, "__name__", "") == "<lambda>":
        source = _lambda_source(fn)
        if source:
            return source
    return getattr(fn, "__qualname__", None) or repr(fn)


def _lambda_source(fn: Callable[..., Any]) -> str | None:
    """The body of a lambda as written, e.g. ``ctx.total >= 50``."""
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return None
    code = fn.__code__
    # Zero-width positions (RESUME, the implicit RETURN) point at column 0 of the
    # line, not at the body: with them, `x = 1; f = lambda ctx: ...` would
    # describe itself from `x = 1`.
    positions = [
        p
        for p in code.co_positions()
        if p[0] is not None and p[2] is not None and (p[0], p[2]) != (p[1], p[3])
    ]
    if not positions:
        return None
    line_no, _, col, end_col = min(positions, key=lambda p: (p[0], p[2]))
    last_line, last_col = max(
        ((p[1], p[3]) for p in positions if p[1] is not None and p[3] is not None),
        default=(line_no, end_col),
    )
    start = (line_no or 0) - first
    stop = (last_line or line_no or 0) - first
    if not 0 <= start < len(lines) or not 0 <= stop < len(lines):
        return None
    if start == stop:
        body = lines[start][col:last_col]
    else:
        body = lines[start][col:] + "".join(lines[start + 1 : stop]) + lines[stop][:last_col]
    body = " ".join(body.split())
    return body or None


def _code_hints(fn: Any) -> tuple[Hint, ...]:
    """Constants in a callable's code (numbers and strings), as loose hints."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    found: list[Hint] = []
    for const in _constants(code):
        if isinstance(const, bool):
            continue
        if isinstance(const, int | float):
            found.append(Hint("number", _decimal(const, "constant")))
        elif isinstance(const, str) and 0 < len(const) <= 100:
            found.append(Hint("string", const))
    return tuple(found)


def _constants(code: Any) -> Iterable[Any]:
    for const in code.co_consts:
        if inspect.iscode(const):
            yield from _constants(const)
        elif isinstance(const, tuple):
            yield from const
        else:
            yield const
