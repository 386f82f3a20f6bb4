"""The whole boundary, fuzzed: any JSON value at any field, and any text.

Properties (the Hardening issue): ``from_wire``, ``loads``, ``Sandbox.update``,
``return_items`` and ``reopen`` either succeed or raise a ``SandboxError`` whose
pointers exist in the payload (a "required" problem names a key its parent lacks);
a call that fails leaves ``sb.snapshot()`` unchanged; whatever is accepted can be
written back as JSON. Modest example counts here; ``--hypothesis-profile=fuzz``
runs them long.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import NewCustomerSession, SandboxError, ValidationError, dumps, loads
from sandbox.codec import from_wire, to_wire
from sandbox.fuzzing import load_rules
from strategies import payloads

XMAS = Path(__file__).parent.parent / "examples" / "xmas.py"
BUILD, _ = load_rules(XMAS)

# Any JSON value, and the Python values a dict may hold that JSON cannot: huge and
# non-finite numbers, non-string keys, deep nesting.
_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, -(10**16), 2**64])
    | st.integers(4400, 5000).map(lambda digits: 10**digits)  # too long for int -> str
    | st.floats()
    | st.decimals()
    | st.sampled_from([Decimal("1e400"), Decimal("9e999999"), Decimal("1e-400")])
    | st.text(max_size=12)
    | st.sampled_from(["closed", "open", "XMAS-2021", "REF-2740", "x" * 20_000])
)
_json = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6) | st.integers(0, 9), inner, max_size=3)
    ),
    max_leaves=10,
)


def _nest(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


any_value = _json | st.integers(25, 1500).map(_nest)

SESSION_KEYS = (
    "profileId",
    "coupon",
    "referral",
    "state",
    "cartItems",
    "identifiers",
    "total",
    "attributes",
    "unknownKey",
)
ITEM_KEYS = (
    "sku",
    "quantity",
    "price",
    "name",
    "category",
    "weight",
    "position",
    "attributes",
    "returnedQuantity",
    "product",
    "additionalCosts",
    "catalogItemID",
    "bogus",
)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid wire session with one field (of the session or of a cart item) replaced."""
    payload: dict[str, Any] = copy.deepcopy(draw(payloads(valid=True)))
    items = payload.get("cartItems")
    if items and draw(st.booleans()):
        item = items[draw(st.integers(0, len(items) - 1))]
        item[draw(st.sampled_from(ITEM_KEYS))] = draw(any_value)
    else:
        payload[draw(st.sampled_from(SESSION_KEYS))] = draw(any_value)
    return payload


def _resolve(document: Any, tokens: list[str]) -> bool:
    for token in tokens:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict):
            matches = [k for k in document if str(k) == key]
            if not matches:
                return False
            document = document[matches[0]]
        elif isinstance(document, list | tuple):
            if not key.isdigit() or int(key) >= len(document):
                return False
            document = document[int(key)]
        else:
            return False
    return True


def assert_pointers_exist(error: SandboxError, payload: Any) -> None:
    if not isinstance(error, ValidationError):
        return
    for problem in error.errors:
        tokens = problem.pointer.split("/")[1:] if problem.pointer else []
        if _resolve(payload, tokens):
            continue
        shown = f"pointer {problem.pointer!r} is not in the payload: {problem.message}"
        assert "is required" in problem.message, shown
        assert _resolve(payload, tokens[:-1]), shown


def assert_writable(session: NewCustomerSession) -> None:
    json.dumps(to_wire(session))
    assert loads(dumps(session)) == session


BOUNDARY = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None
)


@BOUNDARY
@given(mutated_payloads())
def test_from_wire_accepts_a_writable_session_or_reports_pointers_in_the_payload(
    payload: dict[str, Any],
) -> None:
    try:
        session = from_wire(NewCustomerSession, payload, strict_total=False)
    except SandboxError as error:
        assert_pointers_exist(error, payload)
    else:
        assert_writable(session)


_json_texts = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    payloads(valid=True).map(lambda p: json.dumps(p, default=str)),
)


@st.composite
def raw_texts(draw: st.DrawFn) -> str | bytes:
    """Text, bytes, or a valid session's JSON with a slice cut out or a character put in."""
    text = draw(_json_texts)
    if isinstance(text, str) and text and draw(st.booleans()):
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, len(text)))
        text = (
            text[:i]
            + draw(st.sampled_from(["", "[", "{", '"', "1e999", "-", ",", "9" * 5000]))
            + text[j:]
        )
    return text


@BOUNDARY
@given(raw_texts())
def test_loads_accepts_a_writable_session_or_raises_a_sandbox_error(text: str | bytes) -> None:
    try:
        session = loads(text, strict_total=False)
    except SandboxError:
        return
    assert_writable(session)


@BOUNDARY
@given(mutated_payloads(), st.booleans(), st.sampled_from(["open", "closed"]))
def test_an_update_succeeds_or_fails_at_payload_pointers_and_changes_nothing(
    payload: dict[str, Any], dry: bool, first_state: str
) -> None:
    sb = BUILD()
    sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80, "state": first_state})
    before = sb.snapshot()
    try:
        state = sb.update("s1" if dry else "s2", payload, dry=dry)
    except SandboxError as error:
        assert_pointers_exist(error, payload)
        assert sb.snapshot() == before
    else:
        json.dumps(state.to_wire())
        if dry:
            assert sb.snapshot() == before


_returned = st.lists(
    st.fixed_dictionaries(
        {}, optional={"position": any_value, "quantity": any_value, "sku": any_value}
    )
    | any_value,
    max_size=3,
)


@BOUNDARY
@given(_returned | any_value, any_value, st.booleans())
def test_return_items_and_reopen_succeed_or_fail_without_changing_anything(
    items: Any, session_id: Any, dry: bool
) -> None:
    sb = BUILD()
    cart = [{"sku": "SHOE-9", "quantity": 2, "price": 30, "category": "shoes"}]
    sb.update(
        "s1", {"profileId": "p1", "coupon": "XMAS-2021", "cartItems": cart, "state": "closed"}
    )
    before = sb.snapshot()
    try:
        sb.return_items("s1", items, dry=dry)
    except SandboxError as error:
        assert_pointers_exist(error, {"returnedCartItems": items})
        assert sb.snapshot() == before
    before = sb.snapshot()
    for target in (session_id, "s1"):
        try:
            sb.reopen(target, dry=dry)
        except SandboxError:
            assert sb.snapshot() == before
