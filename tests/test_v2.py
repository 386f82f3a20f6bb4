"""Talon.One's current Integration API (V2): dialects, merge semantics, several coupons,
additional costs, flattened carts, and the computed CustomerSessionV2 fields.

Expectations come from the reference (talon_semantics.md sections 1.1-1.5, 4.2) and
DESIGN.md sections 3 and 4, computed by hand in each test.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import (
    AdditionalCost,
    CartItem,
    IntegrationRequest,
    Limit,
    NewCustomerSession,
    NewCustomerSessionV2,
    Sandbox,
    TransitionError,
    ValidationError,
)
from sandbox import conditions as c
from sandbox import effects as e

NOW = "2026-12-01T10:00:00Z"
D = Decimal


def shop(**options: Any) -> Sandbox:
    """Two coupon campaigns and a referral programme."""
    sb = Sandbox(now=NOW, **options)
    xmas = sb.campaign("Xmas")
    xmas.coupon("XMAS-1", usage_limit=1)
    xmas.coupon("XMAS-2")
    xmas.rule("10 off", when=[c.coupon_valid], then=[e.set_discount("Xmas 10", 10)])
    ship = sb.campaign("Shipping")
    ship.coupon("FREESHIP")
    ship.rule(
        "free shipping",
        when=[c.coupon_valid],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-1", advocate="adv")
    friends.rule("5 off", when=[c.referral_valid], then=[e.set_discount("Welcome", 5)])
    return sb


def cart(*lines: tuple[str, str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "price": D(price), "quantity": q} for sku, price, q in lines]


# ---------------------------------------------------------------------------
# Dialects


def test_a_bare_dict_is_v1_with_coupon_referral_or_total_and_v2_otherwise() -> None:
    sb = shop()
    v1 = sb.update("a", {"coupon": "XMAS-2", "total": 50})
    assert isinstance(v1.session, NewCustomerSession)
    v2 = sb.update("b", {"couponCodes": ["XMAS-2"], "cartItems": cart(("x", "50", 1))})
    assert isinstance(v2.session, NewCustomerSessionV2)
    neither = sb.update("c", {"profileId": "p1"})
    assert isinstance(neither.session, NewCustomerSessionV2)
    request = sb.update("d", {"customerSession": {"couponCodes": ["XMAS-2"]}})
    assert isinstance(request.session, NewCustomerSessionV2)
    assert v1.accepted_coupons == v2.accepted_coupons == request.accepted_coupons == ["XMAS-2"]


def test_v1_and_v2_keys_together_are_an_error_at_each_v1_key() -> None:
    sb = shop()
    before = sb.snapshot()
    with pytest.raises(ValidationError) as info:
        sb.update("s", {"coupon": "XMAS-2", "total": 10, "couponCodes": ["XMAS-1"]})
    assert info.value.pointers == ["/coupon", "/total"]
    assert "write 'couponCodes'" in str(info.value)
    assert sb.snapshot() == before


def test_a_v1_key_inside_an_integration_request_is_reported_under_customer_session() -> None:
    with pytest.raises(ValidationError) as info:
        shop().update("s", {"customerSession": {"coupon": "XMAS-2"}})
    assert info.value.pointers == ["/customerSession/coupon"]
    assert "did you mean 'couponCodes'" in str(info.value)


def test_response_content_values_are_talon_ones() -> None:
    with pytest.raises(ValidationError) as info:
        shop().update("s", {"customerSession": {}, "responseContent": ["customerSessions"]})
    assert info.value.pointers == ["/responseContent/0"]
    assert "did you mean 'customerSession'" in str(info.value)


# ---------------------------------------------------------------------------
# Merge semantics (reference 1.1)


def test_an_omitted_field_keeps_the_stored_value() -> None:
    sb = shop()
    sb.update(
        "s",
        {"profileId": "p1", "couponCodes": ["XMAS-2"], "cartItems": cart(("x", "30", 1))},
    )
    state = sb.update("s", {"cartItems": cart(("x", "30", 2))})  # codes and profile left out
    assert state.session.coupon_codes == ("XMAS-2",)
    assert state.session.profile_id == "p1"
    assert state.session.total == D(60)
    assert state.accepted_coupons == ["XMAS-2"]


def test_an_empty_coupon_list_discards_the_stored_codes() -> None:
    sb = shop()
    sb.update("s", {"couponCodes": ["XMAS-2", "FREESHIP"], "cartItems": cart(("x", "30", 1))})
    state = sb.update("s", {"couponCodes": []})
    assert state.session.coupon_codes == ()
    assert state.accepted_coupons == []
    assert state.session.cart_items is not None  # the cart was kept


def test_an_empty_referral_code_discards_the_stored_referral() -> None:
    sb = shop()
    first = sb.update(
        "s", {"profileId": "f1", "referralCode": "REF-1", "cartItems": cart(("x", "30", 1))}
    )
    assert first.accepted_referrals == ["REF-1"]
    state = sb.update("s", {"referralCode": ""})
    assert state.session.referral_code is None
    assert state.accepted_referrals == []
    assert state.discounts == {}


def test_arrays_and_maps_are_replaced_wholesale() -> None:
    sb = shop()
    sb.update(
        "s",
        {
            "cartItems": [{"sku": "a", "quantity": 1, "price": 5, "attributes": {"gift": True}}],
            "additionalCosts": {"shipping": {"price": 4}, "wrap": {"price": 1}},
            "identifiers": ["ip-1", "ip-2"],
        },
    )
    state = sb.update(
        "s",
        {
            "cartItems": [{"sku": "b", "quantity": 1, "price": 7}],
            "additionalCosts": {"shipping": {"price": 3}},
            "identifiers": ["ip-3"],
        },
    )
    (item,) = state.session.cart_items or ()
    assert (item.sku, item.attributes) == ("b", None)  # the item's attributes went with it
    assert state.session.additional_costs == {"shipping": AdditionalCost(price=D(3))}
    assert state.session.identifiers == ("ip-3",)
    assert state.session.total == D(10)


def test_a_v2_close_with_only_a_state_keeps_cart_and_codes_and_commits() -> None:
    sb = shop()
    sb.update("s", {"couponCodes": ["XMAS-1"], "cartItems": cart(("x", "30", 1))})
    closed = sb.update("s", {"customerSession": {"state": "closed"}})
    assert closed.accepted_coupons == ["XMAS-1"]
    assert sb.get_coupon("XMAS-1").usage_counter == 1
    assert sb.get_session("s").state.value == "closed"


def test_a_v2_dry_run_evaluates_only_the_payload_sent() -> None:
    sb = shop()
    sb.update("s", {"couponCodes": ["XMAS-2"], "cartItems": cart(("x", "30", 1))})
    before = sb.snapshot()
    dry = sb.update("s", {"cartItems": cart(("x", "50", 1))}, dry=True)
    assert dry.session.coupon_codes is None  # not merged with the stored codes
    assert dry.accepted_coupons == []
    assert dry.session.total == D(50)
    assert sb.snapshot() == before


def test_v1_updates_still_replace_the_stored_session() -> None:
    sb = shop()
    sb.update("s", {"coupon": "XMAS-2", "total": 30, "profileId": "p1"})
    state = sb.update("s", {"total": 40})
    assert state.session.profile_id is None
    assert state.session.coupon is None  # type: ignore[union-attr]


def test_a_v2_update_of_a_closed_session_without_state_is_a_transition_error() -> None:
    sb = shop()
    sb.update("s", {"cartItems": cart(("x", "30", 1)), "state": "closed"})
    before = sb.snapshot()
    with pytest.raises(TransitionError, match="already closed"):
        sb.update("s", {"cartItems": cart(("x", "31", 1))})
    assert sb.snapshot() == before


def test_cancelling_a_closed_v2_session_may_repeat_fields_but_not_change_them() -> None:
    sb = shop()
    sb.update(
        "s", {"couponCodes": ["XMAS-1"], "cartItems": cart(("x", "30", 1)), "state": "closed"}
    )
    with pytest.raises(TransitionError, match="'couponCodes' differs"):
        sb.update("s", {"couponCodes": ["XMAS-2"], "state": "cancelled"})
    state = sb.update("s", {"couponCodes": ["XMAS-1"], "state": "cancelled"})
    assert [r.effect_type.value for r in state.rollbacks][:1] == ["rollbackCoupon"]
    assert sb.get_coupon("XMAS-1").usage_counter == 0


# ---------------------------------------------------------------------------
# evaluableCampaignIds and a dry run's now


def test_evaluable_campaign_ids_select_campaigns_in_dry_runs_only_disabled_ones_too() -> None:
    sb = shop()
    sb.get_campaign("Xmas").disable()
    payload = {
        "couponCodes": ["XMAS-2", "FREESHIP"],
        "evaluableCampaignIds": [1],
        "additionalCosts": {"shipping": {"price": 5}},
        "cartItems": cart(("x", "30", 1)),
    }
    dry = sb.update("s", payload, dry=True)
    assert dry.accepted_coupons == ["XMAS-2"]  # the disabled campaign was evaluated
    assert dry.rejected_coupons == {"FREESHIP": "CouponPartOfNotTriggeredCampaign"}
    real = sb.update("s", payload)  # ignored without dry: the running campaigns only
    assert real.accepted_coupons == ["FREESHIP"]
    assert real.rejected_coupons == {"XMAS-2": "CouponPartOfNotRunningCampaign"}


def test_an_unknown_evaluable_campaign_id_is_refused_at_its_pointer() -> None:
    with pytest.raises(ValidationError) as info:
        shop().update("s", {"customerSession": {"evaluableCampaignIds": [1, 99]}}, dry=True)
    assert info.value.pointers == ["/customerSession/evaluableCampaignIds/1"]


def test_a_dry_run_can_look_ahead_with_now() -> None:
    sb = Sandbox(now=NOW)
    later = sb.campaign("New year", start="2027-01-01T00:00:00Z")
    later.rule("1 off", then=[e.set_discount("one", 1)])
    assert sb.update("s", {"cartItems": cart(("x", "10", 1))}, dry=True).discounts == {}
    ahead = sb.update(
        "s", {"cartItems": cart(("x", "10", 1))}, dry=True, now="2027-01-02T00:00:00Z"
    )
    assert ahead.discounts == {"one": D(1)}
    with pytest.raises(ValidationError, match="only for dry runs"):
        sb.update("s", {"cartItems": []}, now="2027-01-02T00:00:00Z")
    with pytest.raises(ValidationError, match="look ahead only"):
        sb.update("s", {"cartItems": []}, dry=True, now="2020-01-01T00:00:00Z")


# ---------------------------------------------------------------------------
# Several coupons (DESIGN.md section 4)


def test_each_code_gets_exactly_one_outcome() -> None:
    sb = shop()
    state = sb.update(
        "s",
        {
            "couponCodes": ["NOPE", "XMAS-2", "FREESHIP"],
            "cartItems": cart(("x", "30", 1)),
            "additionalCosts": {"shipping": {"price": 4.99}},
        },
    )
    assert state.rejected_coupons == {"NOPE": "CouponNotFound"}
    assert state.accepted_coupons == ["XMAS-2", "FREESHIP"]
    assert state.discounts == {"Xmas 10": D(10), "Free shipping": D("4.99")}


def test_a_second_valid_code_of_one_campaign_is_rejected_naming_the_code_in_use() -> None:
    state = shop().update(
        "s", {"couponCodes": ["XMAS-2", "XMAS-1"], "cartItems": cart(("x", "30", 1))}
    )
    assert state.accepted_coupons == ["XMAS-2"]
    (rejection,) = state.effects_of("rejectCoupon")
    assert rejection.value == "XMAS-1"
    assert rejection.rejection_reason == "CouponRejectedByCondition"
    assert "already uses coupon 'XMAS-2'" in rejection.props["details"]
    assert state.discounts == {"Xmas 10": D(10)}


def test_a_limit_on_one_code_does_not_reject_another() -> None:
    sb = shop()
    sb.update(
        "a", {"couponCodes": ["XMAS-1"], "cartItems": cart(("x", "30", 1)), "state": "closed"}
    )
    state = sb.update("b", {"couponCodes": ["XMAS-1", "XMAS-2"], "cartItems": cart(("x", "30", 1))})
    assert state.rejected_coupons == {"XMAS-1": "CouponLimitReached"}
    assert state.accepted_coupons == ["XMAS-2"]  # the campaign takes its first *valid* code


def test_counters_move_per_code_at_close_and_back_at_cancel() -> None:
    sb = Sandbox(now=NOW)
    for name in ("A", "B"):
        campaign = sb.campaign(name, limits=[Limit("redeemCoupon", 5)])
        campaign.coupon(f"CODE-{name}")
        campaign.rule("one off", when=[c.coupon_valid], then=[e.set_discount(f"{name} 1", 1)])
    payload = {
        "couponCodes": ["CODE-A", "CODE-B"],
        "cartItems": cart(("x", "30", 1)),
        "state": "closed",
    }
    sb.update("s", payload)
    assert (sb.get_coupon("CODE-A").usage_counter, sb.get_coupon("CODE-B").usage_counter) == (1, 1)
    counters = {(c.campaign_name, c.action): c.counter for c in sb.limit_counters()}
    assert counters == {("A", "redeemCoupon"): 1, ("B", "redeemCoupon"): 1}
    cancelled = sb.update("s", {"state": "cancelled"})
    assert [e.value for e in cancelled.effects_of("rollbackCoupon")] == ["CODE-A", "CODE-B"]
    assert (sb.get_coupon("CODE-A").usage_counter, sb.get_coupon("CODE-B").usage_counter) == (0, 0)
    assert sb.limit_counters() == []


def test_per_coupon_effects_carry_the_coupon_that_triggered_them() -> None:
    sb = shop()
    state = sb.update(
        "s",
        {
            "couponCodes": ["FREESHIP", "XMAS-2"],
            "cartItems": cart(("x", "30", 1)),
            "additionalCosts": {"shipping": {"price": 3}},
        },
    )
    by_name = {e.name: e.triggered_by_coupon for e in state.effects if e.effect_type.is_discount}
    assert by_name == {
        "Free shipping": sb.get_coupon("FREESHIP").id,
        "Xmas 10": sb.get_coupon("XMAS-2").id,
    }


def test_duplicate_codes_after_case_normalisation_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        shop().update("s", {"couponCodes": ["XMAS-2", "xmas-2"]})
    assert info.value.pointers == ["/couponCodes/1"]


def test_conditions_read_every_code_sent() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Two codes").rule(
        "bonus", when=[lambda ctx: len(ctx.coupon_codes) >= 2], then=[e.set_discount("bonus", 2)]
    )
    items = cart(("x", "10", 1))
    two = sb.update("s", {"couponCodes": ["AAAA", "BBBB"], "cartItems": items})
    assert two.discounts == {"bonus": D(2)}
    assert sb.update("t", {"couponCodes": ["AAAA"], "cartItems": items}).discounts == {}


# ---------------------------------------------------------------------------
# Additional costs


def test_totals_add_session_costs_and_item_costs_times_quantity() -> None:
    session = NewCustomerSessionV2(
        cart_items=[
            CartItem(
                sku="a",
                quantity=2,
                price=D(10),
                additional_costs={"wrap": AdditionalCost(price=D("1.50"))},
            ),
            CartItem(sku="b", quantity=1, price=D(5)),
        ],
        additional_costs={"shipping": AdditionalCost(price=D("4.99"))},
    )
    assert session.cart_total == D(25)
    assert session.additional_cost_total == D("7.99")  # 4.99 + 2 x 1.50
    assert session.total == D("32.99")
    state = Sandbox(now=NOW).update("s", session)
    wire = state.to_wire()["customerSession"]
    assert (wire["cartItemTotal"], wire["additionalCostTotal"], wire["total"]) == (25, 7.99, 32.99)


def test_a_cost_discount_never_takes_the_cost_below_zero() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Ship").rule(
        "10 off shipping",
        then=[e.set_discount_per_additional_cost("ship 10", cost="shipping", amount=10)],
    )
    state = sb.update(
        "s", {"cartItems": cart(("x", "50", 1)), "additionalCosts": {"shipping": {"price": 4}}}
    )
    (effect,) = state.effects
    assert effect.effect_type.value == "setDiscountPerAdditionalCost"
    assert effect.props["value"] == D(4)
    assert effect.props["desiredValue"] == D(10)
    assert effect.props["additionalCost"] == "shipping"
    assert isinstance(effect.props["additionalCostId"], int)


def test_a_session_without_the_cost_fails_the_rule_at_that_effect() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Ship").rule(
        "free shipping",
        then=[e.set_discount_per_additional_cost("free", cost="shipping", percent=100)],
    )
    state = sb.update("s", {"cartItems": cart(("x", "50", 1))})
    assert state.effects == ()
    (failure,) = state.rule_failure_reasons
    assert failure.effect_index == 0
    assert "no additional cost 'shipping'" in failure.details


def test_item_cost_discounts_are_per_unit_and_fail_when_an_item_lacks_the_cost() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Wrap").rule(
        "wrap half off",
        then=[e.set_discount_per_additional_cost_per_item("wrap", cost="wrap", percent=50)],
    )
    wrapped = [{"sku": "a", "quantity": 2, "price": 10, "additionalCosts": {"wrap": {"price": 3}}}]
    state = sb.update("s", {"cartItems": wrapped})
    assert [
        (x.props["position"], x.props["subPosition"], x.props["value"]) for x in state.effects
    ] == [
        (0, 0, D("1.50")),
        (0, 1, D("1.50")),
    ]
    lacking = sb.update("t", {"cartItems": [*wrapped, {"sku": "b", "quantity": 1, "price": 4}]})
    assert lacking.effects == ()
    assert (
        "cart item(s) 1 have no additional cost 'wrap'" in lacking.rule_failure_reasons[0].details
    )


# ---------------------------------------------------------------------------
# Flattening


def test_quantity_three_gives_three_unit_effects_and_the_unflattened_total() -> None:
    rule = e.set_discount_per_item("tenth", percent=10)
    flat, lines = Sandbox(now=NOW), Sandbox(now=NOW, flatten_cart_items=False)
    for sb in (flat, lines):
        sb.campaign("C").rule("10% per item", then=[rule])
    payload = {"cartItems": cart(("a", "12.00", 3))}
    units = flat.update("s", payload)
    whole = lines.update("s", payload)
    assert [
        (x.props["position"], x.props["subPosition"], x.props["value"]) for x in units.effects
    ] == [
        (0, 0, D("1.20")),
        (0, 1, D("1.20")),
        (0, 2, D("1.20")),
    ]
    (line,) = whole.effects
    assert "subPosition" not in line.props
    assert units.total_discount == whole.total_discount == D("3.60")


def test_flattened_caps_apply_per_unit() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("C").rule("7 off each", then=[e.set_discount_per_item("seven", amount=7)])
    state = sb.update("s", {"cartItems": cart(("a", "5.00", 2))})
    assert [(x.props["value"], x.props["desiredValue"]) for x in state.effects] == [
        (D(5), D(7)),
        (D(5), D(7)),
    ]


def test_a_partial_return_of_one_unit_releases_one_units_discount() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("C", limits=[Limit("setDiscount", 100)])
    campaign.rule("2 off each", then=[e.set_discount_per_item("two", amount=2)])
    sb.update("s", {"cartItems": cart(("a", "10", 3)), "state": "closed"})
    assert sb.limit_counters()[0].counter == D(6)
    returned = sb.return_items("s", [{"position": 0, "quantity": 1}])
    (rollback,) = returned.rollbacks
    assert rollback.props == {
        "name": "two#0",
        "value": D(2),
        "cartItemPosition": 0,
        "cartItemSubPosition": 0,
        "scope": "price",
    }
    assert sb.limit_counters()[0].counter == D(4)


def test_a_session_cost_discount_comes_back_only_when_everything_is_returned() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Ship").rule(
        "free shipping",
        then=[e.set_discount_per_additional_cost("free", cost="shipping", percent=100)],
    )
    sb.update(
        "s",
        {
            "cartItems": cart(("a", "10", 2)),
            "additionalCosts": {"shipping": {"price": 5}},
            "state": "closed",
        },
    )
    assert sb.return_items("s", [{"position": 0, "quantity": 1}]).rollbacks == []
    (rollback,) = sb.return_items("s", [{"position": 0, "quantity": 1}]).rollbacks
    assert (rollback.props["value"], rollback.props["additionalCost"]) == (D(5), "shipping")


# ---------------------------------------------------------------------------
# CustomerSessionV2's computed fields


def test_update_count_starts_at_one_and_counts_every_update() -> None:
    sb = shop()
    counts = [
        sb.update("s", {"cartItems": cart(("x", "10", 1))}).to_wire()["customerSession"][
            "updateCount"
        ],
        sb.update("s", {"cartItems": cart(("x", "11", 1))}).to_wire()["customerSession"][
            "updateCount"
        ],
        sb.update("s", {"state": "closed"}).to_wire()["customerSession"]["updateCount"],
        sb.update("s", {"state": "cancelled"}).to_wire()["customerSession"]["updateCount"],
    ]
    assert counts == [1, 2, 3, 4]


def test_ids_created_and_updated_come_from_the_sandbox() -> None:
    sb = shop(application_id=7)
    first = sb.update("s1", {"cartItems": []}).to_wire()["customerSession"]
    sb.advance(hours=1)
    second = sb.update("s2", {"cartItems": []}).to_wire()["customerSession"]
    again = sb.update("s1", {"cartItems": []}).to_wire()["customerSession"]
    assert (first["id"], second["id"], again["id"]) == (1, 2, 1)
    assert first["applicationId"] == 7
    assert (again["created"], again["updated"]) == ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")


def test_first_session_is_true_only_for_a_profiles_first_session_and_for_anonymous_ones() -> None:
    sb = shop()
    first = sb.update("s1", {"profileId": "p1"}).to_wire()["customerSession"]["firstSession"]
    dry = sb.update("s2", {"profileId": "p1"}, dry=True).to_wire()["customerSession"][
        "firstSession"
    ]
    again = sb.update("s1", {"profileId": "p1"}).to_wire()["customerSession"]["firstSession"]
    anonymous = [
        sb.update(f"a{i}", {}).to_wire()["customerSession"]["firstSession"] for i in range(2)
    ]
    assert (first, dry, again, anonymous) == (True, False, True, [True, True])


def test_a_v1_session_answers_in_the_v2_shape() -> None:
    wire = shop().update("s", {"coupon": "XMAS-2", "referral": "REF-1", "total": 80}).to_wire()
    session = wire["customerSession"]
    assert session["couponCodes"] == ["XMAS-2"]
    assert session["referralCode"] == "REF-1"
    assert session["total"] == 80
    assert "coupon" not in session
    assert "referral" not in session


def test_response_content_selects_the_optional_parts() -> None:
    state = shop().update(
        "s",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(coupon_codes=["XMAS-2"]),
            response_content=["coupons", "triggeredCampaigns"],
        ),
    )
    asked = state.to_wire(response_content=state.response_content)
    assert set(asked) == {
        "effects",
        "createdCoupons",
        "createdReferrals",
        "coupons",
        "triggeredCampaigns",
    }
    assert [c["value"] for c in asked["coupons"]] == ["XMAS-2"]
    assert [c["name"] for c in asked["triggeredCampaigns"]] == ["Xmas"]
    everything = state.to_wire()
    assert {"customerSession", "ruleFailureReasons", "coupons"} <= set(everything)
