"""The session models: totals, states, returned items, and the seed's own example.

Expected values are computed by hand from the examples, not read back from the code.
"""

from decimal import Decimal

import pytest

from sandbox import (
    CartItem,
    NewCustomerSession,
    ReturnedCartItem,
    SessionState,
    ValidationError,
    from_wire,
    loads,
    to_wire,
)

SHOES = CartItem(sku="shoe", quantity=2, price=Decimal("49.99"))
SOCKS = CartItem(sku="sock", quantity=3, price=Decimal("0.10"))
GIFT = CartItem(sku="gift-card", quantity=1)  # no price: counts as 0


# ---------------------------------------------------------------------------
# Totals


def test_cart_total_is_the_sum_of_price_times_quantity() -> None:
    s = NewCustomerSession(cart_items=[SHOES, SOCKS, GIFT])
    # 2 x 49.99 + 3 x 0.10 + 1 x (no price) = 99.98 + 0.30 + 0
    assert s.cart_total == Decimal("100.28")


def test_cart_total_of_three_ten_cent_items_is_exact() -> None:
    s = NewCustomerSession(cart_items=[SOCKS])
    assert s.cart_total == Decimal("0.30")
    assert isinstance(s.cart_total, Decimal)


@pytest.mark.parametrize("cart", [None, []], ids=["no cart", "empty cart"])
def test_cart_total_without_items_is_zero(cart: list[CartItem] | None) -> None:
    assert NewCustomerSession(cart_items=cart).cart_total == 0


def test_effective_total_is_the_cart_total_when_no_total_is_sent() -> None:
    s = NewCustomerSession(cart_items=[SHOES])
    assert s.total is None
    assert s.effective_total == Decimal("99.98")


def test_effective_total_is_the_sent_total_when_there_is_one() -> None:
    s = NewCustomerSession(cart_items=[SHOES], total=Decimal("80"))
    assert s.effective_total == Decimal("80")


def test_a_sent_total_of_zero_is_not_replaced_by_the_cart_total() -> None:
    s = NewCustomerSession(cart_items=[SHOES], total=Decimal("0"))
    assert s.effective_total == 0


def test_effective_total_with_neither_cart_nor_total_is_zero() -> None:
    assert NewCustomerSession().effective_total == 0


def test_a_free_item_counts_as_zero_not_as_missing() -> None:
    free = CartItem(sku="sample", quantity=4, price=Decimal("0.00"))
    assert NewCustomerSession(cart_items=[free, SOCKS]).cart_total == Decimal("0.30")


def test_python_numbers_become_decimal_money() -> None:
    item = CartItem(sku="a", quantity=3, price=0.1)
    assert item.price == Decimal("0.1")
    assert NewCustomerSession(cart_items=[item]).cart_total == Decimal("0.3")
    assert NewCustomerSession(total=80).total == Decimal(80)


# ---------------------------------------------------------------------------
# States


def test_session_states_are_talon_ones_four() -> None:
    assert {state.value for state in SessionState} == {
        "open",
        "closed",
        "cancelled",
        "partially_returned",
    }


def test_session_state_compares_equal_to_its_wire_string() -> None:
    assert SessionState("partially_returned") is SessionState.PARTIALLY_RETURNED
    assert SessionState.CLOSED == "closed"


def test_a_new_session_is_open_by_default() -> None:
    assert NewCustomerSession().state is SessionState.OPEN


def test_a_state_given_as_a_string_becomes_the_enum() -> None:
    assert NewCustomerSession(state="closed").state is SessionState.CLOSED


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        NewCustomerSession(state="shipped")
    assert info.value.pointers == ["/state"]


# ---------------------------------------------------------------------------
# Returned items


def test_a_returned_item_needs_a_position_or_a_sku() -> None:
    with pytest.raises(ValidationError) as info:
        ReturnedCartItem(quantity=1)
    assert "position" in str(info.value)
    assert "sku" in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [{"position": 0, "quantity": 1}, {"sku": "shoe"}, {"position": 3}],
    ids=["position 0", "sku", "position only"],
)
def test_a_returned_item_with_a_position_or_a_sku_is_valid(fields: dict[str, object]) -> None:
    item = from_wire(ReturnedCartItem, fields)
    assert to_wire(item) == fields


def test_a_returned_item_from_the_wire_also_needs_a_position_or_a_sku() -> None:
    with pytest.raises(ValidationError):
        from_wire(ReturnedCartItem, {"quantity": 1})


def test_a_returned_item_quantity_is_at_least_one() -> None:
    with pytest.raises(ValidationError) as info:
        ReturnedCartItem(position=0, quantity=0)
    assert info.value.pointers == ["/quantity"]


# ---------------------------------------------------------------------------
# The seed's code sample (reference/seed_NewCustomerSession.md)

SEED_WIRE = {
    "profileId": "URNGV8294NV",
    "coupon": "XMAS-2021",
    "referral": "2740-tbjua-6720",
    "state": "open",
    "cartItems": None,
    "identifiers": ["91.11.156.141"],
    "total": None,
    "attributes": None,
}

SEED_MODEL = NewCustomerSession(
    profile_id="URNGV8294NV",
    coupon="XMAS-2021",
    referral="2740-tbjua-6720",
    state=SessionState.OPEN,
    cart_items=None,
    identifiers=("91.11.156.141",),
    total=None,
    attributes=None,
)


def test_the_seed_sample_loads_from_the_wire() -> None:
    assert from_wire(NewCustomerSession, SEED_WIRE) == SEED_MODEL


def test_the_seed_sample_round_trips_without_its_nulls() -> None:
    wire = to_wire(from_wire(NewCustomerSession, SEED_WIRE))
    # Absent is not empty: the nulls are left out, everything else comes back as sent.
    assert wire == {k: v for k, v in SEED_WIRE.items() if v is not None}
    assert from_wire(NewCustomerSession, wire) == SEED_MODEL


def test_the_seed_sample_loads_from_json_text() -> None:
    text = (
        '{"profileId": "URNGV8294NV", "coupon": "XMAS-2021", "referral": "2740-tbjua-6720",'
        ' "state": "open", "cartItems": null, "identifiers": ["91.11.156.141"],'
        ' "total": null, "attributes": null}'
    )
    assert loads(text) == SEED_MODEL


def test_models_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        SEED_MODEL.coupon = "OTHER"  # type: ignore[misc]
    assert hash(SEED_MODEL) == hash(from_wire(NewCustomerSession, SEED_WIRE))
