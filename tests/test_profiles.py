"""Customer profiles, create effects and the referral reasons of the Profiles issue.

Expectations come from Talon.One's documented meaning (reference sections 1.2, 3, 5.2,
9.1, 9.3) and DESIGN.md sections 3 and 4, computed by hand in each test; the two example
rules files (first_order_reward.py, gold_free_shipping.py) are exercised here too.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox import (
    DefinitionError,
    Limit,
    Sandbox,
    TransitionError,
    UnknownEntityError,
    ValidationError,
)
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.fuzzing import load_rules

NOW = "2026-12-01T10:00:00Z"
EXAMPLES = Path(__file__).parent.parent / "examples"
D = Decimal


def example(name: str) -> Sandbox:
    factory, _ = load_rules(EXAMPLES / name)
    return factory()


def order(profile: str | None, total: str, **more: Any) -> dict[str, Any]:
    session: dict[str, Any] = {"cartItems": [{"sku": "a", "quantity": 1, "price": D(total)}]}
    if profile is not None:
        session["profileId"] = profile
    return {**session, **more}


# ---------------------------------------------------------------------------
# Profiles


def test_a_profile_is_created_by_its_first_session_and_counts_closed_sales() -> None:
    sb = Sandbox(now=NOW)
    sb.update("s1", order("p1", "40"))
    profile = sb.get_profile("p1")
    assert (profile.integration_id, profile.closed_sessions, profile.total_sales) == ("p1", 0, 0)
    assert dict(profile.attributes) == {}
    sb.advance(hours=2)
    sb.update("s1", {"state": "closed"})
    profile = sb.get_profile("p1")
    assert (profile.closed_sessions, profile.total_sales) == (1, D(40))
    assert profile.created.isoformat() == "2026-12-01T10:00:00+00:00"
    assert profile.last_activity is not None
    assert profile.last_activity.isoformat() == "2026-12-01T12:00:00+00:00"


def test_a_dry_run_creates_no_profile() -> None:
    sb = Sandbox(now=NOW)
    sb.update("s1", order("p9", "10"), dry=True)
    assert "p9" not in sb.ledger.profiles
    with pytest.raises(UnknownEntityError, match="no profile 'p9'"):
        sb.get_profile("p9")


def test_profile_attributes_merge_key_by_key() -> None:
    sb = Sandbox(now=NOW)
    sb.update_profile("p1", {"attributes": {"tier": "silver", "newsletter": True}})
    state = sb.update_profile("p1", {"attributes": {"tier": "gold"}})
    assert dict(state.profile.attributes) == {"tier": "gold", "newsletter": True}
    assert dict(sb.get_profile("p1").attributes) == {"tier": "gold", "newsletter": True}
    assert state.effects == ()  # the rules did not run


def test_profile_attributes_drive_a_rule_and_an_update_changes_the_next_answer() -> None:
    sb = example("gold_free_shipping.py")
    basket = {
        "profileId": "p1",
        "cartItems": [{"sku": "a", "quantity": 1, "price": 30}],
        "additionalCosts": {"shipping": {"price": 4.99}},
    }
    assert sb.update("s1", basket).discounts == {}
    sb.update_profile("p1", {"attributes": {"tier": "gold"}})
    assert sb.update("s1", basket).discounts == {"Free shipping": D("4.99")}
    sb.update_profile("p1", {"attributes": {"tier": "bronze"}})
    assert sb.update("s1", basket).discounts == {}


def test_the_listorder_group_gives_free_shipping_once_to_a_gold_big_basket() -> None:
    sb = example("gold_free_shipping.py")
    sb.update_profile("p1", {"attributes": {"tier": "gold"}})
    state = sb.update(
        "s1",
        {
            "profileId": "p1",
            "cartItems": [{"sku": "a", "quantity": 1, "price": 150}],
            "additionalCosts": {"shipping": {"price": 5}},
        },
    )
    assert state.discounts == {"Free shipping": D(5)}
    assert [x.campaign_id for x in state.effects] == [sb.get_campaign("Gold shipping").id]


def test_a_failing_profile_condition_shows_the_value_it_read() -> None:
    sb = example("gold_free_shipping.py")
    sb.update_profile("p1", {"attributes": {"tier": "silver"}})
    failure = sb.update("s1", {"profileId": "p1"}).rule_failure_reasons[0]
    assert "profile.attributes['tier']='silver'" in failure.details


def test_profile_updates_check_their_arguments_and_change_nothing_when_refused() -> None:
    sb = Sandbox(now=NOW)
    before = sb.snapshot()
    with pytest.raises(ValidationError) as info:
        sb.update_profile("p1", {"attributes": {"tier": "gold"}, "atributes": {}})
    assert info.value.pointers == ["/atributes"]
    with pytest.raises(ValidationError, match="only works with runRuleEngine"):
        sb.update_profile("p1", {"attributes": {}}, dry=True)
    with pytest.raises(ValidationError, match="needs runRuleEngine"):
        sb.update_profile("p1", {"responseContent": ["customerProfile"]})
    assert sb.snapshot() == before


def test_a_dry_profile_update_with_rules_stores_nothing() -> None:
    sb = example("gold_free_shipping.py")
    before = sb.snapshot()
    state = sb.update_profile(
        "p1", {"attributes": {"tier": "gold"}}, run_rule_engine=True, dry=True
    )
    assert dict(state.profile.attributes) == {"tier": "gold"}
    assert sb.snapshot() == before


def test_profile_triggered_rules_run_and_commit_what_they_create() -> None:
    sb = Sandbox(now=NOW)
    welcome = sb.campaign("Welcome")
    welcome.rule(
        "a code for new gold members",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.create_coupon("GOLD-WELCOME")],
    )
    state = sb.update_profile("p1", {"attributes": {"tier": "gold"}}, run_rule_engine=True)
    assert [x.effect_type.value for x in state.effects] == ["couponCreated"]
    assert [c["value"] for c in state.created_coupons] == ["GOLD-WELCOME"]
    assert sb.get_coupon("GOLD-WELCOME").recipient == "p1"  # no session to close: created now


def test_first_session_is_true_then_false_for_the_same_profile() -> None:
    sb = Sandbox(now=NOW)
    first = sb.update("s1", order("p1", "10")).to_wire()["customerSession"]["firstSession"]
    second = sb.update("s2", order("p1", "10")).to_wire()["customerSession"]["firstSession"]
    assert (first, second) == (True, False)


def test_customer_profile_is_answered_when_response_content_asks() -> None:
    talon_one = pytest.importorskip("talon_one")
    sb = Sandbox(now=NOW)
    sb.update_profile("p1", {"attributes": {"tier": "gold"}})
    state = sb.update(
        "s1",
        {"customerSession": order("p1", "20"), "responseContent": ["customerProfile"]},
    )
    wire = state.to_wire(response_content=state.response_content)
    assert set(wire) == {"effects", "createdCoupons", "createdReferrals", "customerProfile"}
    sdk = talon_one.ApiClient().deserialize(
        json.dumps(wire), "IntegrationStateV2", "application/json"
    )
    assert sdk.customer_profile.integration_id == "p1"
    assert sdk.customer_profile.attributes == {"tier": "gold"}


def test_a_profile_update_answer_deserializes_with_the_official_sdk() -> None:
    talon_one = pytest.importorskip("talon_one")
    sb = example("first_order_reward.py")
    state = sb.update_profile(
        "p1",
        {
            "attributes": {"tier": "gold"},
            "responseContent": ["customerProfile", "ruleFailureReasons"],
        },
        run_rule_engine=True,
    )
    wire = state.to_wire(response_content=state.response_content)
    sdk = talon_one.ApiClient().deserialize(
        json.dumps(wire), "CustomerProfileIntegrationResponseV2", "application/json"
    )
    assert sdk.customer_profile.attributes == {"tier": "gold"}
    assert sdk.effects == []


# ---------------------------------------------------------------------------
# Create effects (DESIGN.md section 4: created at close, kept through a rollback)


def _reward_code(sb: Sandbox, session: str, profile: str = "p1") -> str:
    state = sb.update(session, order(profile, "40"))
    (created,) = state.created_coupons
    code: str = created["value"]
    return code


def test_a_created_coupon_is_absent_after_an_open_update_and_a_dry_run() -> None:
    sb = example("first_order_reward.py")
    code = _reward_code(sb, "s1")
    assert code.startswith("NEXT-")
    assert len(code) == len("NEXT-####")
    dry = sb.update("s1", order("p1", "40", state="closed"), dry=True)
    assert [c["value"] for c in dry.created_coupons] == [code]  # the dry run agrees...
    probe = sb.update("probe", {"profileId": "p1", "couponCodes": [code]}, dry=True)
    assert probe.rejected_coupons == {code: "CouponNotFound"}  # ...and created nothing


def test_a_created_coupon_is_redeemable_by_its_recipient_after_the_close() -> None:
    sb = example("first_order_reward.py")
    code = _reward_code(sb, "s1")
    sb.update("s1", {"state": "closed"})
    view = sb.get_coupon(code)
    assert (view.recipient, view.usage_limit, view.usage_counter) == ("p1", 1, 0)
    assert view.expiry_date is not None
    assert view.expiry_date.isoformat() == "2026-12-31T10:00:00+00:00"  # valid_days=30
    mine = sb.update("s2", {"profileId": "p1", "couponCodes": [code], **order(None, "50")})
    assert mine.accepted_coupons == [code]
    assert mine.discounts == {"Reward 10%": D("5.00")}
    other = sb.update("s3", {"profileId": "p2", "couponCodes": [code], **order(None, "50")})
    assert other.rejected_coupons == {code: "CouponRecipientDoesNotMatch"}


def test_a_second_order_creates_no_second_code() -> None:
    sb = example("first_order_reward.py")
    _reward_code(sb, "s1")
    sb.update("s1", {"state": "closed"})
    assert sb.update("s2", order("p1", "40")).created_coupons == ()


def test_cancelling_the_creating_session_keeps_the_code() -> None:
    # Talon.One rolls back discounts and counters on cancel, not "coupon and referral
    # creation" (talon_semantics.md; DESIGN.md section 4): the code stays redeemable.
    sb = example("first_order_reward.py")
    code = _reward_code(sb, "s1")
    sb.update("s1", {"state": "closed"})
    sb.update("s1", {"state": "cancelled"})
    assert sb.get_coupon(code).recipient == "p1"
    again = sb.update("s2", {"profileId": "p1", "couponCodes": [code], **order(None, "50")})
    assert again.accepted_coupons == [code]


def test_reopen_keeps_the_code_and_closing_again_creates_another() -> None:
    # Reopen rolls the first order back, so the order is a first order again and its
    # close runs the reward rule again: Talon.One would create a second coupon too.
    sb = example("first_order_reward.py")
    code = _reward_code(sb, "s1")
    sb.update("s1", {"state": "closed"})
    sb.reopen("s1")
    assert sb.get_coupon(code).recipient == "p1"
    closed = sb.update("s1", {"state": "closed"})
    (second,) = [c["value"] for c in closed.created_coupons]
    assert second != code
    assert sb.get_coupon(second).recipient == "p1"
    assert sb.get_coupon(code).recipient == "p1"


def test_a_created_code_redeemed_then_its_creator_cancelled_still_reconciles() -> None:
    from sandbox.invariants import usage_reconciles

    sb = example("first_order_reward.py")
    code = _reward_code(sb, "s1")
    sb.update("s1", {"state": "closed"})
    sb.update(
        "s2", {"profileId": "p1", "couponCodes": [code], **order(None, "50"), "state": "closed"}
    )
    sb.update("s1", {"state": "cancelled"})
    assert sb.get_coupon(code).usage_counter == 1  # s2's redemption stays counted
    usage_reconciles(sb)
    sb.update("s2", {"state": "cancelled"})
    assert sb.get_coupon(code).usage_counter == 0
    usage_reconciles(sb)


def test_a_created_coupon_needs_a_recipient() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("C").rule("code", then=[e.create_coupon(pattern="X-####")])
    state = sb.update("s1", order(None, "10"))
    assert state.created_coupons == ()
    assert "needs a recipient" in state.rule_failure_reasons[0].details


def test_a_literal_code_that_exists_fails_the_rule() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("C")
    campaign.coupon("TAKEN")
    campaign.rule("code", then=[e.create_coupon("TAKEN")])
    state = sb.update("s1", order("p1", "10"))
    assert "'TAKEN' already exists" in state.rule_failure_reasons[0].details


def test_a_created_referral_has_the_session_profile_as_its_advocate() -> None:
    sb = Sandbox(now=NOW)
    share = sb.campaign("Share")
    share.rule("share code", when=[c.first_order], then=[e.create_referral(pattern="SHARE-####")])
    share.rule("welcome", when=[c.referral_valid], then=[e.set_discount("Welcome", 5)])
    created = sb.update("s1", order("adv", "30", state="closed"))
    (referral,) = created.created_referrals
    assert referral["advocateProfileIntegrationId"] == "adv"
    friend = sb.update(
        "s2", {"profileId": "f1", "referralCode": referral["code"], **order(None, "30")}
    )
    assert friend.accepted_referrals == [referral["code"]]
    self_use = sb.update("s3", {"profileId": "adv", "referralCode": referral["code"]})
    assert self_use.rejected_referrals == {referral["code"]: "ReferralRecipientIdSameAsAdvocate"}


def test_create_effects_check_their_definition() -> None:
    sb = Sandbox(now=NOW)
    with pytest.raises(DefinitionError, match="campaign 'Nope', which does not exist"):
        sb.campaign("C").rule("code", then=[e.create_coupon(campaign="Nope")])
    with pytest.raises(DefinitionError, match="at least one '#'"):
        e.create_coupon(pattern="FIXED")
    with pytest.raises(DefinitionError, match=r"expiry_date=\.\.\. or valid_days"):
        e.create_coupon(valid_days=3, expiry_date="2027-01-01T00:00:00Z")


# ---------------------------------------------------------------------------
# Referral reasons (reference 5.2, DESIGN.md section 4)


def friends_campaign(**limits: Any) -> Sandbox:
    sb = Sandbox(now=NOW)
    friends = sb.campaign("Friends", **limits)
    friends.referral("REF-A", advocate="anna")
    friends.referral("REF-B", advocate="ben")
    friends.rule("welcome", when=[c.referral_valid], then=[e.set_discount("Welcome", 5)])
    return sb


def test_a_friend_already_referred_in_the_campaign_is_rejected() -> None:
    sb = friends_campaign()
    sb.update(
        "s1", {"profileId": "dora", "referralCode": "REF-A", **order(None, "30"), "state": "closed"}
    )
    again = sb.update("s2", {"profileId": "dora", "referralCode": "REF-B", **order(None, "30")})
    assert again.rejected_referrals == {"REF-B": "ReferralCustomerAlreadyReferred"}
    other = sb.update("s3", {"profileId": "eve", "referralCode": "REF-B", **order(None, "30")})
    assert other.accepted_referrals == ["REF-B"]
    sb.update("s1", {"state": "cancelled"})  # the referral is rolled back: dora may be referred
    assert sb.update("s2", {}).accepted_referrals == ["REF-B"]


def test_a_referral_needing_a_profile_gets_a_documented_referral_reason() -> None:
    sb = friends_campaign(limits=[Limit("redeemReferral", 1, entities=["Profile"])])
    state = sb.update("s1", {"referralCode": "REF-A", **order(None, "30")})
    (rejection,) = state.effects_of("rejectReferral")
    assert rejection.rejection_reason == "ProfileLimitReached"
    assert "a profile is required" in rejection.props["details"]


def test_a_closed_sessions_profile_cannot_be_changed_by_cancelling() -> None:
    sb = Sandbox(now=NOW)
    sb.update("s1", order("p1", "10", state="closed"))
    with pytest.raises(TransitionError, match="'profileId' differs"):
        sb.update("s1", {"profileId": "p2", "state": "cancelled"})
