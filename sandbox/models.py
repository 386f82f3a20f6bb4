"""Talon.One's session models: the seed's ``NewCustomerSession`` and its ``CartItem``.

Frozen attrs classes with tuples for collections and ``Decimal`` money. Every
field carries its wire name and its check in its metadata; the same checks run
when a model is built in Python (``__attrs_post_init__``) and when the codec
structures a wire dict, so both paths report the same pointers and messages.

>>> from decimal import Decimal
>>> s = NewCustomerSession(profile_id="p1", cart_items=[CartItem(sku="a", quantity=2, price=5)])
>>> s.cart_total
Decimal('10')
>>> NewCustomerSession(identifiers=["1", "2", "3", "4", "5", "6"])
Traceback (most recent call last):
...
sandbox.errors.ValidationError: invalid NewCustomerSession: 1 problem
  /identifiers: 'identifiers' must have at most 5 items: 6 given
"""

import contextlib
import decimal
import difflib
import enum
import functools
import math
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeAlias, TypeVar

import attrs

from sandbox._html import html_of
from sandbox.errors import Problem, ValidationError, escape_pointer_token

__all__ = [
    "ARITHMETIC",
    "MAX_ATTRIBUTE_DEPTH",
    "MAX_ATTRIBUTE_NUMBER",
    "MAX_DECIMAL_PLACES",
    "MAX_MONEY",
    "MAX_NUMBER_TEXT",
    "MAX_QUANTITY",
    "MAX_STRING_LENGTH",
    "AdditionalCost",
    "AnySession",
    "CartItem",
    "EventRequest",
    "IntegrationRequest",
    "NewCustomerSession",
    "NewCustomerSessionV2",
    "NewReferral",
    "Product",
    "ProfileResponseContent",
    "ProfileUpdate",
    "ResponseContent",
    "ReturnedCartItem",
    "SessionState",
    "check_total",
    "cross_field_rules",
    "describe",
    "replace",
    "shown_number",
    "to_json",
]

# Talon.One's documented limits.
MAX_IDENTIFIERS = 5
MAX_CODE_LENGTH = 100
MAX_ID_LENGTH = 1000
MAX_CART_ITEMS = 1000
MAX_TOTAL_QUANTITY = 10_000

# Bounds of the wire format (the README lists them), decided once, here; the codec and
# the Python constructors both apply them. Talon.One's own limits are far below
# Decimal's range: these are bounds no real cart reaches, chosen so that every
# accepted payload is evaluated exactly in ARITHMETIC and written back by
# to_wire()/dumps() (no float overflows to inf, no int too long for str()).
MAX_MONEY = Decimal(10) ** 15
"""Money and measures are below 10^15: at most 15 digits before the point."""
MAX_DECIMAL_PLACES = 20
"""Numbers have at most 20 digits after the point (trailing zeros aside)."""
MAX_QUANTITY = MAX_TOTAL_QUANTITY
"""A cart item's quantity (and returned quantities) is at most 10,000."""
MAX_INTEGER = 2**63 - 1
"""Other integers (``catalogItemID``) fit in 64 bits, as in Talon.One's API."""
MAX_ATTRIBUTE_NUMBER = Decimal(10) ** 30
"""A number inside ``attributes`` is below 10^30 in magnitude."""
MAX_ATTRIBUTE_DEPTH = 32
"""An attribute's value nests at most 32 objects/arrays deep (``{"a": [1]}`` is 2 deep)."""
MAX_STRING_LENGTH = 10_000
"""Free-form strings (names, SKUs, categories, attribute keys and values) have at most
10,000 characters; ids and codes have Talon.One's tighter limits."""
MAX_NUMBER_TEXT = 100
"""A JSON number is at most 100 characters long; every bound above fits in far fewer."""
MAX_HINT_INPUT = 200
"""Longer values get no "did you mean" hint (difflib is quadratic) and are shown truncated."""

ARITHMETIC = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=999,
    Emin=-999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
"""The one Decimal context of the sandbox's arithmetic (totals, discounts, counters).

Within the bounds, a cart total has at most 23 integer digits and 20 decimals;
60 digits hold it, a percentage of it and its quantization to any currency
precision exactly, so no quantize can fail on an accepted value."""

JSONValue: TypeAlias = Any
"""A JSON value as the sandbox holds it: numbers are ``int`` or ``Decimal``."""

Check = Callable[[str | None, Any], Iterator[Problem]]
"""A field check: given the field's wire name and value, yields problems.

Pointers are relative to the field (``""`` is the field itself, ``"/3"`` its
fourth element)."""


class SessionState(enum.StrEnum):
    """The states of a customer session."""

    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    PARTIALLY_RETURNED = "partially_returned"


# ---------------------------------------------------------------------------
# Converters: Python convenience only (ints and floats become Decimal via str,
# lists become tuples). The codec is strict on its own and never relies on them.


def _to_decimal(value: Decimal | int | float | None) -> Any:
    if isinstance(value, bool):
        return value  # refused by the check, with the value shown
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _to_tuple(value: Iterable[Any] | None) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _to_state(value: SessionState | str) -> Any:
    if isinstance(value, str) and not isinstance(value, SessionState):
        try:
            return SessionState(value)
        except ValueError:
            return value  # refused by the check, with the allowed values listed
    return value


def to_json(value: Any, depth: int = 0) -> Any:
    """Floats in attribute values become Decimal, so money stays exact.

    ``depth`` 0 is the attributes object itself. Beyond the depth bound values
    are left as they are, for the check to refuse."""
    if isinstance(value, float) and math.isfinite(value):
        return Decimal(repr(value))
    if depth > MAX_ATTRIBUTE_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: to_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v, depth + 1) for v in value]
    return value


# ---------------------------------------------------------------------------
# Checks. Messages follow attrs: the quoted field, the rule, the value.


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = 4


def shown_number(value: Decimal | int) -> str:
    """A number as an error message shows it: as written, or in short scientific form
    when it is too long to read (or, for a huge int, to convert to text at all)."""
    if isinstance(value, int):
        if value.bit_length() > 190:
            return f"{Decimal(value):.6E}"
        return str(value)
    return str(value) if len(value.as_tuple().digits) <= 40 else f"{value:.6E}"


def describe(value: Any) -> str:
    """A short repr of a value for error messages, safe for huge or deeply nested values."""
    if isinstance(value, Decimal):
        return f"Decimal('{shown_number(value)}')"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 190:
        return shown_number(value)
    try:
        text = _SHORT.repr(value)
    except Exception:  # a user object whose repr raises
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 60 else text[:57] + "..."


def hint_candidate(value: Any) -> str | None:
    """``value`` if a "did you mean" hint may look at it (a string of sane length)."""
    return value if isinstance(value, str) and len(value) <= MAX_HINT_INPUT else None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _named(name: str | None, rule: str) -> str:
    """attrs' voice: the quoted field, then the rule (the codec names nameless ones)."""
    return rule if name is None else f"{name!r} {rule}"


def _item(name: str | None, suffix: str) -> str | None:
    return None if name is None else name + suffix


def surrogate_at(value: str) -> int | None:
    """Where ``value`` holds an unpaired UTF-16 surrogate (``"\\ud800"`` is a valid JSON
    escape, but no UTF-8 text can hold it), or None for valid Unicode text."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def surrogate_rule(value: str, index: int) -> str:
    """The message for a string with an unpaired surrogate at ``index``."""
    return (
        f"must be valid Unicode text: an unpaired surrogate {value[index]!r} at character "
        f"{index} of {describe(value)}"
    )


def text(*, min_length: int = 0, max_length: int = MAX_STRING_LENGTH) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, str):
            yield Problem(
                "", _named(name, f"must be a string (got {type_name(value)} {describe(value)})")
            )
        elif len(value) < min_length:
            yield Problem(
                "", _named(name, f"must have at least {min_length} characters: {value!r}")
            )
        elif len(value) > max_length:
            yield Problem(
                "", _named(name, f"must have at most {max_length} characters: {len(value)} given")
            )
        elif (at := surrogate_at(value)) is not None:
            yield Problem("", _named(name, surrogate_rule(value, at)))

    check.spec = ("text", min_length, max_length)  # type: ignore[attr-defined]
    return check


def integer(*, minimum: int = -MAX_INTEGER, maximum: int = MAX_INTEGER) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if type(value) is not int:
            yield Problem(
                "", _named(name, f"must be an integer (got {type_name(value)} {describe(value)})")
            )
        elif value < minimum:
            yield Problem("", _named(name, f"must be >= {minimum}: {shown_number(value)}"))
        elif value > maximum:
            yield Problem("", _named(name, f"must be <= {maximum}: {shown_number(value)}"))

    check.spec = ("integer", minimum, maximum)  # type: ignore[attr-defined]
    return check


def too_precise(value: Decimal) -> bool:
    """More than MAX_DECIMAL_PLACES digits after the point, not counting trailing zeros."""
    text = str(value)  # several times cheaper than as_tuple(), for the plain notation
    if "E" not in text:
        point = text.find(".")
        if point < 0 or len(text) - point - 1 <= MAX_DECIMAL_PLACES:
            return False
        return len(text[point + 1 :].rstrip("0")) > MAX_DECIMAL_PLACES
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    extra = -MAX_DECIMAL_PLACES - exponent
    if extra <= 0:
        return False
    return any(digits[-extra:] if extra < len(digits) else digits)


def bound_problem(value: Decimal, maximum: Decimal) -> str | None:
    """Why a finite Decimal is out of the wire format's bounds, or None."""
    if value.copy_abs() >= maximum:  # copy_abs: no context, so no Overflow
        return f"must be below {maximum:.0E}: {shown_number(value)}"
    if too_precise(value):
        return (
            f"must have at most {MAX_DECIMAL_PLACES} digits after the decimal point: "
            f"{shown_number(value)}"
        )
    return None


def number(*, minimum: Decimal | None = None, maximum: Decimal = MAX_MONEY) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, Decimal):
            yield Problem(
                "", _named(name, f"must be a number (got {type_name(value)} {describe(value)})")
            )
        elif not value.is_finite():
            yield Problem("", _named(name, f"must be a finite number: {value}"))
        elif minimum is not None and value < minimum:
            yield Problem("", _named(name, f"must be >= {minimum}: {shown_number(value)}"))
        elif (problem := bound_problem(value, maximum)) is not None:
            yield Problem("", _named(name, problem))

    check.spec = ("number", minimum, maximum)  # type: ignore[attr-defined]
    return check


money = number(minimum=Decimal(0))


def one_of(enum_type: type[enum.StrEnum]) -> Check:
    allowed = ", ".join(repr(m.value) for m in enum_type)
    values = [m.value for m in enum_type]

    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, enum_type):
            candidate = hint_candidate(value)
            close = (
                difflib.get_close_matches(candidate.lower(), values, n=1)
                if candidate is not None
                else []
            )
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield Problem(
                "", _named(name, f"must be one of {allowed} (got {describe(value)}){hint}")
            )

    check.spec = ("enum", enum_type)  # type: ignore[attr-defined]
    return check


def size_problems(check: Check, name: str | None, value: Any) -> list[Problem]:
    """The size rule of an array check on a raw value, for when its elements fail."""
    max_items: int | None = getattr(check, "max_items", None)
    if max_items is not None and isinstance(value, list | tuple) and len(value) > max_items:
        return [
            Problem("", _named(name, f"must have at most {max_items} items: {len(value)} given"))
        ]
    return []


def array_of(item: Check, *, max_items: int | None = None) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, tuple | list):
            yield Problem(
                "", _named(name, f"must be an array (got {type_name(value)} {describe(value)})")
            )
            return
        if max_items is not None and len(value) > max_items:
            yield Problem(
                "", _named(name, f"must have at most {max_items} items: {len(value)} given")
            )
        for index, element in enumerate(value):
            for problem in item(_item(name, f"[{index}]"), element):
                yield problem.within(f"/{index}")

    check.max_items = max_items  # type: ignore[attr-defined]
    check.spec = ("array", getattr(item, "spec", None), max_items)  # type: ignore[attr-defined]
    return check


def instance_of(cls: type) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, cls):
            yield Problem(
                "",
                _named(
                    name, f"must be a {cls.__name__} (got {type_name(value)} {describe(value)})"
                ),
            )

    check.spec = ("model", cls)  # type: ignore[attr-defined]
    return check


def object_of(item: Check) -> Check:
    def check(name: str | None, value: Any) -> Iterator[Problem]:
        if not isinstance(value, Mapping):
            yield Problem(
                "", _named(name, f"must be an object (got {type_name(value)} {describe(value)})")
            )
            return
        for key, element in value.items():
            if not isinstance(key, str):
                yield Problem("", _named(name, f"keys must be strings: {describe(key)}"))
                continue
            pointer = f"/{escape_pointer_token(key)}"
            if len(key) > MAX_STRING_LENGTH:
                yield Problem(
                    pointer,
                    f"keys must have at most {MAX_STRING_LENGTH} characters: {len(key)} given",
                )
                continue
            if (at := surrogate_at(key)) is not None:
                yield Problem(pointer, f"keys {surrogate_rule(key, at)}")
                continue
            for problem in item(_item(name, f".{key}"), element):
                yield problem.within(pointer)

    check.spec = ("object", getattr(item, "spec", None))  # type: ignore[attr-defined]
    return check


def json_value(name: str | None, value: Any) -> Iterator[Problem]:
    """Any JSON value within the bounds; numbers must be int or Decimal so they stay exact."""
    yield from _json_problems(name, value, 1)


json_value.spec = ("json",)  # type: ignore[attr-defined]


def _json_problems(name: str | None, value: Any, depth: int) -> Iterator[Problem]:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            yield Problem(
                "",
                _named(
                    name,
                    f"must have at most {MAX_STRING_LENGTH} characters: {len(value)} given",
                ),
            )
        elif (at := surrogate_at(value)) is not None:
            yield Problem("", _named(name, surrogate_rule(value, at)))
        return
    if isinstance(value, int | Decimal):
        number_value = Decimal(value) if isinstance(value, int) else value
        if isinstance(value, Decimal) and not value.is_finite():
            yield Problem("", _named(name, f"must be a finite number: {value}"))
        elif (bound := bound_problem(number_value, MAX_ATTRIBUTE_NUMBER)) is not None:
            yield Problem("", _named(name, bound))
        return
    if isinstance(value, list | tuple | Mapping):
        if depth > MAX_ATTRIBUTE_DEPTH:
            yield Problem(
                "",
                _named(
                    name,
                    f"nests more than {MAX_ATTRIBUTE_DEPTH} objects/arrays deep "
                    "inside 'attributes'",
                ),
            )
            return
        if isinstance(value, Mapping):
            yield from object_of(lambda n, v: _json_problems(n, v, depth + 1))(name, value)
            return
        for index, element in enumerate(value):
            for problem in _json_problems(_item(name, f"[{index}]"), element, depth + 1):
                yield problem.within(f"/{index}")
        return
    yield Problem(
        "", _named(name, f"must be a JSON value (got {type(value).__name__} {describe(value)})")
    )


def optional(check: Check) -> Check:
    def wrapped(name: str | None, value: Any) -> Iterator[Problem]:
        if value is not None:
            yield from check(name, value)

    wrapped.max_items = getattr(check, "max_items", None)  # type: ignore[attr-defined]
    wrapped.spec = ("optional", getattr(check, "spec", None))  # type: ignore[attr-defined]
    return wrapped


def wire_field(
    check: Check,
    *,
    wire: str | None = None,
    default: Any = attrs.NOTHING,
    converter: Callable[[Any], Any] | None = None,
    hash: bool | None = None,
) -> Any:
    """An attrs field with its wire name and check in the metadata."""
    if default is None:
        check = optional(check)
    metadata = {"check": check, "wire": wire}
    return attrs.field(default=default, converter=converter, metadata=metadata, hash=hash)


def wire_name(attribute: "attrs.Attribute[Any]") -> str:
    """The camelCase wire name of a model field."""
    explicit: str | None = attribute.metadata.get("wire")
    if explicit:
        return explicit
    head, *rest = attribute.name.split("_")
    return head + "".join(part.title() for part in rest)


def field_problems(instance: Any) -> Iterator[Problem]:
    """Every per-field problem of a model instance, with wire pointers."""
    for attribute in attrs.fields(type(instance)):
        check: Check | None = attribute.metadata.get("check")
        if check is None:
            continue
        name = wire_name(attribute)
        for problem in check(name, getattr(instance, attribute.name)):
            yield problem.within(f"/{name}")


_M = TypeVar("_M")


# Totals a session model caches, and the fields each is computed from.
_CACHED_TOTALS = {
    "cart_total": ("cart_items",),
    "additional_cost_total": ("cart_items", "additional_costs"),
    "total": ("cart_items", "additional_costs", "total"),
    "effective_total": ("cart_items", "total"),
}


def replace(instance: _M, **changes: Any) -> _M:
    """``attrs.evolve`` for a valid model and values taken from valid models: no
    second round of checks (what the update path does on every session). Totals the
    instance has worked out are kept when what they are computed from is unchanged."""
    cls: Any = type(instance)
    made: _M = object.__new__(cls)
    get, put = object.__getattribute__, object.__setattr__
    for field in attrs.fields(cls):
        name = field.name
        put(made, name, changes[name] if name in changes else get(instance, name))
    fields = attrs.fields_dict(cls)
    for name, sources in _CACHED_TOTALS.items():
        if (
            name in cls.__slots__
            and name not in fields
            and not any(source in changes for source in sources)
        ):
            with contextlib.suppress(AttributeError):  # not worked out yet
                put(made, name, get(instance, name))
    return made


class _Validated:
    """Mixin: run every field check (and the class' own cross-field checks)."""

    __slots__ = ()

    def __attrs_post_init__(self) -> None:
        problems = list(field_problems(self))
        if not problems:
            problems = list(self._cross_field_problems())
        if problems:
            raise ValidationError(problems, subject=type(self).__name__)

    def _cross_field_problems(self) -> Iterator[Problem]:
        return iter(())


def cross_field_rules(cls: type) -> Callable[[Any], Iterator[Problem]] | None:
    """A model class' own rules across its fields (``instance -> problems``), if it has any."""
    found: Callable[[Any], Iterator[Problem]] = cls._cross_field_problems  # type: ignore[attr-defined]
    return None if found is _Validated._cross_field_problems else found


# ---------------------------------------------------------------------------
# Models


@attrs.frozen
class AdditionalCost(_Validated):
    """A named extra cost such as shipping: ``{"price": 4.99}``."""

    price: Decimal = wire_field(money, converter=_to_decimal)


@attrs.frozen
class Product(_Validated):
    """The product a cart item belongs to."""

    name: str = wire_field(text())


@attrs.frozen
class CartItem(_Validated):
    """One line of the cart, with Talon.One's fields and limits."""

    sku: str = wire_field(text(min_length=1))
    quantity: int = wire_field(integer(minimum=1, maximum=MAX_QUANTITY))
    name: str | None = wire_field(text(), default=None)
    price: Decimal | None = wire_field(money, default=None, converter=_to_decimal)
    category: str | None = wire_field(text(), default=None)
    weight: Decimal | None = wire_field(number(), default=None, converter=_to_decimal)
    height: Decimal | None = wire_field(number(), default=None, converter=_to_decimal)
    width: Decimal | None = wire_field(number(), default=None, converter=_to_decimal)
    length: Decimal | None = wire_field(number(), default=None, converter=_to_decimal)
    position: Decimal | None = wire_field(number(), default=None, converter=_to_decimal)
    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )
    returned_quantity: int | None = wire_field(
        integer(minimum=0, maximum=MAX_QUANTITY), default=None
    )
    remaining_quantity: int | None = wire_field(
        integer(minimum=0, maximum=MAX_QUANTITY), default=None
    )
    product: Product | None = wire_field(instance_of(Product), default=None)
    additional_costs: dict[str, AdditionalCost] | None = wire_field(
        object_of(instance_of(AdditionalCost)), default=None, hash=False
    )
    catalog_item_id: int | None = wire_field(integer(), wire="catalogItemID", default=None)

    @property
    def line_total(self) -> Decimal:
        """price x quantity; an item without a price counts as 0."""
        if self.price is None:
            return Decimal(0)
        return ARITHMETIC.multiply(self.price, self.quantity)

    @property
    def unit_cost_total(self) -> Decimal:
        """The item's own additional costs for one unit."""
        total = Decimal(0)
        for cost in (self.additional_costs or {}).values():
            total = ARITHMETIC.add(total, cost.price)
        return total

    @property
    def line_cost_total(self) -> Decimal:
        """The item's additional costs times its quantity."""
        return ARITHMETIC.multiply(self.unit_cost_total, self.quantity)


@attrs.frozen
class ReturnedCartItem(_Validated):
    """What to return from a closed session: a position (or SKU) and a quantity."""

    position: int | None = wire_field(integer(minimum=0, maximum=MAX_CART_ITEMS), default=None)
    quantity: int | None = wire_field(integer(minimum=1, maximum=MAX_QUANTITY), default=None)
    sku: str | None = wire_field(text(min_length=1), default=None)

    def _cross_field_problems(self) -> Iterator[Problem]:
        if self.position is None and self.sku is None:
            yield Problem("", "a returned item needs a 'position' or a 'sku'")


def _cart_problems(items: tuple[CartItem, ...] | None) -> Iterator[Problem]:
    quantity = sum(item.quantity for item in items or ())
    if quantity > MAX_TOTAL_QUANTITY:
        yield Problem(
            "/cartItems",
            f"the total quantity of 'cartItems' must be at most {MAX_TOTAL_QUANTITY}: "
            f"{quantity} given",
        )


def _in_money_bounds(amount: Decimal) -> bool:
    return amount < MAX_MONEY


def _total_problem(pointer: str, what: str, amount: Decimal) -> Problem:
    return Problem(pointer, f"{what} must be below {MAX_MONEY:.0E}: {shown_number(amount)}")


@attrs.frozen
class NewCustomerSession(_Validated):
    """A customer session as the integration sends it (the seed's model).

    ``total`` is what the client sent (``None`` when absent); ``cart_total`` is
    the sum of price x quantity; rules see :attr:`effective_total`.
    """

    profile_id: str | None = wire_field(text(max_length=MAX_ID_LENGTH), default=None)
    coupon: str | None = wire_field(text(max_length=MAX_CODE_LENGTH), default=None)
    referral: str | None = wire_field(text(max_length=MAX_CODE_LENGTH), default=None)
    state: SessionState = wire_field(
        one_of(SessionState), default=SessionState.OPEN, converter=_to_state
    )
    cart_items: tuple[CartItem, ...] | None = wire_field(
        array_of(instance_of(CartItem), max_items=MAX_CART_ITEMS),
        default=None,
        converter=_to_tuple,
    )
    identifiers: tuple[str, ...] | None = wire_field(
        array_of(text(max_length=MAX_ID_LENGTH), max_items=MAX_IDENTIFIERS),
        default=None,
        converter=_to_tuple,
    )
    total: Decimal | None = wire_field(money, default=None, converter=_to_decimal)
    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )

    def _cross_field_problems(self) -> Iterator[Problem]:
        yield from _cart_problems(self.cart_items)
        if not _in_money_bounds(self.cart_total):
            yield _total_problem(
                "/cartItems", "the cart total (price x quantity over 'cartItems')", self.cart_total
            )

    @functools.cached_property
    def cart_total(self) -> Decimal:
        """The sum of price x quantity over the cart (0 for an empty cart)."""
        total = Decimal(0)
        for item in self.cart_items or ():
            total = ARITHMETIC.add(total, item.line_total)
        return total

    @functools.cached_property
    def effective_total(self) -> Decimal:
        """What rules see: ``total`` if the client sent it, else ``cart_total``."""
        return self.total if self.total is not None else self.cart_total

    # The V2 names, so the engine and the response read both dialects alike.

    @property
    def coupon_codes(self) -> tuple[str, ...]:
        """V2's ``couponCodes``: the one V1 ``coupon``, if any."""
        return (self.coupon,) if self.coupon else ()

    @property
    def referral_code(self) -> str | None:
        """V2's ``referralCode``: the V1 ``referral``."""
        return self.referral or None

    @property
    def additional_costs(self) -> dict[str, AdditionalCost] | None:
        """V1 sessions have no additional costs."""
        return None

    @property
    def cart_item_total(self) -> Decimal:
        return self.cart_total

    @property
    def additional_cost_total(self) -> Decimal:
        return Decimal(0)

    @property
    def cart_item_additional_cost_total(self) -> Decimal:
        return Decimal(0)

    @property
    def version(self) -> int:
        return 1

    def _repr_html_(self) -> str:
        return html_of(self)


MAX_COUPON_CODES = 100
"""A V2 session sends at most 100 coupon codes (a sandbox bound; Talon.One states none)."""
MAX_LOYALTY_CARD_LENGTH = 108


@attrs.frozen
class NewCustomerSessionV2(_Validated):
    """A customer session in Talon.One's current Integration API (``NewCustomerSessionV2``).

    Several ``coupon_codes``, one ``referral_code``, session-level
    ``additional_costs``; the total is computed (cart items plus additional
    costs, before discounts), never sent. A field left as ``None`` was not
    sent: an update keeps the stored value (Talon.One's merge); ``state``
    too, so a new session without one is open.

    >>> s = NewCustomerSessionV2(coupon_codes=["XMAS"], additional_costs={"shipping": AdditionalCost(price=5)},
    ...                          cart_items=[CartItem(sku="a", quantity=2, price=10)])
    >>> s.total
    Decimal('25')
    """

    profile_id: str | None = wire_field(text(max_length=MAX_ID_LENGTH), default=None)
    store_integration_id: str | None = wire_field(
        text(min_length=1, max_length=MAX_ID_LENGTH), default=None
    )
    evaluable_campaign_ids: tuple[int, ...] | None = wire_field(
        array_of(integer(minimum=1)), default=None, converter=_to_tuple
    )
    coupon_codes: tuple[str, ...] | None = wire_field(
        array_of(text(max_length=MAX_CODE_LENGTH), max_items=MAX_COUPON_CODES),
        default=None,
        converter=_to_tuple,
    )
    referral_code: str | None = wire_field(text(max_length=MAX_CODE_LENGTH), default=None)
    loyalty_cards: tuple[str, ...] | None = wire_field(
        array_of(text(max_length=MAX_LOYALTY_CARD_LENGTH), max_items=1),
        default=None,
        converter=_to_tuple,
    )
    state: SessionState | None = wire_field(one_of(SessionState), default=None, converter=_to_state)
    cart_items: tuple[CartItem, ...] | None = wire_field(
        array_of(instance_of(CartItem), max_items=MAX_CART_ITEMS),
        default=None,
        converter=_to_tuple,
    )
    additional_costs: dict[str, AdditionalCost] | None = wire_field(
        object_of(instance_of(AdditionalCost)), default=None, hash=False
    )
    identifiers: tuple[str, ...] | None = wire_field(
        array_of(text(max_length=MAX_ID_LENGTH), max_items=MAX_IDENTIFIERS),
        default=None,
        converter=_to_tuple,
    )
    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )

    def _cross_field_problems(self) -> Iterator[Problem]:
        problems = list(_cart_problems(self.cart_items))
        if problems:
            yield from problems
            return
        # Every amount the engine derives (totals, shares of them, discounts) stays within
        # the money bound only if the totals it starts from do.
        if not _in_money_bounds(self.cart_total):
            yield _total_problem(
                "/cartItems", "the cart total (price x quantity over 'cartItems')", self.cart_total
            )
        elif not _in_money_bounds(self.additional_cost_total):
            yield _total_problem(
                "/additionalCosts",
                "the additional cost total (session costs, plus each item's costs x its quantity)",
                self.additional_cost_total,
            )
        elif not _in_money_bounds(self.total):
            yield _total_problem(
                "/cartItems", "the total (cart items plus additional costs)", self.total
            )

    @functools.cached_property
    def cart_total(self) -> Decimal:
        """``cartItemTotal``: the sum of price x quantity (0 for an empty cart)."""
        total = Decimal(0)
        for item in self.cart_items or ():
            total = ARITHMETIC.add(total, item.line_total)
        return total

    @functools.cached_property
    def additional_cost_total(self) -> Decimal:
        """``additionalCostTotal``: session costs plus each item's costs x its quantity."""
        total = Decimal(0)
        for cost in (self.additional_costs or {}).values():
            total = ARITHMETIC.add(total, cost.price)
        for item in self.cart_items or ():
            total = ARITHMETIC.add(total, item.line_cost_total)
        return total

    @property
    def cart_item_total(self) -> Decimal:
        return self.cart_total

    @property
    def cart_item_additional_cost_total(self) -> Decimal:
        """``cartItemAdditionalCostTotal``: the items' costs x their quantities (a part of
        :attr:`additional_cost_total`)."""
        total = Decimal(0)
        for item in self.cart_items or ():
            total = ARITHMETIC.add(total, item.line_cost_total)
        return total

    @functools.cached_property
    def total(self) -> Decimal:
        """``total``: cart items plus additional costs, before discounts."""
        return ARITHMETIC.add(self.cart_total, self.additional_cost_total)

    @property
    def effective_total(self) -> Decimal:
        """What rules see: :attr:`total`."""
        return self.total

    @property
    def version(self) -> int:
        return 2

    def _repr_html_(self) -> str:
        return html_of(self)


class ResponseContent(enum.StrEnum):
    """``IntegrationRequest.responseContent``: the optional parts of a response."""

    CUSTOMER_SESSION = "customerSession"
    CUSTOMER_PROFILE = "customerProfile"
    COUPONS = "coupons"
    TRIGGERED_CAMPAIGNS = "triggeredCampaigns"
    REFERRAL = "referral"
    LOYALTY = "loyalty"
    EVENT = "event"
    AWARDED_GIVEAWAYS = "awardedGiveaways"
    RULE_FAILURE_REASONS = "ruleFailureReasons"
    PREVIOUS_RETURNS = "previousReturns"


class ProfileResponseContent(enum.StrEnum):
    """``CustomerProfileIntegrationRequestV2.responseContent``."""

    CUSTOMER_PROFILE = "customerProfile"
    TRIGGERED_CAMPAIGNS = "triggeredCampaigns"
    LOYALTY = "loyalty"
    EVENT = "event"
    AWARDED_GIVEAWAYS = "awardedGiveaways"
    RULE_FAILURE_REASONS = "ruleFailureReasons"


def _to_profile_content(value: Any) -> Any:
    if isinstance(value, list | tuple):
        known = ProfileResponseContent._value2member_map_
        return tuple(
            ProfileResponseContent(v) if isinstance(v, str) and v in known else v for v in value
        )
    return value


@attrs.frozen
class ProfileUpdate(_Validated):
    """The body of ``PUT /v2/customer_profiles/{integrationId}`` (``CustomerProfileIntegrationRequestV2``).

    ``attributes`` merge onto the profile's: a key sent replaces the stored
    value, keys left out stay. ``audiences_changes`` is accepted and ignored
    (the sandbox has no audiences).
    """

    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )
    evaluable_campaign_ids: tuple[int, ...] | None = wire_field(
        array_of(integer(minimum=1)), default=None, converter=_to_tuple
    )
    audiences_changes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )
    response_content: tuple[ProfileResponseContent, ...] | None = wire_field(
        array_of(one_of(ProfileResponseContent)), default=None, converter=_to_profile_content
    )


@attrs.frozen
class EventRequest(_Validated):
    """The body of ``POST /v2/events`` (``IntegrationEventV2Request``): a custom event.

    ``type`` is the event's type, which rules read as ``ctx.event.type``;
    ``attributes`` its attributes (``ctx.event.attributes``). Without a
    ``profile_id`` the event is anonymous.
    """

    type: str = wire_field(text(min_length=1, max_length=MAX_ID_LENGTH))
    profile_id: str | None = wire_field(text(max_length=MAX_ID_LENGTH), default=None)
    store_integration_id: str | None = wire_field(
        text(min_length=1, max_length=MAX_ID_LENGTH), default=None
    )
    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )
    evaluable_campaign_ids: tuple[int, ...] | None = wire_field(
        array_of(integer(minimum=1)), default=None, converter=_to_tuple
    )
    loyalty_cards: tuple[str, ...] | None = wire_field(
        array_of(text(max_length=MAX_LOYALTY_CARD_LENGTH)), default=None, converter=_to_tuple
    )
    response_content: tuple[ProfileResponseContent, ...] | None = wire_field(
        array_of(one_of(ProfileResponseContent)), default=None, converter=_to_profile_content
    )


@attrs.frozen
class NewReferral(_Validated):
    """The body of ``POST /v1/referrals`` (``NewReferral``): a referral code for an
    advocate, generated by the sandbox. ``attributes`` are accepted and not kept."""

    campaign_id: int = wire_field(integer(minimum=1))
    advocate_profile_integration_id: str = wire_field(text(min_length=1, max_length=MAX_ID_LENGTH))
    friend_profile_integration_id: str | None = wire_field(
        text(min_length=1, max_length=MAX_ID_LENGTH), default=None
    )
    start_date: str | None = wire_field(text(min_length=1, max_length=64), default=None)
    expiry_date: str | None = wire_field(text(min_length=1, max_length=64), default=None)
    usage_limit: int | None = wire_field(integer(minimum=0, maximum=999999), default=None)
    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=to_json, hash=False
    )


def _to_response_content(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(
            ResponseContent(v)
            if isinstance(v, str) and v in ResponseContent._value2member_map_
            else v
            for v in value
        )
    return value


@attrs.frozen
class IntegrationRequest(_Validated):
    """The body of ``PUT /v2/customer_sessions/{id}``: a V2 session and what to answer.

    ``response_content`` names the optional parts of the response
    (:class:`ResponseContent`); ``effects``, ``createdCoupons`` and
    ``createdReferrals`` are always there.
    """

    customer_session: NewCustomerSessionV2 = wire_field(instance_of(NewCustomerSessionV2))
    response_content: tuple[ResponseContent, ...] | None = wire_field(
        array_of(one_of(ResponseContent)), default=None, converter=_to_response_content
    )


AnySession: TypeAlias = "NewCustomerSession | NewCustomerSessionV2"
"""A session of either dialect: the engine and the store read both."""


def check_total(session: NewCustomerSession) -> None:
    """Refuse a ``total`` that differs from a non-empty cart's sum.

    A buggy integration that sends the wrong total is what the sandbox exists
    to catch; ``strict_total=False`` skips this check.
    """
    if session.total is None or not session.cart_items:
        return
    if session.total != session.cart_total:
        raise ValidationError(
            [
                Problem(
                    "/total",
                    f"'total' must equal the sum of price x quantity over 'cartItems' "
                    f"({session.cart_total}): {session.total}",
                )
            ],
            subject="NewCustomerSession",
        )
