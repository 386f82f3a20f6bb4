"""The codec's fast path (a decode plan per model class) agrees with its full path.

Property: for any payload, the plan either refuses it (and the full path then decides,
with every problem and its pointer) or returns exactly what the full path returns; it
never accepts a payload the full path refuses. Payloads: valid V1 and V2 sessions, the
invalid ones of ``payloads(valid=False)``, and the boundary test's mutated payloads.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import NewCustomerSession, NewCustomerSessionV2
from sandbox._decode import Refused, decoder_for
from sandbox.codec import converter
from strategies import payloads
from tests.test_boundary_properties import mutated_payloads

AGREE = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def full_path(cls: type, payload: Any) -> tuple[bool, Any]:
    try:
        return True, converter.structure(payload, cls)
    except Exception:
        return False, None


def check(cls: type, payload: Any) -> None:
    ok, slow = full_path(cls, payload)
    try:
        fast = decoder_for(cls)(payload)
    except Refused:
        return
    assert ok, f"the plan accepted what the full path refuses: {payload!r}"
    assert fast == slow
    assert type(fast) is type(slow)


@AGREE
@given(payloads(valid=True) | payloads(valid=False).map(lambda p: p.payload))
def test_the_plan_accepts_what_the_full_path_accepts_and_refuses_the_rest_v1(
    payload: dict[str, Any],
) -> None:
    check(NewCustomerSession, payload)
    check(NewCustomerSessionV2, payload)


@AGREE
@given(mutated_payloads())
def test_the_plan_never_accepts_a_mutated_payload_the_full_path_refuses(
    payload: dict[str, Any],
) -> None:
    check(NewCustomerSession, payload)


def test_a_valid_payload_takes_the_fast_path() -> None:
    payload = {"cartItems": [{"sku": "a", "quantity": 2, "price": 1.5}], "couponCodes": ["A"]}
    decoded = decoder_for(NewCustomerSessionV2)(payload)
    assert decoded == converter.structure(payload, NewCustomerSessionV2)


@given(st.sampled_from([{"total": True}, {"unknown": 1}, {"cartItems": [{"sku": ""}]}]))
def test_invalid_payloads_are_refused_by_the_plan(payload: dict[str, Any]) -> None:
    try:
        decoder_for(NewCustomerSession)(payload)
    except Refused:
        return
    raise AssertionError(f"accepted {payload!r}")
