"""Interop with Talon.One's official Python SDK (talon-one-sdk, pydantic v2 models).

The SDK is an independent reading of the same OpenAPI schema: what it writes,
we read; what we write, it reads back into an equal model.

SDK quirks these tests work around (see the notes by each):
- money (price, total) and position are floats (``StrictFloat | StrictInt``), so
  only ``to_wire`` (plain JSON numbers) can feed it; ``to_wire(exact=True)``
  Decimals in ``attributes`` would make its ``to_json`` fail.
- ``from_dict`` maps a missing or null ``state`` to ``"open"`` and drops unknown
  keys silently; ours writes ``state`` always and refuses unknown keys.
"""

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import NewCustomerSession, dumps, from_wire, loads, to_wire
from strategies import sessions

pytest.importorskip("talon_one")

from talon_one.models.additional_cost import AdditionalCost as SdkAdditionalCost
from talon_one.models.cart_item import CartItem as SdkCartItem
from talon_one.models.new_customer_session import (
    NewCustomerSession as SdkSession,
)
from talon_one.models.product import Product as SdkProduct

INTEROP = settings(max_examples=50)


# ---------------------------------------------------------------------------
# From our sessions: ours -> SDK -> SDK's own serialisation -> ours -> SDK


@INTEROP
@given(sessions())
def test_the_sdk_reads_our_wire_form_and_gives_it_back_unchanged(s: NewCustomerSession) -> None:
    sdk = SdkSession.from_dict(to_wire(s))
    assert sdk is not None
    ours = from_wire(NewCustomerSession, sdk.to_dict())
    assert ours == s
    assert SdkSession.from_dict(to_wire(ours)) == sdk


@INTEROP
@given(sessions())
def test_the_sdk_reads_our_json_and_we_read_its_json(s: NewCustomerSession) -> None:
    sdk = SdkSession.from_json(dumps(s))
    assert sdk is not None
    assert loads(sdk.to_json()) == s
    assert SdkSession.from_json(dumps(loads(sdk.to_json()))) == sdk


@INTEROP
@given(sessions())
def test_our_wire_form_is_what_the_sdk_writes(s: NewCustomerSession) -> None:
    sdk = SdkSession.from_dict(to_wire(s))
    assert sdk is not None
    assert sdk.to_dict() == to_wire(s)


# ---------------------------------------------------------------------------
# From SDK models built directly, with the SDK's own field types


# Numbers stay inside the wire format's bounds (DESIGN.md section 4: money and measures
# below 1e15 with at most 20 decimals, attribute numbers below 1e30); rounding to 6
# places keeps a float's repr within them. Beyond them the codec refuses, as
# test_codec.py checks.
BIG = 1e14
cents = st.integers(min_value=0, max_value=100_000).map(lambda c: c / 100)
any_money = st.floats(min_value=0, max_value=BIG).map(lambda f: round(f, 6))
any_number = st.floats(min_value=-BIG, max_value=BIG).map(lambda f: round(f, 6)) | st.integers(
    min_value=-(10**14), max_value=10**14
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**29), max_value=10**29)
    | st.text(max_size=8)
    | any_number
)
attributes = st.dictionaries(st.text(max_size=6), json_scalars | st.lists(json_scalars, max_size=3))

sdk_items = st.builds(
    SdkCartItem,
    sku=st.text(min_size=1, max_size=8),
    quantity=st.integers(min_value=1, max_value=5),
    name=st.none() | st.text(max_size=8),
    price=st.none() | cents | any_money,
    category=st.none() | st.text(max_size=8),
    weight=st.none() | any_number,
    height=st.none() | any_number,
    width=st.none() | any_number,
    length=st.none() | any_number,
    # The SDK types position as a number (float or int), not an index.
    position=st.none() | st.integers(0, 20) | st.integers(0, 20).map(float),
    attributes=st.none() | attributes,
    returned_quantity=st.none() | st.integers(0, 5),
    remaining_quantity=st.none() | st.integers(0, 5),
    product=st.none() | st.builds(SdkProduct, name=st.text(max_size=8)),
    additional_costs=st.none()
    | st.dictionaries(
        st.text(min_size=1, max_size=8), st.builds(SdkAdditionalCost, price=cents), max_size=2
    ),
    catalog_item_id=st.none() | st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1),
)

sdk_sessions = st.builds(
    SdkSession,
    profile_id=st.none() | st.text(max_size=12),
    coupon=st.none() | st.text(max_size=100),
    referral=st.none() | st.text(max_size=100),
    state=st.sampled_from(["open", "closed", "cancelled", "partially_returned"]),
    cart_items=st.none() | st.lists(sdk_items, max_size=4),
    identifiers=st.none() | st.lists(st.text(max_size=20), max_size=5),
    total=st.none() | cents | any_money,
    attributes=st.none() | attributes,
)


@INTEROP
@given(sdk_sessions)
def test_an_sdk_session_survives_our_codec(sdk: Any) -> None:
    # Arbitrary SDK totals need not match the cart: trust them, as Talon.One does.
    ours = from_wire(NewCustomerSession, sdk.to_dict(), strict_total=False)
    assert SdkSession.from_dict(to_wire(ours)) == sdk


@INTEROP
@given(sdk_sessions)
def test_an_sdk_session_survives_our_json(sdk: Any) -> None:
    ours = loads(sdk.to_json(), strict_total=False)
    assert SdkSession.from_json(dumps(ours)) == sdk


@INTEROP
@given(sdk_sessions)
def test_sdk_floats_become_the_decimals_of_their_text(sdk: Any) -> None:
    ours = from_wire(NewCustomerSession, sdk.to_dict(), strict_total=False)
    if sdk.total is not None:
        assert ours.total == Decimal(repr(sdk.total))
    for theirs, mine in zip(sdk.cart_items or (), ours.cart_items or (), strict=True):
        if theirs.price is not None:
            assert mine.price == Decimal(repr(theirs.price))


# ---------------------------------------------------------------------------
# Known differences, pinned so a change on either side is noticed


def test_sdk_from_dict_turns_a_missing_state_into_open_like_ours() -> None:
    sdk = SdkSession.from_dict({"profileId": "p1"})
    assert sdk is not None
    assert sdk.state == "open"
    assert to_wire(from_wire(NewCustomerSession, {"profileId": "p1"}))["state"] == "open"


def test_sdk_to_json_cannot_write_decimals_so_we_feed_it_plain_numbers() -> None:
    s = NewCustomerSession(attributes={"rate": Decimal("0.15")})
    with pytest.raises(TypeError):
        SdkSession.from_dict(to_wire(s, exact=True)).to_json()  # type: ignore[union-attr]
    sdk = SdkSession.from_dict(to_wire(s))
    assert sdk is not None
    assert json.loads(sdk.to_json())["attributes"] == {"rate": 0.15}
