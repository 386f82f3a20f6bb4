"""Schema-valid sessions and cart items that shrink to small, readable ones.

Every field has a default strategy that starts with its simplest value (``None``
for optional fields, ``"p1"``, ``"sku-1"``, ``Decimal("0.00")``), so a failing
example shrinks to a session a person can read at a glance. Money is always a
``Decimal`` with two places, never a float. ``version=2`` draws Talon.One's
current ``NewCustomerSessionV2``: several coupon codes, a referral code,
session and per-item additional costs, and no client total.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from sandbox.core import Sandbox
from sandbox.errors import ValidationError
from sandbox.models import (
    AdditionalCost,
    AnySession,
    CartItem,
    NewCustomerSession,
    NewCustomerSessionV2,
    SessionState,
)
from strategies._inventory import Inventory, check_sandbox, inventory

__all__ = ["cart_items", "sessions"]

F = TypeVar("F", bound=Callable[..., Any])

_CENT = Decimal("0.01")
_CODE_ALPHABET = string.ascii_uppercase + string.digits
_MAX_CART_LINES = 4
_MAX_IDENTIFIERS = 5
_MAX_COUPON_CODES = 3
_COST_NAMES = ("shipping", "packaging", "handling")
VERSIONS = (1, 2)


def _money(*, max_cents: int) -> SearchStrategy[Decimal]:
    # Whole cents times 0.01 keeps two places even for zero (Decimal("0.00"), not 0E-2).
    return st.integers(min_value=0, max_value=max_cents).map(lambda cents: Decimal(cents) * _CENT)


# Default strategies, one per field. ``None`` comes first so optional fields shrink to absent.
_ITEM_FIELDS: dict[str, SearchStrategy[Any]] = {
    "sku": st.integers(min_value=1, max_value=99).map("sku-{}".format),
    "quantity": st.integers(min_value=1, max_value=5),
    "price": _money(max_cents=500_00),
    "name": st.none() | st.text(string.ascii_letters + " ", min_size=1, max_size=12),
    "category": st.none() | st.sampled_from(("books", "food", "shoes", "toys")),
}

_ATTRIBUTE_VALUES: SearchStrategy[Any] = st.one_of(
    st.text(max_size=10),
    st.integers(min_value=-1000, max_value=1000),
    _money(max_cents=1000_00),
    st.booleans(),
)

_ATTRIBUTE_DICTS: SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=8), _ATTRIBUTE_VALUES, max_size=3
)

_PROFILE_IDS: SearchStrategy[str] = st.integers(min_value=1, max_value=99).map("p{}".format)
_CODES: SearchStrategy[str] = st.text(_CODE_ALPHABET, min_size=4, max_size=12)

_SESSION_FIELDS: dict[str, SearchStrategy[Any]] = {
    "profile_id": st.none() | _PROFILE_IDS,
    "coupon": st.none() | _CODES,
    "referral": st.none() | _CODES,
    "state": st.just(SessionState.OPEN),
    "identifiers": st.none()
    | st.lists(st.ip_addresses().map(str), min_size=1, max_size=_MAX_IDENTIFIERS).map(tuple),
    "attributes": st.none() | _ATTRIBUTE_DICTS,
}


def _costs(
    names: Sequence[str], *, max_cents: int, min_size: int = 0
) -> SearchStrategy[dict[str, AdditionalCost]]:
    price = _money(max_cents=max_cents).map(lambda p: AdditionalCost(price=p))
    return st.dictionaries(st.sampled_from(tuple(names)), price, min_size=min_size, max_size=2)


def _coupon_codes(
    element: SearchStrategy[str], normalize: Callable[[str], str]
) -> SearchStrategy[tuple[str, ...] | None]:
    # Codes equal after the sandbox's normalization are one code sent twice: a ValidationError.
    codes = st.lists(element, max_size=_MAX_COUPON_CODES, unique_by=normalize).map(tuple)
    return st.none() | codes


# The V2 fields drawn by default; the others (storeIntegrationId, loyaltyCards,
# evaluableCampaignIds) stay absent unless pinned. There is no client total in V2.
_SESSION_FIELDS_V2: dict[str, SearchStrategy[Any]] = {
    "profile_id": _SESSION_FIELDS["profile_id"],
    "coupon_codes": _coupon_codes(_CODES, str.upper),
    "referral_code": _SESSION_FIELDS["referral"],
    "state": _SESSION_FIELDS["state"],
    "additional_costs": st.none() | _costs(_COST_NAMES, max_cents=50_00),
    "identifiers": _SESSION_FIELDS["identifiers"],
    "attributes": _SESSION_FIELDS["attributes"],
}


# ---------------------------------------------------------------------------
# Arguments: checked when the strategy is made, not when it is drawn from.


def check_version(caller: str, version: Any) -> None:
    if type(version) is not int or version not in VERSIONS:
        raise InvalidArgument(
            f"{caller}(version=...) must be 1 (the seed's NewCustomerSession) or 2 "
            f"(Talon.One's NewCustomerSessionV2), got {type(version).__name__} {version!r}"
        )


def session_class(version: int) -> type[NewCustomerSession] | type[NewCustomerSessionV2]:
    return NewCustomerSession if version == 1 else NewCustomerSessionV2


def _check_fixed(caller: str, cls: type, base: Any, fixed: Mapping[str, Any]) -> None:
    """Refuse unknown field names and pinned values the model itself refuses."""
    names = [a.name for a in attrs.fields(cls)]
    unknown = [key for key in fixed if key not in names]
    if unknown:
        hints = "".join(_did_you_mean(key, names) for key in unknown)
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}"
            f"{hints}. Valid names are the {cls.__name__} fields: {', '.join(names)}"
        )
    values = {k: v for k, v in fixed.items() if not isinstance(v, SearchStrategy)}
    try:
        attrs.evolve(base, **values)
    except ValidationError as exc:
        raise InvalidArgument(
            f"{caller}(): the pinned value(s) {values!r} are not a valid {cls.__name__} "
            f"(pass a strategy to draw values, or a value that passes the model's checks):\n"
            f"{exc}"
        ) from exc


def _did_you_mean(key: str, names: Sequence[str]) -> str:
    # Wire names (cartItems, profileId) are the likely slip: compare without case and "_".
    flat = {name.replace("_", ""): name for name in names}
    match = flat.get(key.replace("_", "").lower())
    if match is None:
        close = difflib.get_close_matches(key, names, n=1)
        match = close[0] if close else None
    return f" ({key!r}: did you mean {match!r}?)" if match else ""


def _shown_as(name: str) -> Callable[[F], F]:
    """Give a composite's function the public name, so the strategy's repr shows the call."""

    def rename(function: F) -> F:
        function.__name__ = name
        function.__qualname__ = name
        return function

    return rename


def _pick(
    draw: st.DrawFn, fixed: Mapping[str, Any], name: str, default: SearchStrategy[Any]
) -> Any:
    value = fixed.get(name, default)
    return draw(value) if isinstance(value, SearchStrategy) else value


# ---------------------------------------------------------------------------
# Cart items


def cart_items(**fixed: Any) -> SearchStrategy[CartItem]:
    """A strategy for one schema-valid :class:`~sandbox.CartItem`.

    By default an item has a short ``sku`` (``"sku-1"``), a ``quantity`` of 1..5,
    a ``price`` between 0.00 and 500.00 (a two-place ``Decimal``), and maybe a
    ``name`` and a ``category``. Keyword arguments pin fields by their Python
    names: a strategy is drawn from, any other value is used as is.

    >>> from decimal import Decimal
    >>> item = cart_items(sku="shoe", price=Decimal("20.00")).example()
    >>> (item.sku, item.price)
    ('shoe', Decimal('20.00'))
    """
    _check_fixed("cart_items", CartItem, CartItem(sku="sku-1", quantity=1), fixed)
    return _draw_cart_item(**fixed)


@st.composite
@_shown_as("cart_items")
def _draw_cart_item(draw: st.DrawFn, /, **fixed: Any) -> CartItem:
    values = {name: _pick(draw, fixed, name, default) for name, default in _ITEM_FIELDS.items()}
    # Fields without a default strategy (weight, product, ...) stay None unless pinned.
    values.update({n: _pick(draw, fixed, n, st.none()) for n in fixed if n not in values})
    return CartItem(**values)


_CARTS: SearchStrategy[tuple[CartItem, ...] | None] = st.none() | st.lists(
    cart_items(), max_size=_MAX_CART_LINES
).map(tuple)
# V2 items may carry their own additional costs (per unit: flattening multiplies them).
_ITEM_COSTS: SearchStrategy[dict[str, AdditionalCost] | None] = st.none() | _costs(
    _COST_NAMES, max_cents=10_00, min_size=1
)
_CARTS_V2: SearchStrategy[tuple[CartItem, ...] | None] = st.none() | st.lists(
    cart_items(additional_costs=_ITEM_COSTS), max_size=_MAX_CART_LINES
).map(tuple)
_FREE_TOTALS: SearchStrategy[Decimal | None] = st.none() | _money(max_cents=1000_00)


def _carts_summing_to(total: Any) -> SearchStrategy[tuple[CartItem, ...] | None]:
    """Carts that agree with a pinned ``total``: none, empty, or one line priced at it."""
    one_line = cart_items(quantity=1, price=total).map(lambda item: (item,))
    return st.one_of(st.none(), st.just(()), one_line)


def _totals_for(
    cart: tuple[CartItem, ...] | None, free: SearchStrategy[Decimal | None]
) -> SearchStrategy[Decimal | None]:
    """No total, or the cart's exact sum (strict_total holds); any amount for no cart."""
    if cart:
        return st.none() | st.just(sum((item.line_total for item in cart), Decimal("0.00")))
    return free


# ---------------------------------------------------------------------------
# Rule-aware fields: the sandbox's codes, people and the constants its rules test


@attrs.frozen
class _Fields:
    session: Mapping[str, SearchStrategy[Any]]
    carts: SearchStrategy[tuple[CartItem, ...] | None]
    free_totals: SearchStrategy[Decimal | None]


_PLAIN = _Fields(_SESSION_FIELDS, _CARTS, _FREE_TOTALS)
_PLAIN_V2 = _Fields(_SESSION_FIELDS_V2, _CARTS_V2, st.none())


def _mixed(
    default: SearchStrategy[Any], hinted: Sequence[Any], *, none: bool = False
) -> SearchStrategy[Any]:
    """None (if optional), the default, or a value a rule mentions: in that shrink order."""
    branches = [st.none()] if none else []
    branches.append(default)
    if hinted:
        branches.append(st.sampled_from(tuple(hinted)))
    return st.one_of(branches)


def _known_codes(inv: Inventory, kind: str) -> SearchStrategy[str] | None:
    codes = [entry.code for entry in inv.of_kind(kind)]
    if not codes:
        return None
    # Not .flatmap: that builds (and validates) a new strategy on every draw.
    variants = {code: st.sampled_from(inv.variants(code)) for code in codes}
    return _code_variant(st.sampled_from(codes), variants)


@st.composite
def _code_variant(
    draw: st.DrawFn, codes: SearchStrategy[str], variants: Mapping[str, SearchStrategy[str]]
) -> str:
    """A known code, as stored or in another letter case the sandbox maps to it."""
    return draw(variants[draw(codes)])


def _rule_aware(inv: Inventory, version: int = 1) -> _Fields:
    cached: _Fields | None = inv.memo.get(f"fields:{version}")
    if cached is not None:
        return cached
    strings = list(inv.strings)
    item_fields: dict[str, Any] = {
        "sku": _mixed(_ITEM_FIELDS["sku"], [*inv.skus, *strings]),
        "price": _mixed(_ITEM_FIELDS["price"], inv.amounts),
        "category": _mixed(_ITEM_FIELDS["category"], [*inv.categories, *strings]),
    }
    cost_names = tuple(dict.fromkeys([*inv.cost_names, *_COST_NAMES]))
    if version == 2:
        item_fields["additional_costs"] = st.none() | _costs(
            cost_names, max_cents=10_00, min_size=1
        )
    item = cart_items(**item_fields)
    fields = dict(_SESSION_FIELDS)
    fields["profile_id"] = st.one_of(st.none(), st.sampled_from(inv.profiles), _PROFILE_IDS)
    for kind in ("coupon", "referral"):
        known = _known_codes(inv, kind)
        if known is not None:
            fields[kind] = fields[kind] | known
    if inv.identifiers:
        address = st.ip_addresses().map(str) | st.sampled_from(inv.identifiers)
        fields["identifiers"] = st.none() | st.lists(
            address, min_size=1, max_size=_MAX_IDENTIFIERS
        ).map(tuple)
    pairs: list[SearchStrategy[tuple[str, Any]]] = []
    if inv.attribute_pairs:
        pairs.append(st.sampled_from(inv.attribute_pairs))
    if strings:
        values = st.sampled_from([*strings, *inv.amounts, True, False])
        pairs.append(st.tuples(st.sampled_from(strings), values))
    if pairs:
        fields["attributes"] = st.none() | st.builds(
            _merge, _ATTRIBUTE_DICTS, st.lists(st.one_of(pairs), max_size=3)
        )
    if version == 2:
        coupons = _CODES
        known = _known_codes(inv, "coupon")
        if known is not None:
            coupons = coupons | known
        fields = {
            "profile_id": fields["profile_id"],
            "coupon_codes": _coupon_codes(coupons, inv.normalize),
            "referral_code": fields["referral"],
            "state": fields["state"],
            "additional_costs": st.none() | _costs(cost_names, max_cents=50_00),
            "identifiers": fields["identifiers"],
            "attributes": fields["attributes"],
        }
    found = _Fields(
        session=fields,
        carts=st.none() | st.lists(item, max_size=_MAX_CART_LINES).map(tuple),
        free_totals=_mixed(_money(max_cents=1000_00), inv.amounts, none=True)
        if version == 1
        else st.none(),
    )
    inv.memo[f"fields:{version}"] = found
    return found


def _merge(random: dict[str, Any], hinted: list[tuple[str, Any]]) -> dict[str, Any]:
    return {**random, **dict(hinted)}


# ---------------------------------------------------------------------------
# Sessions


def sessions(sb: Sandbox | None = None, *, version: int = 1, **fixed: Any) -> SearchStrategy[Any]:
    """A strategy for schema-valid, open :class:`~sandbox.NewCustomerSession` models
    (``version=2``: :class:`~sandbox.NewCustomerSessionV2`).

    Sessions shrink to small, readable ones: every optional field may be
    ``None``; ``profile_id`` is short (``"p1"``); ``coupon`` and ``referral`` are
    4..12 uppercase letters and digits; ``cart_items`` has 0..4 lines from
    :func:`cart_items`; ``identifiers`` are 1..5 IPv4 or IPv6 addresses;
    ``attributes`` is a small dict of strings, integers, Decimals and booleans.
    ``total`` is ``None`` or exactly the cart's sum, so ``from_wire`` with
    ``strict_total=True`` accepts every drawn session; with no cart (or an
    empty one) it is any two-place amount.

    With a sandbox ``sb`` the sessions are rule-aware, read from ``sb`` when
    drawn: codes also come from its coupons and referrals (sometimes in
    another letter case), profiles from a small pool with the coupons'
    recipients and the referrals' advocates and friends, and attribute keys
    and values, SKUs, categories, identifiers and amounts from the constants
    its rules' conditions compare against (a threshold and a cent either side
    of it), mixed with random ones.

    Keyword arguments pin fields by their Python names: a strategy is drawn
    from, any other value is used as is, and unknown names raise ``TypeError``.
    Pinning ``total`` alone draws carts that agree with it (none, empty, or one
    line priced at the total); pinning both ``total`` and ``cart_items`` is
    taken as asked, even if they disagree.

    ``version=2`` draws V2 sessions the same way, with ``coupon_codes`` (0..3
    distinct codes, the sandbox's and unknown ones), ``referral_code``,
    session-level ``additional_costs`` (shipping, packaging, handling and the
    costs the sandbox's rules discount) and cart items that may carry their own
    costs; quantities up to 5 exercise cart flattening. There is no ``total``
    (V2 computes it); pinning takes the V2 field names.

    >>> s = sessions(profile_id="p1", coupon="XMAS-2021").example()
    >>> (s.profile_id, s.coupon, s.state.value)
    ('p1', 'XMAS-2021', 'open')
    >>> sessions(version=2, coupon_codes=["A-1", "B-2"]).example().coupon_codes
    ('A-1', 'B-2')
    """
    check_sandbox("sessions", sb, optional=True)
    check_version("sessions", version)
    cls = session_class(version)
    _check_fixed("sessions", cls, cls(), fixed)
    if version == 1:
        return _draw_session(sb, **fixed)
    return _draw_session(sb, version=version, **fixed)


@st.composite
@_shown_as("sessions")
def _draw_session(
    draw: st.DrawFn, /, sb: Sandbox | None = None, *, version: int = 1, **fixed: Any
) -> AnySession:
    return draw_session(draw, sb, fixed, version)


def draw_session(
    draw: st.DrawFn,
    sb: Sandbox | None,
    fixed: Mapping[str, Any],
    version: int = 1,
    inv: Inventory | None = None,
) -> AnySession:
    """Draw one session inside another composite (no strategy built, nothing re-checked);
    ``inv`` is the sandbox's inventory when the caller has already read it."""
    if sb is not None and inv is None:
        inv = inventory(sb)
    if version == 2:
        return _draw_v2(draw, inv, fixed)
    fields = _PLAIN if inv is None else _rule_aware(inv)
    values = {name: _pick(draw, fixed, name, default) for name, default in fields.session.items()}
    if "total" in fixed and "cart_items" not in fixed:
        values["total"] = _pick(draw, fixed, "total", st.none())
        carts = fields.carts if values["total"] is None else _carts_summing_to(values["total"])
        values["cart_items"] = draw(carts)
    else:
        values["cart_items"] = _pick(draw, fixed, "cart_items", fields.carts)
        values["total"] = _pick(
            draw, fixed, "total", _totals_for(values["cart_items"], fields.free_totals)
        )
    return NewCustomerSession(**values)


def _draw_v2(
    draw: st.DrawFn, inv: Inventory | None, fixed: Mapping[str, Any]
) -> NewCustomerSessionV2:
    fields = _PLAIN_V2 if inv is None else _rule_aware(inv, 2)
    values = {name: _pick(draw, fixed, name, default) for name, default in fields.session.items()}
    values["cart_items"] = _pick(draw, fixed, "cart_items", fields.carts)
    values.update({n: _pick(draw, fixed, n, st.none()) for n in fixed if n not in values})
    return NewCustomerSessionV2(**values)


# Registered on import (not through a Hypothesis entry point, see the package docstring), so
# st.from_type(NewCustomerSession) and st.builds(...) work once strategies is imported.
st.register_type_strategy(NewCustomerSession, sessions())
st.register_type_strategy(NewCustomerSessionV2, sessions(version=2))
st.register_type_strategy(CartItem, cart_items())
