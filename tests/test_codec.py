"""The wire format: round trips, exact money, and where every problem is reported.

Expected pointers and message fragments come from DESIGN.md (sections 3-4),
Talon.One's limits (reference/talon_semantics.md, section 1.5) and STYLE.md's
message shape (`'quantity' must be >= 1: 0`), not from the codec's output.
"""

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import (
    CartItem,
    NewCustomerSession,
    ValidationError,
    dumps,
    from_wire,
    loads,
    to_wire,
)
from strategies import sessions

# ---------------------------------------------------------------------------
# Helpers


def json_number(value: int | float) -> Decimal:
    """A number as JSON text means it: 1e+16 and 10000000000000000 are the same number."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by their decimal value (JSON has one number type),
    booleans apart from numbers, and no other conversions."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return json_number(a) == json_number(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(json_equal, a, b))
    return type(a) is type(b) and a == b


def parse(payload: Any, **options: Any) -> NewCustomerSession:
    """A dict goes through from_wire, JSON text through loads."""
    if isinstance(payload, str):
        return loads(payload, **options)
    return from_wire(NewCustomerSession, payload, **options)


def problems_of(payload: Any, **options: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse(payload, **options)
    return info.value


def item(**fields: Any) -> dict[str, Any]:
    return {"sku": "a", "quantity": 1, **fields}


# Wire payloads built directly (not by to_wire), so the round trip is checked
# against data the codec did not produce.
cents = st.integers(min_value=0, max_value=100_000).map(lambda c: c / 100)
# Inside the wire format's bounds (DESIGN.md section 4); rounding keeps a float's repr
# within 20 decimals. What lies beyond is refused: see "Bounds" below.
bounded_floats = st.floats(min_value=-1e14, max_value=1e14).map(lambda f: round(f, 6))
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**29), max_value=10**29)
    | st.text(max_size=8)
    | bounded_floats
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
wire_items = st.fixed_dictionaries(
    {"sku": st.text(min_size=1, max_size=8), "quantity": st.integers(1, 50)},
    optional={
        "name": st.text(max_size=8),
        "price": cents,
        "category": st.text(max_size=8),
        "weight": bounded_floats,
        "position": st.integers(0, 10),
        "attributes": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "catalogItemID": st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1),
        "product": st.fixed_dictionaries({"name": st.text(max_size=8)}),
        "additionalCosts": st.dictionaries(
            st.text(min_size=1, max_size=8), st.fixed_dictionaries({"price": cents}), max_size=2
        ),
    },
)
wire_sessions = st.fixed_dictionaries(
    {},
    optional={
        "profileId": st.text(max_size=12),
        "coupon": st.text(max_size=100),
        "referral": st.text(max_size=100),
        "state": st.sampled_from(["open", "closed", "cancelled", "partially_returned"]),
        "cartItems": st.lists(wire_items, max_size=4),
        "identifiers": st.lists(st.text(max_size=20), max_size=5),
        "total": cents,
        "attributes": st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    },
)


# ---------------------------------------------------------------------------
# Round trips


@given(sessions())
def test_from_wire_of_to_wire_is_identity(s: NewCustomerSession) -> None:
    assert from_wire(NewCustomerSession, to_wire(s)) == s


@given(sessions())
def test_loads_of_dumps_is_identity(s: NewCustomerSession) -> None:
    assert loads(dumps(s)) == s


@given(sessions())
def test_to_wire_of_from_wire_is_identity_for_payloads_made_by_to_wire(
    s: NewCustomerSession,
) -> None:
    payload = to_wire(s)
    assert json_equal(to_wire(from_wire(NewCustomerSession, payload)), payload)


@given(wire_sessions)
def test_to_wire_of_from_wire_is_identity_for_payloads_with_state(payload: dict[str, Any]) -> None:
    payload = {"state": "open", **payload}
    # Totals here are arbitrary, so trust them as Talon.One does.
    assert json_equal(to_wire(from_wire(NewCustomerSession, payload, strict_total=False)), payload)


@given(wire_sessions)
def test_a_payload_without_state_comes_back_open(payload: dict[str, Any]) -> None:
    payload.pop("state", None)
    back = to_wire(from_wire(NewCustomerSession, payload, strict_total=False))
    assert json_equal(back, {**payload, "state": "open"})


def test_none_fields_are_left_off_the_wire_but_state_is_written() -> None:
    assert to_wire(NewCustomerSession()) == {"state": "open"}
    assert to_wire(NewCustomerSession(profile_id="p1", coupon=None)) == {
        "profileId": "p1",
        "state": "open",
    }


def test_wire_names_are_camel_case() -> None:
    s = NewCustomerSession(
        profile_id="p1",
        cart_items=[CartItem(sku="a", quantity=1, catalog_item_id=7, returned_quantity=0)],
    )
    wire = to_wire(s)
    assert set(wire) == {"profileId", "state", "cartItems"}
    assert wire["cartItems"][0] == {
        "sku": "a",
        "quantity": 1,
        "catalogItemID": 7,
        "returnedQuantity": 0,
    }


# ---------------------------------------------------------------------------
# Money is Decimal, exact


def test_a_float_on_the_wire_becomes_the_decimal_of_its_text() -> None:
    s = from_wire(NewCustomerSession, {"total": 0.1, "cartItems": [item(price=0.1)]})
    assert s.total == Decimal("0.1")
    assert s.total != Decimal.from_float(0.1)  # the binary value, 0.1000000000000000055...
    assert s.cart_items is not None
    assert s.cart_items[0].price == Decimal("0.1")


def test_floats_in_attributes_become_decimals_too() -> None:
    s = from_wire(NewCustomerSession, {"attributes": {"rate": 0.1, "nested": [{"x": 2.5}]}})
    assert s.attributes == {"rate": Decimal("0.1"), "nested": [{"x": Decimal("2.5")}]}
    assert isinstance(s.attributes["rate"], Decimal)


@given(st.floats(min_value=0, max_value=1e15, exclude_max=True))
def test_any_wire_float_in_bounds_becomes_the_decimal_of_its_repr(value: float) -> None:
    exact = Decimal(repr(value))
    decimals = -exact.normalize().as_tuple().exponent  # type: ignore[operator]
    if decimals > 20:  # beyond the bound on decimals: refused at its pointer
        assert problems_of({"total": value}).pointers == ["/total"]
        return
    total = from_wire(NewCustomerSession, {"total": value}).total
    assert isinstance(total, Decimal)
    assert total == exact


def test_three_times_ten_cents_is_exactly_thirty_cents() -> None:
    s = from_wire(NewCustomerSession, {"cartItems": [item(quantity=3, price=0.1)], "total": 0.3})
    assert s.cart_total == Decimal("0.3")  # with floats: 0.30000000000000004


def test_loads_keeps_more_than_15_significant_digits() -> None:
    text = (
        '{"total": 123456789012345.67891,'
        ' "cartItems": [{"sku": "a", "quantity": 1, "price": 123456789012345.67891}]}'
    )
    s = loads(text)
    assert s.total == Decimal("123456789012345.67891")
    assert float(s.total) != s.total  # a float could not have held it
    assert "123456789012345.67891" in dumps(s)


def test_loads_keeps_trailing_zeros_as_written() -> None:
    s = loads('{"total": 12.30}')
    assert str(s.total) == "12.30"
    assert '"total": 12.30' in dumps(s)


@given(sessions(total=st.decimals(min_value=0, max_value=10**6, places=2)))
def test_dumps_writes_money_as_json_numbers(s: NewCustomerSession) -> None:
    plain = json.loads(dumps(s))
    assert isinstance(plain["total"], int | float)
    assert not isinstance(plain["total"], bool)
    exact = json.loads(dumps(s), parse_float=Decimal)
    assert exact["total"] == s.total
    for wire_item, model_item in zip(exact.get("cartItems", []), s.cart_items or (), strict=True):
        assert wire_item["price"] == model_item.price


@given(sessions(total=st.decimals(min_value=0, max_value=10**6, places=2)))
def test_to_wire_writes_money_as_plain_numbers(s: NewCustomerSession) -> None:
    total = to_wire(s)["total"]
    assert type(total) in (int, float)
    assert Decimal(repr(total)) == s.total


def test_integral_money_stays_an_integer_and_fractional_money_a_float() -> None:
    assert to_wire(from_wire(NewCustomerSession, {"total": 5}))["total"].__class__ is int
    assert to_wire(from_wire(NewCustomerSession, {"total": 5.0}))["total"].__class__ is float
    assert to_wire(from_wire(NewCustomerSession, {"total": 4.99}))["total"] == 4.99


@pytest.mark.parametrize("value", [9.99e14, 999999999999999.9])
def test_the_largest_floats_in_bounds_come_back_as_the_same_float(value: float) -> None:
    back = to_wire(from_wire(NewCustomerSession, {"total": value}))["total"]
    assert back == value
    assert type(back) is float


# ---------------------------------------------------------------------------
# Invalid payloads: every problem, with its pointer


INVALID: list[tuple[str, Any, list[str], str]] = [
    # (id, payload or JSON text, expected pointers, message fragment)
    ("missing sku", {"cartItems": [{"quantity": 1}]}, ["/cartItems/0/sku"], "'sku' is required"),
    (
        "missing quantity",
        {"cartItems": [{"sku": "a"}]},
        ["/cartItems/0/quantity"],
        "'quantity' is required",
    ),
    ("empty sku", {"cartItems": [item(sku="")]}, ["/cartItems/0/sku"], "'sku'"),
    (
        "quantity 0",
        {"cartItems": [item(quantity=0)]},
        ["/cartItems/0/quantity"],
        "'quantity' must be >= 1: 0",
    ),
    (
        "quantity as string",
        {"cartItems": [item(quantity="2")]},
        ["/cartItems/0/quantity"],
        "must be an integer",
    ),
    (
        "quantity 2.5",
        {"cartItems": [item(quantity=2.5)]},
        ["/cartItems/0/quantity"],
        "must be an integer",
    ),
    (
        "quantity 2.0",
        {"cartItems": [item(quantity=2.0)]},
        ["/cartItems/0/quantity"],
        "must be an integer",
    ),
    (
        "quantity true",
        {"cartItems": [item(quantity=True)]},
        ["/cartItems/0/quantity"],
        "must be an integer",
    ),
    (
        "bad quantity in the second item",
        {"cartItems": [item(), item(quantity=-1)]},
        ["/cartItems/1/quantity"],
        "'quantity' must be >= 1: -1",
    ),
    (
        "price abc",
        {"cartItems": [item(price="abc")]},
        ["/cartItems/0/price"],
        "must be a number",
    ),
    ("price true", {"cartItems": [item(price=True)]}, ["/cartItems/0/price"], "must be a number"),
    (
        "negative price",
        {"cartItems": [item(price=-1)]},
        ["/cartItems/0/price"],
        "'price' must be >= 0: -1",
    ),
    (
        "infinite price",
        {"cartItems": [item(price=math.inf)]},
        ["/cartItems/0/price"],
        "finite",
    ),
    ("negative total", {"total": -0.01}, ["/total"], "'total' must be >= 0: -0.01"),
    ("total as string", {"total": "12"}, ["/total"], "must be a number"),
    ("six identifiers", {"identifiers": list("abcdef")}, ["/identifiers"], "at most 5"),
    (
        "identifier not a string",
        {"identifiers": ["1.2.3.4", 42]},
        ["/identifiers/1"],
        "must be a string",
    ),
    ("identifiers a string", {"identifiers": "1.2.3.4"}, ["/identifiers"], "must be an array"),
    ("state shipped", {"state": "shipped"}, ["/state"], "'open'"),
    ("state null", {"state": None}, ["/state"], "'state' must be one of"),
    ("state capitalised", {"state": "Closed"}, ["/state"], "mean 'closed'"),
    ("unknown key cupon", {"cupon": "XMAS"}, ["/cupon"], "'coupon'"),
    (
        "unknown cart item key",
        {"cartItems": [item(prise=3)]},
        ["/cartItems/0/prise"],
        "'price'",
    ),
    ("coupon of 101 characters", {"coupon": "C" * 101}, ["/coupon"], "at most 100"),
    ("referral of 101 characters", {"referral": "R" * 101}, ["/referral"], "at most 100"),
    ("profileId of 1001 characters", {"profileId": "p" * 1001}, ["/profileId"], "at most 1000"),
    (
        "total differs from the cart",
        {"cartItems": [item(quantity=2, price=5)], "total": 11},
        ["/total"],
        "10",
    ),
    (
        "cart item attributes not an object",
        {"cartItems": [item(attributes=["gift"])]},
        ["/cartItems/0/attributes"],
        "must be an object",
    ),
    (
        "attribute value that is not JSON",
        {"attributes": {"when": dt.date(2026, 12, 24)}},
        ["/attributes/when"],
        "JSON",
    ),
    (
        "nested attribute value that is not JSON",
        {"attributes": {"a": {"b": [1, math.nan]}}},
        ["/attributes/a/b/1"],
        "JSON",
    ),
    (
        "attribute key escaped in the pointer",
        {"cartItems": [item(attributes={"size/fit": {1, 2}})]},
        ["/cartItems/0/attributes/size~1fit"],
        "JSON",
    ),
    ("cartItems not an array", {"cartItems": item()}, ["/cartItems"], "must be an array"),
    ("cart item not an object", {"cartItems": ["a"]}, ["/cartItems/0"], "must be an object"),
    ("cart item null", {"cartItems": [None]}, ["/cartItems/0"], "must be an object"),
    ("profileId a number", {"profileId": 12}, ["/profileId"], "must be a string"),
    (
        "catalogItemID as string",
        {"cartItems": [item(catalogItemID="7")]},
        ["/cartItems/0/catalogItemID"],
        "must be an integer",
    ),
    (
        "product without name",
        {"cartItems": [item(product={})]},
        ["/cartItems/0/product/name"],
        "'name' is required",
    ),
    (
        "additionalCosts price missing",
        {"cartItems": [item(additionalCosts={"shipping": {}})]},
        ["/cartItems/0/additionalCosts/shipping/price"],
        "'price' is required",
    ),
    (
        "additionalCosts not an object",
        {"cartItems": [item(additionalCosts=[])]},
        ["/cartItems/0/additionalCosts"],
        "must be an object",
    ),
    (
        "returnedQuantity negative",
        {"cartItems": [item(returnedQuantity=-1)]},
        ["/cartItems/0/returnedQuantity"],
        ">= 0",
    ),
    ("1001 cart items", {"cartItems": [item()] * 1001}, ["/cartItems"], "at most 1000"),
    (
        "total quantity over 10000",
        {"cartItems": [item(quantity=5000), item(quantity=5001)]},
        ["/cartItems"],
        "10000",
    ),
    ("payload an array", [item()], [""], "must be an object"),
    ("payload null", None, [""], "must be an object"),
    ("NaN via loads", '{"total": NaN}', [""], "NaN"),
    ("Infinity via loads", '{"total": Infinity}', [""], "Infinity"),
    ("not JSON via loads", '{"total": }', [""], "not valid JSON"),
]


@pytest.mark.parametrize(
    ("payload", "pointers", "fragment"),
    [pytest.param(*row[1:], id=row[0]) for row in INVALID],
)
def test_an_invalid_payload_is_reported_at_its_pointer(
    payload: Any, pointers: list[str], fragment: str
) -> None:
    err = problems_of(payload)
    assert [p.pointer for p in err.errors] == pointers
    assert any(fragment in p.message for p in err.errors), err.errors


def test_the_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 30


def test_three_independent_problems_are_all_reported() -> None:
    payload = {
        "profileId": 7,
        "identifiers": "1.2.3.4",
        "cartItems": [item(), item(quantity=0)],
    }
    err = problems_of(payload)
    assert {p.pointer for p in err.errors} == {
        "/profileId",
        "/identifiers",
        "/cartItems/1/quantity",
    }


def test_an_unknown_key_and_missing_required_keys_are_all_reported() -> None:
    err = problems_of({"cartItems": [{"prise": 1}]})
    assert set(err.pointers) == {
        "/cartItems/0/prise",
        "/cartItems/0/sku",
        "/cartItems/0/quantity",
    }


def test_the_error_message_lists_every_problem() -> None:
    err = problems_of({"profileId": 7, "coupon": "C" * 101})
    text = str(err)
    assert "/profileId" in text
    assert "/coupon" in text


@given(sessions(cart_items=st.lists(st.from_type(CartItem), min_size=1, max_size=4)), st.data())
def test_a_bad_quantity_is_reported_at_its_item(s: NewCustomerSession, data: st.DataObject) -> None:
    payload = to_wire(s)
    index = data.draw(st.integers(0, len(payload["cartItems"]) - 1), label="index")
    payload["cartItems"][index]["quantity"] = data.draw(
        st.integers(max_value=0) | st.text() | st.floats(), label="quantity"
    )
    err = problems_of(payload, strict_total=False)
    assert err.pointers == [f"/cartItems/{index}/quantity"]


def test_strict_total_false_accepts_a_total_that_differs_from_the_cart() -> None:
    payload = {"cartItems": [item(quantity=2, price=5)], "total": 11}
    s = from_wire(NewCustomerSession, payload, strict_total=False)
    assert s.total == Decimal(11)
    assert s.cart_total == Decimal(10)


def test_a_total_with_an_empty_cart_is_trusted() -> None:
    s = from_wire(NewCustomerSession, {"cartItems": [], "total": 5})
    assert s.total == Decimal(5)


def test_a_total_equal_to_the_cart_passes_the_strict_check() -> None:
    s = from_wire(
        NewCustomerSession,
        {"cartItems": [item(quantity=3, price=0.1), item(price=1.05)], "total": 1.35},
    )
    assert s.total == Decimal("1.35")


# ---------------------------------------------------------------------------
# The Python path validates like the wire path


def test_six_identifiers_in_python_are_refused_at_identifiers() -> None:
    with pytest.raises(ValidationError) as info:
        NewCustomerSession(identifiers=["1", "2", "3", "4", "5", "6"])
    assert info.value.pointers == ["/identifiers"]


def test_quantity_zero_in_python_is_refused_at_quantity() -> None:
    with pytest.raises(ValidationError) as info:
        CartItem(sku="a", quantity=0)
    assert info.value.pointers == ["/quantity"]
    assert "'quantity' must be >= 1: 0" in info.value.errors[0].message


def test_evolve_validates_again() -> None:
    s = NewCustomerSession(identifiers=["1.2.3.4"])
    with pytest.raises(ValidationError) as info:
        attrs.evolve(s, identifiers=[*"abcdef"])
    assert info.value.pointers == ["/identifiers"]
    with pytest.raises(ValidationError) as info:
        attrs.evolve(CartItem(sku="a", quantity=1), quantity=0)
    assert info.value.pointers == ["/quantity"]


def test_python_and_wire_paths_report_the_same_problem() -> None:
    with pytest.raises(ValidationError) as python:
        NewCustomerSession(coupon="C" * 101)
    wire = problems_of({"coupon": "C" * 101})
    assert python.value.errors == wire.errors


def test_loads_of_bytes_that_are_not_utf8_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="not UTF-8 text: byte 0xff at offset 0"):
        loads(b"\xff")
