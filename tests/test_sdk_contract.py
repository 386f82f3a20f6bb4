"""The official SDK on both sides: SDK-built requests in, SDK deserialization of every answer out.

A matrix of sandboxes (flattened or not) and dialects (V1 ``NewCustomerSession``, a bare
V2 ``NewCustomerSessionV2``, an ``IntegrationRequest``), each driven through a whole
lifecycle (open, update, close, return, reopen, close again, cancel). Every answer must
deserialize as the SDK's ``IntegrationStateV2``, every effect's props as the SDK's
``<EffectType>EffectProps``, and together the answers must cover every effect type the
sandbox emits. The SDK (talon-one-sdk) is the referee: if its models reject what we
answer, we are wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from sandbox import EffectType, IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

talon_one = pytest.importorskip("talon_one")
from talon_one import models as m  # noqa: E402

NOW = "2026-12-01T10:00:00Z"
ALL_PARTS = [
    "customerSession",
    "customerProfile",
    "coupons",
    "triggeredCampaigns",
    "referral",
    "loyalty",
    "event",
    "awardedGiveaways",
    "ruleFailureReasons",
    "previousReturns",
]


def everything(*, flatten: bool) -> Sandbox:
    """Campaigns that together emit every effect type the sandbox has."""
    sb = Sandbox(now=NOW, flatten_cart_items=flatten)
    coupons = sb.campaign("Coupons")
    coupons.coupon("SAVE10")
    coupons.rule(
        "ten off and extras",
        when=[c.coupon_valid],
        then=[
            e.set_discount("Ten off", 10),
            e.add_free_item("GIFT-1", "Gift"),
            e.show_notification("Thanks", "You saved 10"),
            e.update_attribute("Session.Attributes.saved", True),
            e.trigger_webhook(7, "crm"),
        ],
    )
    items = sb.campaign("Shoes")
    items.rule(
        "20% off shoes",
        when=[c.has_item(category="shoes")],
        then=[e.set_discount_per_item("Shoes", percent=20, where=lambda i: i.category == "shoes")],
    )
    shipping = sb.campaign("Shipping")
    shipping.coupon("FREESHIP")
    shipping.rule(
        "free shipping",
        when=[c.coupon_valid],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    wrap = sb.campaign("Wrapping")
    wrap.rule(
        "half-price wrapping",
        then=[
            e.set_discount_per_additional_cost_per_item(
                "Wrap",
                cost="wrap",
                percent=50,
                where=lambda i: "wrap" in (i.additional_costs or {}),
            )
        ],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-1", advocate="adv-1")
    friends.referral("REF-2", advocate="p1")
    friends.rule("welcome", when=[c.referral_valid], then=[e.set_discount("Welcome", 5)])
    rewards = sb.campaign("Rewards")
    rewards.rule(
        "codes for the next order",
        when=[c.profile_present],
        then=[e.create_coupon(pattern="NEXT-####"), e.create_referral(pattern="SHARE-####")],
    )
    return sb


def sdk_cart(*, costs: bool) -> list[Any]:
    extra = {"additional_costs": {"wrap": m.AdditionalCost(price=2)}} if costs else {}
    return [
        m.CartItem(sku="SHOE-1", name="Boots", quantity=2, price=40, category="shoes", **extra),
        m.CartItem(sku="SOCK-1", name="Socks", quantity=1, price=5, category="socks"),
    ]


def v1_request(**fields: Any) -> dict[str, Any]:
    cart = sdk_cart(costs=False)
    total = sum(i.price * i.quantity for i in cart)
    made = m.NewCustomerSession(cart_items=cart, total=total, **fields).to_dict()
    return dict(made)


def v2_session(**fields: Any) -> Any:
    return m.NewCustomerSessionV2(
        cart_items=sdk_cart(costs=True),
        additional_costs={"shipping": m.AdditionalCost(price=4.99)},
        **fields,
    )


Dialect = Callable[..., dict[str, Any]]
DIALECTS: dict[str, Callable[..., dict[str, Any]]] = {
    "v1": lambda coupons, referral, **kw: v1_request(
        coupon=coupons[0] if coupons else None, referral=referral, **kw
    ),
    "v2": lambda coupons, referral, **kw: dict(
        v2_session(coupon_codes=coupons, referral_code=referral, **kw).to_dict()
    ),
    "request": lambda coupons, referral, **kw: dict(
        m.IntegrationRequest(
            customer_session=v2_session(coupon_codes=coupons, referral_code=referral, **kw),
            response_content=ALL_PARTS,
        ).to_dict()
    ),
}


def deserialize(state: IntegrationState) -> Any:
    """The answer through the SDK, as its client would read it; every effect's props too."""
    wire = state.to_wire(response_content=state.response_content)
    text = json.dumps(wire)
    sdk = talon_one.ApiClient().deserialize(text, "IntegrationStateV2", "application/json")
    assert sdk is not None
    assert len(sdk.effects) == len(state.effects)
    for effect in wire["effects"]:
        kind = effect["effectType"]
        props_model = getattr(m, kind[0].upper() + kind[1:] + "EffectProps")
        props = props_model.from_dict(effect["props"])
        assert props is not None, kind
        assert m.Effect.from_dict(effect) is not None
    return sdk


def lifecycle(sb: Sandbox, dialect: str) -> Iterator[tuple[str, IntegrationState]]:
    """Open, update, close, return, reopen, close again, cancel, each answer named."""
    make = DIALECTS[dialect]
    yield "open", sb.update("s1", make(["SAVE10", "NOPE-1"], "REF-1", profile_id="p1"))
    yield "self referral", sb.update("s0", make([], "REF-2", profile_id="p1"))
    yield (
        "update",
        sb.update("s1", make(["SAVE10", "FREESHIP"], "REF-1", profile_id="friend-1")),
    )
    yield (
        "close",
        sb.update(
            "s1", make(["SAVE10", "FREESHIP"], "REF-1", profile_id="friend-1", state="closed")
        ),
    )
    yield "return", sb.return_items("s1", [m.ReturnedCartItem(position=0, quantity=1).to_dict()])
    yield "cancel returned", sb.update("s1", {"state": "cancelled"})
    yield "open again", sb.update("s2", make(["SAVE10"], None, profile_id="friend-2"))
    yield (
        "close again",
        sb.update("s2", make(["SAVE10"], None, profile_id="friend-2", state="closed")),
    )
    yield "reopen", sb.reopen("s2")
    yield "cancel open", sb.update("s2", {"state": "cancelled"})


MATRIX = [(dialect, flatten) for dialect in DIALECTS for flatten in (True, False)]


@pytest.mark.parametrize(("dialect", "flatten"), MATRIX, ids=[f"{d}-flat{f}" for d, f in MATRIX])
def test_every_answer_of_a_lifecycle_deserializes_with_the_official_sdk(
    dialect: str, flatten: bool
) -> None:
    sb = everything(flatten=flatten)
    for step, state in lifecycle(sb, dialect):
        sdk = deserialize(state)
        session = sdk.customer_session
        if session is not None:  # reopen and return answers hold it too
            assert session.integration_id == state.session_id, step
            assert session.application_id == 1
            assert session.state == state.session.state.value  # type: ignore[union-attr]
            assert Decimal(str(session.total)) == state.session.effective_total


def test_the_matrix_covers_every_effect_type_the_sandbox_emits() -> None:
    seen: set[str] = set()
    for dialect, flatten in MATRIX:
        for _, state in lifecycle(everything(flatten=flatten), dialect):
            seen.update(effect.effect_type.value for effect in state.effects)
    assert seen == {kind.value for kind in EffectType}


def test_an_sdk_request_is_answered_with_exactly_the_parts_it_asks_for() -> None:
    sb = everything(flatten=True)
    request = m.IntegrationRequest(
        customer_session=v2_session(coupon_codes=["SAVE10"], profile_id="p1"),
        response_content=["customerSession", "coupons"],
    )
    state = sb.update("s1", request.to_dict())
    wire = state.to_wire(response_content=state.response_content)
    assert set(wire) == {
        "effects",
        "createdCoupons",
        "createdReferrals",
        "customerSession",
        "coupons",
    }
    sdk = talon_one.ApiClient().deserialize(
        json.dumps(wire), "IntegrationStateV2", "application/json"
    )
    assert [coupon.value for coupon in sdk.coupons] == ["SAVE10"]
    assert sdk.coupons[0].usage_counter == 0
    assert sdk.customer_session.coupon_codes == ["SAVE10"]
    assert sdk.customer_session.additional_cost_total == 4.99 + 2 * 2


def test_per_unit_effects_carry_sdk_positions_and_sub_positions() -> None:
    sb = everything(flatten=True)
    state = sb.update("s1", DIALECTS["v2"]([], None))
    sdk = deserialize(state)
    units = [
        (x.props["position"], x.props["subPosition"])
        for x in sdk.effects
        if x.effect_type == "setDiscountPerItem"
    ]
    assert units == [(0, 0), (0, 1)]  # the two boots, unit by unit
