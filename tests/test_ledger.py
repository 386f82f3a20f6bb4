"""Limits, budgets and counters, scenario by scenario.

Every expected value is worked out by hand from Talon.One's documented
meaning (reference/talon_semantics.md sections 2 and 6), never copied from
the engine's output.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.errors import DefinitionError

NOW = "2026-12-01T10:00:00Z"


def make(*limits: Limit, **options: Any) -> tuple[Sandbox, Any]:
    sb = Sandbox(now=NOW, **options)
    campaign = sb.campaign("Promo", limits=list(limits))
    campaign.rule("ten off", when=[c.coupon_valid], then=[e.set_discount("ten", Decimal("10"))])
    return sb, campaign


def close(sb: Sandbox, sid: str, **fields: Any) -> Any:
    return sb.update(sid, {"total": 100, **fields, "state": "closed"})


def rejection(state: Any, code: str) -> str | None:
    return state.rejected_coupons.get(code)


def coupon_effect(state: Any, effect_type: str) -> Any:
    found = state.effects_of(effect_type)
    assert len(found) == 1, state.effects
    return found[0]


def counters(sb: Sandbox) -> dict[tuple[str, tuple[tuple[str, str], ...], str | None], Decimal]:
    return {
        (lc.action, tuple(sorted(lc.scope.items())), lc.bucket): lc.counter
        for lc in sb.limit_counters()
    }


# ---------------------------------------------------------------------------
# CouponLimitReached


def test_coupon_usage_limit() -> None:
    sb, campaign = make()
    campaign.coupon("TWICE", usage_limit=2)
    assert close(sb, "s1", coupon="TWICE").accepted_coupons == ["TWICE"]
    assert close(sb, "s2", coupon="TWICE").accepted_coupons == ["TWICE"]
    assert sb.get_coupon("TWICE").usage_counter == 2
    third = close(sb, "s3", coupon="TWICE")
    assert rejection(third, "TWICE") == "CouponLimitReached"
    assert third.discounts == {}
    assert sb.get_coupon("TWICE").usage_counter == 2


def test_per_coupon_limit() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Coupon"]))
    campaign.coupon("AAAA")
    campaign.coupon("BBBB")
    assert close(sb, "s1", coupon="AAAA").accepted_coupons == ["AAAA"]
    # Another coupon of the campaign has its own counter.
    assert close(sb, "s2", coupon="BBBB").accepted_coupons == ["BBBB"]
    assert rejection(close(sb, "s3", coupon="AAAA"), "AAAA") == "CouponLimitReached"
    by_coupon = {lc.scope["Coupon"]: (lc.counter, lc.remaining) for lc in sb.limit_counters()}
    assert by_coupon == {"AAAA": (1, 0), "BBBB": (1, 0)}


def test_per_identifier_limit_same_ip_two_profiles() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Identifier"]))
    campaign.coupon("IPCODE")
    first = close(sb, "s1", coupon="IPCODE", profileId="p1", identifiers=["10.0.0.1"])
    assert first.accepted_coupons == ["IPCODE"]
    second = close(sb, "s2", coupon="IPCODE", profileId="p2", identifiers=["10.0.0.1"])
    assert rejection(second, "IPCODE") == "CouponLimitReached"
    # A different IP still has room.
    third = close(sb, "s3", coupon="IPCODE", profileId="p2", identifiers=["10.0.0.2"])
    assert third.accepted_coupons == ["IPCODE"]


def test_identifier_limit_without_identifiers_requires_one() -> None:
    sb, campaign = make(Limit("redeemCoupon", 5, entities=["Identifier"]))
    campaign.coupon("IPCODE")
    state = close(sb, "s1", coupon="IPCODE", profileId="p1")
    reject = coupon_effect(state, "rejectCoupon")
    assert reject.props["rejectionReason"] == "CouponLimitReached"
    assert "identifier is required" in reject.props["details"]
    assert sb.get_coupon("IPCODE").usage_counter == 0
    assert sb.limit_counters() == []


def test_two_identifiers_rejected_when_either_is_exhausted_and_both_charged() -> None:
    sb, campaign = make(Limit("redeemCoupon", 2, entities=["Identifier"]))
    campaign.coupon("IPCODE")
    assert close(sb, "s1", coupon="IPCODE", identifiers=["ip-a", "dev-1"]).accepted_coupons
    got = counters(sb)
    assert got == {
        ("redeemCoupon", (("Identifier", "ip-a"),), None): 1,
        ("redeemCoupon", (("Identifier", "dev-1"),), None): 1,
    }
    assert close(sb, "s2", coupon="IPCODE", identifiers=["ip-a"]).accepted_coupons
    # ip-a is at 2 of 2; dev-1 at 1 of 2: one exhausted identifier is enough to reject.
    state = close(sb, "s3", coupon="IPCODE", identifiers=["dev-1", "ip-a"])
    assert rejection(state, "IPCODE") == "CouponLimitReached"
    state = close(sb, "s4", coupon="IPCODE", identifiers=["dev-1", "ip-b"])
    assert state.accepted_coupons == ["IPCODE"]
    assert counters(sb) == {
        ("redeemCoupon", (("Identifier", "ip-a"),), None): 2,
        ("redeemCoupon", (("Identifier", "dev-1"),), None): 2,
        ("redeemCoupon", (("Identifier", "ip-b"),), None): 1,
    }


# ---------------------------------------------------------------------------
# Profile and campaign limits


def test_profile_limit() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"]))
    campaign.coupon("PROF")
    assert close(sb, "s1", coupon="PROF", profileId="p1").accepted_coupons == ["PROF"]
    assert (
        rejection(close(sb, "s2", coupon="PROF", profileId="p1"), "PROF") == "ProfileLimitReached"
    )
    assert close(sb, "s3", coupon="PROF", profileId="p2").accepted_coupons == ["PROF"]
    assert sb.get_coupon("PROF").usage_counter == 2


def test_profile_required() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"]))
    campaign.coupon("PROF")
    state = close(sb, "s1", coupon="PROF")
    assert rejection(state, "PROF") == "ProfileRequired"
    assert sb.get_coupon("PROF").usage_counter == 0


def test_campaign_limit() -> None:
    sb, campaign = make(Limit("redeemCoupon", 2))
    for code in ("C001", "C002", "C003"):
        campaign.coupon(code)
    assert close(sb, "s1", coupon="C001", profileId="p1").accepted_coupons
    assert close(sb, "s2", coupon="C002", profileId="p2").accepted_coupons
    state = close(sb, "s3", coupon="C003", profileId="p3")
    assert rejection(state, "C003") == "CampaignLimitReached"
    (lc,) = sb.limit_counters()
    assert (lc.scope, lc.counter, lc.remaining) == ({}, 2, 0)


def test_referral_limit() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Refer", limits=[Limit("redeemReferral", 1, entities=["Referral"])])
    campaign.rule("friend", when=[c.referral_valid], then=[e.set_discount("friend", Decimal("5"))])
    campaign.referral("REF-1", advocate="adv")
    first = sb.update(
        "s1", {"referral": "REF-1", "profileId": "f1", "total": 50, "state": "closed"}
    )
    assert first.accepted_referrals == ["REF-1"]
    assert sb.get_referral("REF-1").usage_counter == 1
    second = sb.update(
        "s2", {"referral": "REF-1", "profileId": "f2", "total": 50, "state": "closed"}
    )
    assert second.rejected_referrals == {"REF-1": "ReferralLimitReached"}
    assert sb.get_referral("REF-1").usage_counter == 1


def test_referral_usage_limit() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Refer")
    campaign.rule("friend", when=[c.referral_valid], then=[e.set_discount("friend", Decimal("5"))])
    campaign.referral("REF-1", advocate="adv", usage_limit=1)
    sb.update("s1", {"referral": "REF-1", "profileId": "f1", "total": 50, "state": "closed"})
    second = sb.update("s2", {"referral": "REF-1", "profileId": "f2", "total": 50})
    assert second.rejected_referrals == {"REF-1": "ReferralLimitReached"}


# ---------------------------------------------------------------------------
# Discount budgets


def budget_sandbox(**options: Any) -> Sandbox:
    sb = Sandbox(now=NOW, **options)
    campaign = sb.campaign("Budget", limits=[Limit("setDiscount", 10)])
    campaign.rule("four off", when=[c.coupon_valid], then=[e.set_discount("four", Decimal("4"))])
    for code in ("B001", "B002", "B003", "B004"):
        campaign.coupon(code)
    return sb


def test_money_budget_exhausted_fails_the_rule() -> None:
    sb = budget_sandbox()
    assert close(sb, "s1", coupon="B001").discounts == {"four": Decimal("4")}
    assert close(sb, "s2", coupon="B002").discounts == {"four": Decimal("4")}
    # 8 of 10 used: 4 more does not fit and partial discounts are off.
    third = close(sb, "s3", coupon="B003")
    assert third.discounts == {}
    assert rejection(third, "B003") == "EffectCouldNotBeApplied"
    assert sb.get_coupon("B003").usage_counter == 0
    (lc,) = sb.limit_counters()
    assert (lc.action, lc.counter, lc.remaining) == ("setDiscount", 8, 2)


def test_partial_discount_gives_the_rest_then_fails_at_zero() -> None:
    sb = budget_sandbox(partial_discounts=True)
    close(sb, "s1", coupon="B001")
    close(sb, "s2", coupon="B002")
    third = close(sb, "s3", coupon="B003")
    discount = coupon_effect(third, "setDiscount")
    assert discount.props["value"] == Decimal("2")
    assert discount.props["desiredValue"] == Decimal("4")
    assert third.accepted_coupons == ["B003"]
    (lc,) = sb.limit_counters()
    assert (lc.counter, lc.remaining) == (10, 0)
    fourth = close(sb, "s4", coupon="B004")
    assert fourth.discounts == {}
    assert rejection(fourth, "B004") == "EffectCouldNotBeApplied"


def test_a_partial_discount_is_in_currency_precision_and_fails_below_one_cent() -> None:
    # DESIGN.md section 4: discounts are rounded to the currency precision. A budget of
    # 10.005 leaves 10.005 for the first session: it gets 10.00 (rounded down, so the
    # budget holds), desiredValue 25. Then 0.005 is left, less than a cent: as at 0,
    # the rule fails ("the rule still fails when the budget reaches 0").
    sb = Sandbox(now=NOW, partial_discounts=True)
    campaign = sb.campaign("Promo", limits=[Limit("setDiscount", Decimal("10.005"))])
    campaign.rule("25 off", when=[], then=[e.set_discount("d", Decimal("25"))])
    (first,) = close(sb, "s1").effects
    assert first.props == {"name": "d", "value": Decimal("10.00"), "desiredValue": Decimal("25")}
    assert counters(sb) == {("setDiscount", (), None): Decimal("10.00")}
    second = close(sb, "s2")
    assert second.effects == ()
    assert [f.effect_index for f in second.rule_failure_reasons] == [0]


def test_open_sessions_do_not_consume_budget() -> None:
    sb = budget_sandbox()
    for i in range(5):
        state = sb.update(f"open-{i}", {"coupon": "B001", "total": 100})
        assert state.discounts == {"four": Decimal("4")}
    assert sb.limit_counters() == []


def test_discount_effect_count_limit() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Count", limits=[Limit("setDiscountEffect", 2, entities=["Profile"])])
    campaign.rule("five off", then=[e.set_discount("five", Decimal("5"))])
    for i in range(2):
        state = sb.update(f"s{i}", {"profileId": "p1", "total": 20, "state": "closed"})
        assert state.discounts == {"five": Decimal("5")}
    third = sb.update("s3", {"profileId": "p1", "total": 20, "state": "closed"})
    assert third.discounts == {}
    assert [f.rule_name for f in third.rule_failure_reasons] == ["five off"]
    assert sb.update("s4", {"profileId": "p2", "total": 20}).discounts == {"five": Decimal("5")}
    (lc,) = sb.limit_counters()
    assert (lc.action, lc.scope, lc.counter, lc.remaining) == (
        "setDiscountEffect",
        {"Profile": "p1"},
        2,
        0,
    )


# ---------------------------------------------------------------------------
# Periods


def test_daily_limit_resets_at_utc_midnight() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"], period="daily"))
    campaign.coupon("DAILY")
    sb.set_now("2026-12-01T23:59:59Z")
    assert close(sb, "s1", coupon="DAILY", profileId="p1").accepted_coupons == ["DAILY"]
    assert rejection(close(sb, "s2", coupon="DAILY", profileId="p1"), "DAILY") == (
        "ProfileLimitReached"
    )
    sb.advance(seconds=1)
    assert sb.now.isoformat() == "2026-12-02T00:00:00+00:00"
    assert close(sb, "s3", coupon="DAILY", profileId="p1").accepted_coupons == ["DAILY"]
    buckets = sorted((lc.bucket, lc.counter) for lc in sb.limit_counters())
    assert buckets == [("2026-12-01", 1), ("2026-12-02", 1)]


def test_daily_bucket_is_utc_not_local() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"], period="daily"))
    campaign.coupon("DAILY")
    # 2026-12-02 01:30 in UTC+02:00 is still 2026-12-01 in UTC.
    sb.set_now("2026-12-01T22:00:00Z")
    close(sb, "s1", coupon="DAILY", profileId="p1")
    sb.set_now("2026-12-02T01:30:00+02:00")
    assert rejection(close(sb, "s2", coupon="DAILY", profileId="p1"), "DAILY") == (
        "ProfileLimitReached"
    )


def test_weekly_limit_resets_at_iso_week_boundary() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"], period="weekly"))
    campaign.coupon("WEEKLY")
    # 2026-12-06 is a Sunday; Monday 2026-12-07 starts ISO week 50.
    sb.set_now("2026-12-01T08:00:00Z")  # Tuesday of ISO week 49
    assert close(sb, "s1", coupon="WEEKLY", profileId="p1").accepted_coupons
    sb.set_now("2026-12-06T23:59:59Z")
    assert rejection(close(sb, "s2", coupon="WEEKLY", profileId="p1"), "WEEKLY") == (
        "ProfileLimitReached"
    )
    sb.advance(seconds=1)
    assert close(sb, "s3", coupon="WEEKLY", profileId="p1").accepted_coupons == ["WEEKLY"]
    buckets = sorted((lc.bucket, lc.counter) for lc in sb.limit_counters())
    assert buckets == [("2026-W49", 1), ("2026-W50", 1)]


def test_cancel_releases_the_bucket_of_the_close() -> None:
    sb, campaign = make(Limit("redeemCoupon", 1, entities=["Profile"], period="daily"))
    campaign.coupon("DAILY")
    close(sb, "s1", coupon="DAILY", profileId="p1")
    sb.advance(days=1)
    sb.update("s1", {"state": "cancelled"})
    assert sb.limit_counters() == []
    assert sb.get_coupon("DAILY").usage_counter == 0


# ---------------------------------------------------------------------------
# Read access


def test_profile_stats() -> None:
    sb, campaign = make()
    campaign.coupon("CODE")
    sb.update("s1", {"profileId": "p1", "cartItems": [{"sku": "a", "quantity": 2, "price": 15}]})
    assert sb.get_profile("p1").closed_sessions == 0
    sb.update(
        "s1",
        {
            "profileId": "p1",
            "coupon": "CODE",
            "cartItems": [{"sku": "a", "quantity": 2, "price": 15}],
            "state": "closed",
        },
    )
    sb.update("s2", {"profileId": "p1", "total": 20, "state": "closed"})
    stats = sb.get_profile("p1")
    # totalSales is before discounts: 30 + 20, not 20 + 20.
    assert (stats.closed_sessions, stats.total_sales) == (2, Decimal("50"))


# ---------------------------------------------------------------------------
# Definitions


@pytest.mark.parametrize(
    ("action", "options", "bad", "valid"),
    [
        (
            "redeemCoupons",
            {},
            "redeemCoupons",
            ["redeemCoupon", "setDiscount", "setDiscountEffect"],
        ),
        ("redeemCoupon", {"entities": ["Customer"]}, "Customer", ["Profile", "Identifier"]),
        ("redeemCoupon", {"period": "hourly"}, "hourly", ["daily", "weekly", "monthly", "yearly"]),
    ],
)
def test_unknown_limit_names_list_the_valid_ones(
    action: str, options: dict[str, Any], bad: str, valid: list[str]
) -> None:
    with pytest.raises(DefinitionError) as info:
        Limit(action, 1, **options)
    message = str(info.value)
    assert repr(bad) in message
    for name in valid:
        assert repr(name) in message


def test_two_limits_counting_the_same_thing_are_refused_at_definition() -> None:
    import pytest

    from sandbox import DefinitionError, Limit, Sandbox

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    with pytest.raises(DefinitionError, match=r"limits\[1\].*same thing as limits\[0\]"):
        sb.campaign(
            "Twice",
            limits=[
                Limit("redeemCoupon", 1, entities=["Profile"]),
                Limit("redeemCoupon", 3, entities=["Profile"]),
            ],
        )
    assert sb.campaigns == ()
