"""The rule engine, through the public Sandbox API.

Every expected value below is computed by hand from Talon.One's documented
meaning (reference/talon_semantics.md sections 3, 4, 5, 7) and DESIGN.md
sections 3-4, never copied from the engine's output.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from sandbox import (
    CartItem,
    DefinitionError,
    Limit,
    NewCustomerSession,
    RuleError,
    Sandbox,
)
from sandbox import conditions as c
from sandbox import effects as e

NOW = "2026-12-01T10:00:00Z"
D = Decimal


def make_sandbox(**kwargs: Any) -> Sandbox:
    return Sandbox(now=NOW, **kwargs)


def wire_effects(state: Any) -> list[dict[str, Any]]:
    effects: list[dict[str, Any]] = state.to_wire()["effects"]
    return effects


def of_type(state: Any, effect_type: str) -> list[dict[str, Any]]:
    return [x for x in wire_effects(state) if x["effectType"] == effect_type]


def only_rejection(state: Any, effect_type: str = "rejectCoupon") -> dict[str, Any]:
    code_effects = [
        x
        for x in wire_effects(state)
        if x["effectType"] in ("acceptCoupon", "rejectCoupon", "acceptReferral", "rejectReferral")
        and x["effectType"].endswith(effect_type[6:])
    ]
    assert len(code_effects) == 1, code_effects
    (found,) = code_effects
    assert found["effectType"] == effect_type, found
    return found


def discount_values(state: Any) -> dict[str, float]:
    return {
        x["props"]["name"]: x["props"]["value"]
        for x in wire_effects(state)
        if x["effectType"] in ("setDiscount", "setDiscountPerItem")
    }


def item(sku: str, price: str, quantity: int = 1, **kw: Any) -> CartItem:
    return CartItem(sku=sku, price=D(price), quantity=quantity, **kw)


# ---------------------------------------------------------------------------
# DESIGN.md section 3 contract


def test_design_contract_snippet_runs_as_written() -> None:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
    xmas.referral("REF-2740", advocate="adv-1")
    xmas.rule(
        "10% off carts over 50",
        when=[c.coupon_valid, lambda s: s.total >= 50],
        then=[e.set_discount("10% off", percent=10)],
    )

    state = sb.update(
        "session-1", NewCustomerSession(profile_id="p1", coupon="XMAS-2021", total=D("80"))
    )
    kinds = [x.effect_type.value for x in state.effects]
    assert kinds == ["acceptCoupon", "setDiscount"]
    assert state.effects[0].value == "XMAS-2021"
    # 10% of 80 is 8, at two places.
    assert state.effects[1].props == {"name": "10% off", "value": D("8.00")}
    wire = state.to_wire()
    json.dumps(wire)
    assert wire["effects"][1]["props"]["value"] == 8
    assert "10% off carts over 50" in state.explain()

    sb.update(
        "session-1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80, "state": "closed"}
    )
    assert sb.get_coupon("XMAS-2021").usage_counter == 1


# ---------------------------------------------------------------------------
# Rejection reasons (reference sections 4.2 and 5.2), one scenario each


def coupon_sandbox(**campaign_kw: Any) -> tuple[Sandbox, Any]:
    sb = make_sandbox()
    camp = sb.campaign("Promo", **campaign_kw)
    camp.rule("coupon", when=[c.coupon_valid], then=[e.set_discount("promo", amount=5)])
    return sb, camp


def test_unknown_coupon_is_rejected_not_found_with_campaign_minus_one() -> None:
    sb, camp = coupon_sandbox()
    camp.coupon("GOOD1")
    state = sb.update("s", NewCustomerSession(coupon="NOPE1", total=D(10)))
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "CouponNotFound"
    assert found["props"]["value"] == "NOPE1"
    assert found["campaignId"] == -1


def test_coupon_of_disabled_campaign_is_part_of_not_running_campaign() -> None:
    sb, camp = coupon_sandbox(state="disabled")
    camp.coupon("DIS1")
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="DIS1", total=D(10))))
    assert found["props"]["rejectionReason"] == "CouponPartOfNotRunningCampaign"
    assert found["campaignId"] == camp.id


@pytest.mark.parametrize(
    "window",
    [
        {"start": "2026-12-02T00:00:00Z"},
        {"end": "2026-11-30T23:59:59Z"},
    ],
    ids=["not-started", "ended"],
)
def test_coupon_of_campaign_outside_its_window_is_part_of_not_running_campaign(
    window: dict[str, str],
) -> None:
    sb, camp = coupon_sandbox(**window)
    camp.coupon("WIN1")
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="WIN1", total=D(10))))
    assert found["props"]["rejectionReason"] == "CouponPartOfNotRunningCampaign"
    assert found["campaignId"] == camp.id


def test_coupon_of_archived_campaign_is_not_in_evaluation_set() -> None:
    sb, camp = coupon_sandbox(state="archived")
    camp.coupon("ARCH1")
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="ARCH1", total=D(10))))
    assert found["props"]["rejectionReason"] == "CouponPartOfNotTriggeredCampaign"
    assert found["props"]["campaignExclusionReason"] == "CampaignNotInEvaluationSet"
    assert found["campaignId"] == camp.id


def test_coupon_before_its_start_date_is_rejected() -> None:
    sb, camp = coupon_sandbox()
    camp.coupon("SOON1", start_date="2026-12-05T00:00:00Z")
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="SOON1", total=D(10))))
    assert found["props"]["rejectionReason"] == "CouponStartDateInFuture"
    assert found["campaignId"] == camp.id


def test_coupon_after_its_expiry_date_is_rejected() -> None:
    sb, camp = coupon_sandbox()
    camp.coupon("OLD1", expiry_date="2026-11-30T00:00:00Z")
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="OLD1", total=D(10))))
    assert found["props"]["rejectionReason"] == "CouponExpired"


def test_expiry_is_checked_before_recipient() -> None:
    # DESIGN.md section 4: expired comes before recipient does not match.
    sb, camp = coupon_sandbox()
    camp.coupon("OLD2", expiry_date="2026-11-30T00:00:00Z", recipient="p9")
    found = only_rejection(
        sb.update("s", NewCustomerSession(profile_id="p1", coupon="OLD2", total=D(10)))
    )
    assert found["props"]["rejectionReason"] == "CouponExpired"


@pytest.mark.parametrize("profile_id", ["p2", None], ids=["other-profile", "no-profile"])
def test_coupon_for_another_recipient_is_rejected(profile_id: str | None) -> None:
    sb, camp = coupon_sandbox()
    camp.coupon("MINE1", recipient="p1")
    found = only_rejection(
        sb.update("s", NewCustomerSession(profile_id=profile_id, coupon="MINE1", total=D(10)))
    )
    assert found["props"]["rejectionReason"] == "CouponRecipientDoesNotMatch"
    assert found["campaignId"] == camp.id


def test_coupon_for_its_recipient_is_accepted() -> None:
    sb, camp = coupon_sandbox()
    camp.coupon("MINE2", recipient="p1")
    state = sb.update("s", NewCustomerSession(profile_id="p1", coupon="MINE2", total=D(10)))
    assert [x["props"]["value"] for x in of_type(state, "acceptCoupon")] == ["MINE2"]
    assert of_type(state, "rejectCoupon") == []


def test_coupon_rejected_by_condition_names_the_failing_condition() -> None:
    sb = make_sandbox()
    camp = sb.campaign("Big carts")
    camp.coupon("BIG50")
    camp.rule(
        "10 off over 100",
        when=[c.coupon_valid, c.named("cart is big", lambda ctx: ctx.total >= 100)],
        then=[e.set_discount("big", amount=10)],
    )
    state = sb.update("s", NewCustomerSession(coupon="BIG50", total=D(40)))
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "CouponRejectedByCondition"
    assert found["props"]["conditionIndex"] == 1
    assert "cart is big" in found["props"]["details"]
    assert found["campaignId"] == camp.id
    assert discount_values(state) == {}


def test_coupon_in_campaign_without_coupon_valid_rule_is_rejected_by_condition() -> None:
    # Reference 4.2: "all conditions passed but the Coupon code is valid condition is not present".
    sb = make_sandbox()
    camp = sb.campaign("Everyone")
    camp.coupon("FREE1")
    camp.rule("always", when=[], then=[e.set_discount("all", amount=1)])
    state = sb.update("s", NewCustomerSession(coupon="FREE1", total=D(10)))
    assert only_rejection(state)["props"]["rejectionReason"] == "CouponRejectedByCondition"
    assert discount_values(state) == {"all": 1}


def test_coupon_of_campaign_that_lost_its_group_is_part_of_not_triggered_campaign() -> None:
    sb = make_sandbox()
    first = sb.group("first", mode="listOrder")
    winner = sb.campaign("Winner", group=first)
    winner.rule("everyone", when=[], then=[e.set_discount("w", amount=1)])
    loser = sb.campaign("Loser", group=first)
    loser.coupon("LOSE1")
    loser.rule("coupon", when=[c.coupon_valid], then=[e.set_discount("l", amount=5)])
    state = sb.update("s", NewCustomerSession(coupon="LOSE1", total=D(10)))
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "CouponPartOfNotTriggeredCampaign"
    assert found["props"]["campaignExclusionReason"] == "CampaignIsNotFirst"
    assert found["campaignId"] == loser.id
    assert discount_values(state) == {"w": 1}


def referral_sandbox(**campaign_kw: Any) -> tuple[Sandbox, Any]:
    sb = make_sandbox()
    camp = sb.campaign("Refer", **campaign_kw)
    camp.rule("friend", when=[c.referral_valid], then=[e.set_discount("friend", amount=5)])
    return sb, camp


def test_unknown_referral_is_rejected_not_found() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv")
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-X", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralNotFound"
    assert found["campaignId"] == -1


def test_referral_used_by_its_advocate_is_rejected() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv")
    state = sb.update("s", NewCustomerSession(profile_id="adv", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralRecipientIdSameAsAdvocate"
    assert found["campaignId"] == camp.id


def test_referral_for_another_friend_is_rejected() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv", friend="f1")
    state = sb.update("s", NewCustomerSession(profile_id="f2", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralRecipientDoesNotMatch"


def test_referral_same_as_advocate_comes_before_recipient_mismatch() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv", friend="f1")
    state = sb.update("s", NewCustomerSession(profile_id="adv", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralRecipientIdSameAsAdvocate"


def test_referral_of_disabled_campaign_is_part_of_not_running_campaign() -> None:
    sb, camp = referral_sandbox(state="disabled")
    camp.referral("REF-1", advocate="adv")
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralPartOfNotRunningCampaign"
    assert found["campaignId"] == camp.id


def test_referral_before_its_start_date_is_rejected() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv", start_date="2027-01-01T00:00:00Z")
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralStartDateInFuture"


def test_referral_after_its_expiry_date_is_rejected() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv", expiry_date="2026-01-01T00:00:00Z")
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralExpired"


def test_referral_rejected_by_condition_names_the_failing_condition() -> None:
    sb = make_sandbox()
    camp = sb.campaign("Refer")
    camp.referral("REF-1", advocate="adv")
    camp.rule(
        "friend over 20",
        when=[c.referral_valid, c.total_at_least(20)],
        then=[e.set_discount("friend", amount=5)],
    )
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-1", total=D(10)))
    found = only_rejection(state, "rejectReferral")
    assert found["props"]["rejectionReason"] == "ReferralRejectedByCondition"
    assert found["props"]["conditionIndex"] == 1
    assert "cart total >= 20" in found["props"]["details"]


def test_valid_referral_is_accepted_with_its_discount() -> None:
    sb, camp = referral_sandbox()
    camp.referral("REF-1", advocate="adv")
    state = sb.update("s", NewCustomerSession(profile_id="p1", referral="REF-1", total=D(10)))
    assert [x["props"]["value"] for x in of_type(state, "acceptReferral")] == ["REF-1"]
    assert discount_values(state) == {"friend": 5}


# ---------------------------------------------------------------------------
# Discount arithmetic


def one_rule_sandbox(*effects: Any, **sandbox_kw: Any) -> Sandbox:
    sb = make_sandbox(**sandbox_kw)
    sb.campaign("C").rule("r", when=[], then=list(effects))
    return sb


def test_percent_of_total() -> None:
    sb = one_rule_sandbox(e.set_discount("pct", percent=15))
    # 15% of 59.90 = 8.985 -> 8.98 (half-even at two places)
    state = sb.update("s", NewCustomerSession(total=D("59.90")))
    assert discount_values(state) == {"pct": 8.98}
    assert state.effects[0].props["value"] == D("8.98")


def test_fixed_amount() -> None:
    sb = one_rule_sandbox(e.set_discount("five", amount="5.50"))
    state = sb.update("s", NewCustomerSession(total=D("20")))
    assert state.effects[0].props == {"name": "five", "value": D("5.50")}


def test_percent_per_item_is_of_price_times_quantity_in_an_unflattened_cart() -> None:
    sb = one_rule_sandbox(e.set_discount_per_item("items", percent=10), flatten_cart_items=False)
    cart = (item("a", "12.00", 3), item("b", "5.00", 1))  # lines 36.00 and 5.00
    state = sb.update("s", NewCustomerSession(cart_items=cart))
    per_item = of_type(state, "setDiscountPerItem")
    assert [
        (x["props"]["name"], x["props"]["value"], x["props"]["position"]) for x in per_item
    ] == [
        ("items#0", 3.6, 0),
        ("items#1", 0.5, 1),
    ]


def test_fixed_per_item_is_per_unit_and_capped_at_the_line_in_an_unflattened_cart() -> None:
    sb = one_rule_sandbox(e.set_discount_per_item("unit", amount=4), flatten_cart_items=False)
    # line 0: 3 units at 10 -> 3 x 4 = 12 off a 30 line; line 1: 2 units at 1.50 -> 8 asked, capped at 3.
    cart = (item("a", "10.00", 3), item("b", "1.50", 2))
    state = sb.update("s", NewCustomerSession(cart_items=cart))
    per_item = {x["props"]["name"]: x["props"] for x in of_type(state, "setDiscountPerItem")}
    assert per_item["unit#0"]["value"] == 12
    assert "desiredValue" not in per_item["unit#0"]
    assert per_item["unit#1"]["value"] == 3
    assert per_item["unit#1"]["desiredValue"] == 8
    assert state.total_discount == D("15.00")


def test_per_item_discount_only_for_matching_items() -> None:
    sb = one_rule_sandbox(
        e.set_discount_per_item("shoes", percent=50, where=lambda it: it.category == "shoes")
    )
    cart = (item("a", "10", category="food"), item("b", "30", category="shoes"))
    state = sb.update("s", NewCustomerSession(cart_items=cart))
    assert discount_values(state) == {"shoes#1": 15}


def test_discount_capped_at_zero_reports_desired_value() -> None:
    sb = one_rule_sandbox(e.set_discount("huge", amount=100))
    state = sb.update("s", NewCustomerSession(total=D("80")))
    (disc,) = of_type(state, "setDiscount")
    assert disc["props"]["value"] == 80
    assert disc["props"]["desiredValue"] == 100
    assert state.discounted_total == 0


def test_second_discount_gets_only_what_is_left() -> None:
    sb = one_rule_sandbox(e.set_discount("a", amount=30), e.set_discount("b", amount=30))
    state = sb.update("s", NewCustomerSession(total=D("50")))
    props = {x["props"]["name"]: x["props"] for x in of_type(state, "setDiscount")}
    assert props["a"] == {"name": "a", "value": 30}
    assert props["b"] == {"name": "b", "value": 20, "desiredValue": 30}


@pytest.mark.parametrize(
    ("percent", "expected"),
    [("12.5", "0.12"), ("13.5", "0.14"), ("12.51", "0.13"), ("0.4", "0.00")],
)
def test_rounding_is_half_even_at_two_places(percent: str, expected: str) -> None:
    # percent of a 1.00 total: 0.125 -> 0.12, 0.135 -> 0.14, 0.1251 -> 0.13, 0.004 -> 0.00
    sb = one_rule_sandbox(e.set_discount("r", percent=percent))
    state = sb.update("s", NewCustomerSession(total=D("1.00")))
    assert state.effects[0].props["value"] == D(expected)


def test_rounding_ties_on_fixed_amounts() -> None:
    sb = one_rule_sandbox(e.set_discount("r", amount="0.125"), e.set_discount("q", amount="0.135"))
    state = sb.update("s", NewCustomerSession(total=D("10")))
    assert {k: D(str(v)) for k, v in discount_values(state).items()} == {
        "r": D("0.12"),
        "q": D("0.14"),
    }


def test_a_capped_value_is_rounded_down_to_the_currency_precision() -> None:
    # line 3 x 0.333 = 0.999; 5 per unit is capped at the line: 0.99 (rounding up would exceed it)
    sb = one_rule_sandbox(e.set_discount_per_item("unit", amount=5), flatten_cart_items=False)
    state = sb.update("s", NewCustomerSession(cart_items=(item("a", "0.333", 3),)))
    (disc,) = state.effects
    assert disc.props["value"] == D("0.99")
    assert str(disc.props["value"]) == "0.99"
    assert disc.props["desiredValue"] == D("15.00")


def test_discount_budget_exhausted_fails_the_rule_and_rejects_its_coupon() -> None:
    sb = make_sandbox()
    camp = sb.campaign("Budget", limits=[Limit("setDiscount", 10)])
    camp.coupon("BUDG1")
    camp.rule(
        "15 off",
        when=[c.coupon_valid],
        then=[e.show_notification("hi", "there"), e.set_discount("d", amount=15)],
    )
    state = sb.update("s", NewCustomerSession(coupon="BUDG1", total=D(50)))
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "EffectCouldNotBeApplied"
    assert found["props"]["effectIndex"] == 1
    # the whole rule failed: no notification either
    assert [x["effectType"] for x in wire_effects(state)] == ["rejectCoupon"]


def test_partial_discounts_give_what_is_left_of_the_budget() -> None:
    sb = make_sandbox(partial_discounts=True)
    camp = sb.campaign("Budget", limits=[Limit("setDiscount", 10)])
    camp.rule("15 off", when=[], then=[e.set_discount("d", amount=15)])
    (disc,) = sb.update("s", NewCustomerSession(total=D(50))).effects
    assert disc.props == {"name": "d", "value": 10, "desiredValue": 15}


def test_same_name_is_overwritten_by_the_later_rule() -> None:
    sb = make_sandbox()
    camp = sb.campaign("C")
    camp.rule("first", when=[], then=[e.set_discount("x", amount=10)])
    camp.rule("second", when=[], then=[e.set_discount("x", amount=3)])
    state = sb.update("s", NewCustomerSession(total=D("50")))
    discounts = of_type(state, "setDiscount")
    assert len(discounts) == 1
    assert discounts[0]["props"]["value"] == 3
    assert discounts[0]["ruleName"] == "second"
    assert state.total_discount == 3


def test_overwritten_discount_gives_its_room_back() -> None:
    sb = make_sandbox()
    camp = sb.campaign("C")
    camp.rule("first", when=[], then=[e.set_discount("x", amount=20)])
    camp.rule("second", when=[], then=[e.set_discount("x", amount=20)])
    # total 30: the second "x" replaces the first, so it is not capped at 10.
    state = sb.update("s", NewCustomerSession(total=D("30")))
    (disc,) = of_type(state, "setDiscount")
    assert disc["props"] == {"name": "x", "value": 20}


def test_same_name_twice_in_one_rule_keeps_only_the_later() -> None:
    sb = one_rule_sandbox(e.set_discount("x", amount=10), e.set_discount("x", amount=4))
    state = sb.update("s", NewCustomerSession(total=D("50")))
    discounts = of_type(state, "setDiscount")
    assert [d["props"]["value"] for d in discounts] == [4]


def test_two_stacked_campaigns_both_apply_on_the_undiscounted_total() -> None:
    sb = make_sandbox()
    sb.campaign("Ten").rule("r", when=[], then=[e.set_discount("ten", percent=10)])
    sb.campaign("Five").rule("r", when=[], then=[e.set_discount("five", amount=5)])
    state = sb.update("s", NewCustomerSession(total=D("120")))
    # no cascading: 10% of 120 = 12, then 5; total discount 17
    assert discount_values(state) == {"ten": 12, "five": 5}
    assert state.discounted_total == D("103")
    assert [x["campaignId"] for x in of_type(state, "setDiscount")] == [1, 2]
    assert {x["evaluationGroupMode"] for x in of_type(state, "setDiscount")} == {"stackable"}


def test_precision_zero_rounds_to_whole_units_half_even() -> None:
    sb = one_rule_sandbox(e.set_discount("r", percent=10), precision=0)
    # 10% of 85 = 8.5 -> 8 (half-even); of 95 = 9.5 -> 10
    assert sb.update("a", NewCustomerSession(total=D("85"))).effects[0].props["value"] == 8
    assert sb.update("b", NewCustomerSession(total=D("95"))).effects[0].props["value"] == 10


# ---------------------------------------------------------------------------
# Evaluation groups


def grouped(mode: str, first: str, second: str) -> tuple[Sandbox, Any, Any]:
    sb = make_sandbox()
    group = sb.group("g", mode=mode)
    a = sb.campaign("A", group=group)
    a.coupon("CODE-A")
    a.rule("a", when=[c.coupon_valid], then=[e.set_discount("a", amount=first)])
    b = sb.campaign("B", group=group)
    b.rule("b", when=[], then=[e.set_discount("b", amount=second)])
    return sb, a, b


def test_list_order_applies_only_the_first_triggered_campaign() -> None:
    sb, a, _b = grouped("listOrder", "2", "9")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"a": 2}
    assert of_type(state, "acceptCoupon")[0]["campaignId"] == a.id
    assert all(x["evaluationGroupMode"] == "listOrder" for x in wire_effects(state))


def test_list_order_skips_a_campaign_that_did_not_trigger() -> None:
    sb, _a, _b = grouped("listOrder", "2", "9")
    # no coupon: A does not trigger, B is the first triggered campaign
    state = sb.update("s", NewCustomerSession(total=D(50)))
    assert discount_values(state) == {"b": 9}


def test_highest_discount_keeps_the_larger_and_rejects_the_losers_coupon() -> None:
    sb, a, _b = grouped("highestDiscount", "2", "9")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"b": 9}
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "CouponPartOfNotTriggeredCampaign"
    assert found["props"]["campaignExclusionReason"] == "CampaignGaveLowerDiscount"
    assert found["campaignId"] == a.id


def test_highest_discount_with_the_coupon_campaign_winning() -> None:
    sb, _a, _b = grouped("highestDiscount", "9", "2")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"a": 9}
    assert [x["props"]["value"] for x in of_type(state, "acceptCoupon")] == ["CODE-A"]


def test_lowest_discount_keeps_the_smaller() -> None:
    sb, _a, _b = grouped("lowestDiscount", "2", "9")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"a": 2}
    sb, _a, _b = grouped("lowestDiscount", "9", "2")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"b": 2}
    found = only_rejection(state)
    assert found["props"]["campaignExclusionReason"] == "CampaignGaveLowerDiscount"


@pytest.mark.parametrize("mode", ["highestDiscount", "lowestDiscount"])
def test_discount_ties_go_to_the_earlier_campaign(mode: str) -> None:
    sb, _a, _b = grouped(mode, "5", "5")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"a": 5}


def test_highest_discount_compares_desired_values_before_caps() -> None:
    # A wants 100 (capped to the 50 total), B wants 60 (also capped): A's desire is larger.
    sb, _a, _b = grouped("highestDiscount", "100", "60")
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    (disc,) = of_type(state, "setDiscount")
    assert disc["props"] == {"name": "a", "value": 50, "desiredValue": 100}


def test_list_order_passes_over_a_campaign_whose_rules_failed_on_budget() -> None:
    # The first campaign did not trigger (its only rule failed), so the next one is first.
    sb = make_sandbox()
    group = sb.group("g", mode="listOrder")
    sb.campaign("A", group=group, limits=[Limit("setDiscount", 0)]).rule(
        "a", when=[], then=[e.set_discount("a", amount=2)]
    )
    sb.campaign("B", group=group).rule("b", when=[], then=[e.set_discount("b", amount=3)])
    assert discount_values(sb.update("s", NewCustomerSession(total=D(10)))) == {"b": 3}


@pytest.mark.parametrize(
    ("mode", "exclusion"),
    [("listOrder", "CampaignIsNotFirst"), ("highestDiscount", "CampaignGaveLowerDiscount")],
)
def test_a_budget_failure_outranks_group_arbitration(mode: str, exclusion: str) -> None:
    # DESIGN.md section 4: when several reasons apply, budgets (EffectCouldNotBeApplied)
    # come before group arbitration (PartOfNotTriggeredCampaign). B loses its group to A
    # (A is first; A's 20 beats B's 5), and B's only coupon rule would also fail on B's
    # exhausted money budget: the budget is the reason, with B's effect index 0.
    sb = make_sandbox()
    group = sb.group("g", mode=mode)
    sb.campaign("A", group=group).rule("a", when=[], then=[e.set_discount("a", amount=20)])
    b = sb.campaign("B", group=group, limits=[Limit("setDiscount", 0)])
    b.coupon("CODE-B")
    b.rule("b", when=[c.coupon_valid], then=[e.set_discount("b", amount=5)])
    state = sb.update("s", NewCustomerSession(coupon="CODE-B", total=D(50)))
    assert discount_values(state) == {"a": 20}
    found = only_rejection(state)
    assert found["props"]["rejectionReason"] == "EffectCouldNotBeApplied"
    assert found["props"]["effectIndex"] == 0
    assert "campaignExclusionReason" not in found["props"]
    # A second coupon rule with nothing to charge would have applied but for the group,
    # so arbitration is then the one reason that keeps the coupon out.
    b.rule("hello", when=[c.coupon_valid], then=[e.show_notification("hi", "there")])
    found = only_rejection(sb.update("s", NewCustomerSession(coupon="CODE-B", total=D(50))))
    assert found["props"]["rejectionReason"] == "CouponPartOfNotTriggeredCampaign"
    assert found["props"]["campaignExclusionReason"] == exclusion


def test_stackable_campaigns_outside_the_group_still_apply() -> None:
    sb, _a, _b = grouped("listOrder", "2", "9")
    sb.campaign("Free").rule("r", when=[], then=[e.set_discount("free", amount=1)])
    state = sb.update("s", NewCustomerSession(coupon="CODE-A", total=D(50)))
    assert discount_values(state) == {"a": 2, "free": 1}


# ---------------------------------------------------------------------------
# RuleError


def test_a_raising_condition_is_a_rule_error_and_changes_nothing() -> None:
    sb = make_sandbox()
    camp = sb.campaign("Fragile")
    camp.coupon("FRAG1")
    camp.rule(
        "divides",
        when=[c.coupon_valid, lambda ctx: ctx.attributes["missing"] > 1],
        then=[e.set_discount("d", amount=1)],
    )
    sb.update("before", NewCustomerSession(profile_id="p1", total=D(5)))
    before = sb.snapshot()
    with pytest.raises(RuleError) as info:
        sb.update("s", NewCustomerSession(profile_id="p1", coupon="FRAG1", total=D(10)))
    err = info.value
    assert "Fragile" in str(err)
    assert "divides" in str(err)
    assert err.campaign == "Fragile"
    assert err.rule == "divides"
    assert isinstance(err.__cause__, KeyError)
    assert sb.snapshot() == before
    with pytest.raises(RuleError):
        sb.update(
            "s",
            NewCustomerSession(profile_id="p1", coupon="FRAG1", total=D(10), state="closed"),
        )
    assert sb.snapshot() == before
    assert sb.get_coupon("FRAG1").usage_counter == 0


def test_a_raising_amount_callable_is_a_rule_error() -> None:
    sb = one_rule_sandbox(e.set_discount("d", amount=lambda ctx: 1 / 0))
    with pytest.raises(RuleError) as info:
        sb.update("s", NewCustomerSession(total=D(10)))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# ---------------------------------------------------------------------------
# Definition errors


def test_duplicate_code_is_refused_case_insensitively() -> None:
    sb = make_sandbox()
    sb.campaign("A").coupon("SAME-1")
    with pytest.raises(DefinitionError, match="already exists"):
        sb.campaign("B").coupon("same-1")
    with pytest.raises(DefinitionError, match="already exists"):
        sb.get_campaign("A").referral("Same-1", advocate="adv")


def test_the_same_code_added_from_two_threads_is_refused_once() -> None:
    # Codes are unique per sandbox (DESIGN.md section 3): when two campaigns add the
    # same code at the same time, exactly one gets it and the other a DefinitionError.
    sb = make_sandbox()
    campaigns = [sb.campaign("A"), sb.campaign("B")]
    both_checked = threading.Barrier(2)
    check = sb._check_new_code

    def slow_check(*args: Any) -> str:
        stored = check(*args)
        both_checked.wait(timeout=5)  # both threads are past the duplicate check
        return stored

    sb._check_new_code = slow_check  # type: ignore[method-assign]
    errors: list[Exception] = []

    def add(campaign: Any) -> None:
        try:
            campaign.coupon("SAME-1")
        except DefinitionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(camp,)) for camp in campaigns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(errors) == 1
    assert sum("SAME-1" in camp.coupons for camp in campaigns) == 1
    assert sb.get_coupon("SAME-1").campaign_id in {camp.id for camp in campaigns if camp.coupons}


def test_the_same_rule_title_added_from_two_threads_is_refused_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A campaign's rule titles are unique; two threads adding the same title at once
    # must not both get in.
    import sandbox.rules

    campaign = make_sandbox().campaign("A")
    both_checked = threading.Barrier(2)
    as_condition = sandbox.rules.as_condition

    def slow_as_condition(*args: Any, **kwargs: Any) -> Any:
        both_checked.wait(timeout=5)  # both threads are past the first title check
        return as_condition(*args, **kwargs)

    monkeypatch.setattr(sandbox.rules, "as_condition", slow_as_condition)
    errors: list[Exception] = []

    def add() -> None:
        try:
            campaign.rule("same", when=[c.coupon_valid])
        except DefinitionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(errors) == 1
    assert [rule.title for rule in campaign.rules] == ["same"]


def test_an_unknown_rounding_mode_is_refused_when_the_sandbox_is_made() -> None:
    # Definitions are checked when they are made, not at the first update.
    with pytest.raises(DefinitionError, match="ROUND_HALF_EVEN"):
        Sandbox(now=NOW, rounding="half-up")


@pytest.mark.parametrize("code", ["ABC", "", "A"])
def test_code_shorter_than_four_characters_is_refused(code: str) -> None:
    sb = make_sandbox()
    with pytest.raises(DefinitionError, match="4"):
        sb.campaign("A").coupon(code)


@pytest.mark.parametrize("title", ["", "   ", None])
def test_rule_without_title_is_refused(title: Any) -> None:
    with pytest.raises(DefinitionError, match="title"):
        make_sandbox().campaign("A").rule(title, when=[], then=[])


def test_non_callable_condition_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"when\[1\]"):
        make_sandbox().campaign("A").rule("r", when=[c.coupon_valid, True], then=[])


def test_non_effect_in_then_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"then\[0\]"):
        make_sandbox().campaign("A").rule("r", when=[], then=[{"setDiscount": 5}])


def test_unknown_group_mode_is_refused() -> None:
    with pytest.raises(DefinitionError, match="highestDiscount"):
        make_sandbox().group("g", mode="highest")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(DefinitionError, match="time zone"):
        Sandbox(now="2026-12-01T10:00:00")
    sb = make_sandbox()
    with pytest.raises(DefinitionError, match="time zone"):
        sb.campaign("A", start=datetime(2026, 1, 1))  # noqa: DTZ001 (naive on purpose)
    with pytest.raises(DefinitionError, match="time zone"):
        sb.campaign("B").coupon("CODE1", expiry_date="2026-12-24T23:59:59")


@pytest.mark.parametrize("percent", [101, "100.01", -1])
def test_percent_outside_0_to_100_is_refused(percent: Any) -> None:
    with pytest.raises(DefinitionError, match="percent"):
        e.set_discount("x", percent=percent)
    with pytest.raises(DefinitionError, match="percent"):
        e.set_discount_per_item("x", percent=percent)


# ---------------------------------------------------------------------------
# explain()


def not_firing(condition: Any, total: str = "30") -> Any:
    sb = make_sandbox()
    sb.campaign("C").rule("big", when=[condition], then=[e.set_discount("d", amount=1)])
    return sb.update("s", NewCustomerSession(total=D(total)))


def test_explain_shows_a_lambdas_source() -> None:
    text = not_firing(lambda ctx: ctx.total >= 50).explain()
    assert "rule 0 'big': did not fire: condition 0 failed: ctx.total >= 50 (saw total=30)" in text


def test_explain_shows_only_the_failing_lambdas_source_when_several_share_a_line() -> None:
    checks = [lambda ctx: ctx.total > 1, lambda ctx: ctx.total >= 50]
    sb = make_sandbox()
    sb.campaign("C").rule("r", when=checks, then=[])
    text = sb.update("s", NewCustomerSession(total=D(5))).explain()
    assert "condition 1 failed: ctx.total >= 50 (saw total=5)" in text.splitlines()[-1]


def test_explain_shows_a_named_conditions_name() -> None:
    text = not_firing(c.named("spends a lot", lambda ctx: ctx.total >= 50)).explain()
    assert "condition 0 failed: spends a lot (saw total=30)" in text


def test_explain_shows_a_helpers_description_and_the_value_it_saw() -> None:
    state = not_firing(c.total_at_least(50))
    text = state.explain()
    assert "condition 0 failed: cart total >= 50 (saw total=30)" in text
    (failure,) = state.to_wire()["ruleFailureReasons"]
    assert failure["conditionIndex"] == 0
    assert failure["details"].startswith("cart total >= 50")


def test_explain_says_which_rules_fired() -> None:
    sb = make_sandbox()
    camp = sb.campaign("C")
    camp.rule("yes", when=[], then=[e.set_discount("y", amount=1)])
    camp.rule("no", when=[c.total_at_least(100)], then=[e.set_discount("n", amount=1)])
    text = sb.update("s", NewCustomerSession(total=D(10))).explain()
    assert "rule 0 'yes': fired" in text
    assert "rule 1 'no': did not fire" in text


# ---------------------------------------------------------------------------
# to_wire()


def test_to_wire_always_has_the_required_lists_and_is_json() -> None:
    state = make_sandbox().update("s", NewCustomerSession())
    wire = state.to_wire()
    for key in ("effects", "ruleFailureReasons", "createdCoupons", "createdReferrals"):
        assert wire[key] == []
    json.dumps(wire)


def test_rule_failure_reasons_use_capital_id() -> None:
    sb = make_sandbox()
    camp = sb.campaign("C")
    camp.coupon("CODE1")
    camp.rule("r", when=[c.coupon_valid, c.total_at_least(100)], then=[e.set_discount("d", 1)])
    wire = sb.update("s", NewCustomerSession(coupon="CODE1", total=D(10))).to_wire()
    text = json.dumps(wire)
    (failure,) = wire["ruleFailureReasons"]
    assert failure["campaignID"] == camp.id
    assert failure["rulesetID"] == camp.id
    assert failure["campaignName"] == "C"
    assert failure["ruleIndex"] == 0
    assert failure["ruleName"] == "r"
    assert failure["conditionIndex"] == 1
    assert failure["couponValue"] == "CODE1"
    assert "campaignId" not in failure
    assert "campaignID" not in wire["effects"][0]
    assert wire["effects"][0]["campaignId"] == camp.id
    assert "NaN" not in text


# ---------------------------------------------------------------------------
# The evaluation context (DESIGN.md section 3)


def test_context_fields_are_never_none() -> None:
    seen: dict[str, Any] = {}

    def look(ctx: Any) -> bool:
        for name in ("session", "total", "items", "profile_id", "identifiers", "attributes", "now"):
            seen[name] = getattr(ctx, name)
        return True

    make_sandbox().campaign("C").rule("r", when=[look], then=[])
    sb = make_sandbox()
    sb.campaign("C").rule("r", when=[look], then=[])
    sb.update("s", NewCustomerSession())
    assert all(v is not None for v in seen.values()), seen
    assert seen["items"] == ()
    assert seen["identifiers"] == ()
    assert dict(seen["attributes"]) == {}
    assert seen["total"] == 0
