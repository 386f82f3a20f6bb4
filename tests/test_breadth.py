"""More of Talon.One (the breadth issue): what rules read, rewards for the advocate,
events, the customer inventory, referrals made by the API and idempotent returns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.errors import DefinitionError, RuleError, UnknownEntityError, ValidationError

NOW = "2026-12-01T10:00:00Z"


def seen(sb: Sandbox, campaign: str = "Probe") -> list[Any]:
    """A campaign whose one rule records the context it was evaluated with."""
    contexts: list[Any] = []

    def record(ctx: Any) -> bool:
        contexts.append(
            (
                ctx.total,
                ctx.cart_item_total,
                ctx.additional_cost_total,
                ctx.advocate_id,
                ctx.event.type,
                dict(ctx.event.attributes),
            )
        )
        return False

    sb.campaign(campaign).rule("records", when=[c.named("records", record)], then=[])
    return contexts


# ---------------------------------------------------------------------------
# What rules read: items-only and costs-only totals, the advocate, the event


def test_totals_split_items_from_additional_costs() -> None:
    sb = Sandbox(now=NOW)
    contexts = seen(sb)
    sb.update(
        "s1",
        {
            "profileId": "p1",
            "cartItems": [
                {"sku": "a", "quantity": 2, "price": 10, "additionalCosts": {"wrap": {"price": 1}}},
                {"sku": "b", "quantity": 1, "price": 5.5},
            ],
            "additionalCosts": {"shipping": {"price": 4.99}},
        },
    )
    # items 2 x 10 + 5.50; costs 4.99 + 1 x 2 (an item's cost counts per unit)
    ((total, items, costs, advocate, event, _),) = contexts
    assert items == Decimal("25.50")
    assert costs == Decimal("6.99")
    assert total == items + costs
    assert advocate == ""
    assert event == "talon_session_created"


def test_a_percent_of_the_items_only_leaves_shipping_alone() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Ten").rule(
        "10% of the items",
        then=[e.set_discount("10% items", lambda ctx: ctx.cart_item_total / 10)],
    )
    state = sb.update(
        "s1",
        {
            "cartItems": [{"sku": "a", "quantity": 1, "price": 40}],
            "additionalCosts": {"shipping": {"price": 10}},
        },
    )
    assert state.discounts == {"10% items": Decimal("4.00")}


def test_the_event_names_the_session_transition() -> None:
    sb = Sandbox(now=NOW)
    contexts = seen(sb)
    body = {"profileId": "p1", "cartItems": [{"sku": "a", "quantity": 1, "price": 5}]}
    sb.update("s1", {**body, "attributes": {"channel": "web"}})
    sb.update("s1", body)
    sb.update("s1", {"state": "closed"})
    sb.update("s2", body)
    sb.evaluate(body)
    events = [(ctx[4], ctx[5]) for ctx in contexts]
    assert events == [
        ("talon_session_created", {"channel": "web"}),
        ("talon_session_updated", {"channel": "web"}),  # a V2 PUT keeps the attributes
        ("talon_session_closed", {"channel": "web"}),
        ("talon_session_created", {}),
        ("talon_session_updated", {}),  # sb.evaluate: outside the lifecycle
    ]


def test_a_rule_on_the_close_event_fires_only_at_close() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Thanks").rule(
        "a note at close",
        when=[c.named("closing", lambda ctx: ctx.event.type == "talon_session_closed")],
        then=[e.show_notification("Thanks", "See you soon")],
    )
    body = {"profileId": "p1", "cartItems": [{"sku": "a", "quantity": 1, "price": 5}]}
    assert sb.update("s1", body).effects == ()
    closed = sb.update("s1", {"state": "closed"})
    assert [x.effect_type.value for x in closed.effects] == ["showNotification"]


# ---------------------------------------------------------------------------
# The advocate's reward in one rule


def referral_shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    thanks = sb.campaign("Thanks")
    thanks.rule("5 off with the code", when=[c.coupon_valid], then=[e.set_discount("Thanks", 5)])
    friends = sb.campaign("Refer a friend")
    friends.referral("REF-ANNA", advocate="anna")
    friends.referral("REF-BEN", advocate="ben")
    friends.rule(
        "thank the advocate",
        when=[c.referral_valid],
        then=[
            e.create_coupon(
                pattern="THANKS-####", recipient=lambda ctx: ctx.advocate_id, campaign="Thanks"
            )
        ],
    )
    return sb


@pytest.mark.parametrize(("code", "advocate"), [("REF-ANNA", "anna"), ("REF-BEN", "ben")])
def test_one_rule_rewards_whichever_advocate_referred(code: str, advocate: str) -> None:
    sb = referral_shop()
    closed = sb.update(
        "s1",
        {
            "profileId": "friend",
            "referralCode": code,
            "cartItems": [{"sku": "a", "quantity": 1, "price": 30}],
            "state": "closed",
        },
    )
    ((created),) = closed.created_coupons
    assert created["recipientIntegrationId"] == advocate
    view = sb.get_coupon(created["value"])
    assert view.recipient == advocate
    mine = sb.update("s2", {"profileId": advocate, "couponCodes": [created["value"]]})
    assert mine.accepted_coupons == [created["value"]]


def test_the_advocate_is_read_only_from_a_valid_referral() -> None:
    sb = referral_shop()
    contexts = seen(sb)
    sb.update("s1", {"profileId": "anna", "referralCode": "REF-ANNA"})  # her own code
    sb.update("s2", {"profileId": "carl", "referralCode": "REF-ANNA"})
    assert [ctx[3] for ctx in contexts] == ["", "anna"]


def test_a_recipient_callable_giving_no_profile_creates_nothing_and_says_why() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("C").rule(
        "reward the advocate", then=[e.create_coupon(recipient=lambda ctx: ctx.advocate_id)]
    )
    state = sb.update("s1", {"profileId": "p1", "state": "closed"})
    assert state.created_coupons == ()
    assert "recipient=... gave no profile" in state.rule_failure_reasons[0].details


def test_a_created_referral_can_name_its_advocate() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Share").rule(
        "a code for the referrer's friend list",
        then=[e.create_referral(pattern="SHARE-####", advocate=lambda ctx: ctx.profile_id + "-x")],
    )
    closed = sb.update("s1", {"profileId": "p1", "state": "closed"})
    ((made),) = closed.created_referrals
    assert sb.get_referral(made["code"]).advocate == "p1-x"


def test_a_recipient_must_be_a_profile_id_or_a_callable() -> None:
    with pytest.raises(
        DefinitionError, match=r"recipient=\.\.\.\) must be a profile id or a callable"
    ):
        e.create_coupon(recipient=12)  # type: ignore[arg-type]


def test_a_recipient_callable_returning_a_number_names_the_rule() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("C").rule("bad", then=[e.create_coupon(recipient=lambda ctx: 7)])
    with pytest.raises(RuleError, match=r"'C'.*'bad'.*recipient.*a profile id must be a string"):
        sb.update("s1", {"profileId": "p1"})


# ---------------------------------------------------------------------------
# Events (trackEventV2)


def signup_shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    sb.campaign("Welcome").rule(
        "a code for newsletter signups",
        when=[
            c.named(
                "a newsletter signup",
                lambda ctx: (
                    ctx.event.type == "signup" and ctx.event.attributes.get("newsletter") is True
                ),
            )
        ],
        then=[e.create_coupon(pattern="HELLO-####")],
    )
    return sb


def sdk_read(wire: dict[str, Any], model: str) -> Any:
    import json

    import talon_one

    return talon_one.ApiClient().deserialize(json.dumps(wire), model, "application/json")


def test_an_event_fires_the_rules_that_read_it_and_creates_its_profile() -> None:
    sb = signup_shop()
    state = sb.track_event(
        "new-1",
        "signup",
        {"newsletter": True},
        response_content=["customerProfile", "triggeredCampaigns", "event"],
    )
    ((made),) = state.created_coupons
    assert made["recipientIntegrationId"] == "new-1"
    assert sb.get_coupon(made["value"]).recipient == "new-1"  # usable at once
    assert sb.get_profile("new-1").integration_id == "new-1"
    sdk = sdk_read(state.to_wire(state.response_content), "TrackEventV2Response")
    assert sdk.created_coupons[0].value == made["value"]
    assert (sdk.event.type, sdk.event.attributes) == ("signup", {"newsletter": True})
    assert sdk.customer_profile.integration_id == "new-1"
    assert [t.name for t in sdk.triggered_campaigns] == ["Welcome"]
    assert "customerSession" not in state.to_wire()


def test_an_event_of_another_type_fires_nothing_and_says_why() -> None:
    sb = signup_shop()
    state = sb.track_event("p1", "login")
    assert state.effects == ()
    assert "a newsletter signup" in state.rule_failure_reasons[0].details
    sdk = sdk_read(state.to_wire(), "TrackEventV2Response")
    assert sdk.effects == []


def test_a_dry_event_changes_nothing_and_agrees_with_the_real_one() -> None:
    sb = signup_shop()
    dry = sb.track_event("p1", "signup", {"newsletter": True}, dry=True)
    with pytest.raises(UnknownEntityError):
        sb.get_profile("p1")
    with pytest.raises(UnknownEntityError):
        sb.get_coupon(dry.created_coupons[0]["value"])
    real = sb.track_event("p1", "signup", {"newsletter": True})
    assert real.created_coupons == dry.created_coupons


def test_a_bad_event_names_the_field() -> None:
    sb = signup_shop()
    with pytest.raises(ValidationError, match=r"/type: 'type' must"):
        sb.track_event("p1", "")
    with pytest.raises(ValidationError, match=r"/attributes/x"):
        sb.track_event("p1", "signup", {"x": float("nan")})
    with pytest.raises(ValidationError, match=r"/responseContent/0"):
        sb.track_event("p1", "signup", response_content=["coupons"])


# ---------------------------------------------------------------------------
# Customer inventory


def test_the_inventory_lists_the_profiles_coupons_and_referrals_with_their_use() -> None:
    sb = Sandbox(now=NOW)
    deals = sb.campaign("Deals")
    deals.rule("5 off with a code", when=[c.coupon_valid], then=[e.set_discount("5 off", 5)])
    deals.coupon("MINE-1", recipient="p1", usage_limit=1)
    deals.coupon("MINE-2", recipient="p1", expiry_date="2026-12-02T00:00:00Z")
    deals.coupon("MINE-3", recipient="p1", start_date="2027-01-01T00:00:00Z")
    deals.coupon("THEIRS", recipient="p2")
    deals.coupon("ANYONE")
    refer = sb.campaign("Refer")
    refer.referral("REF-P1", advocate="p1")
    refer.rule("welcome", when=[c.referral_valid], then=[e.set_discount("welcome", 1)])
    sb.update("s1", {"profileId": "p1", "couponCodes": ["MINE-1"], "state": "closed"})
    sb.update("s2", {"profileId": "f1", "referralCode": "REF-P1", "state": "closed"})
    sb.advance(days=2)  # MINE-2 expires
    inventory = sb.get_inventory("p1")
    states = {coupon.code: coupon.state for coupon in inventory.coupons}
    assert states == {"MINE-1": "used", "MINE-2": "expired", "MINE-3": "pending"}
    (mine,) = [coupon for coupon in inventory.coupons if coupon.code == "MINE-1"]
    assert (mine.usage_counter, mine.profile_redemption_count) == (1, 1)
    (referral,) = inventory.referrals
    assert (referral.code, referral.usage_counter, referral.referred_customers) == (
        "REF-P1",
        1,
        ("f1",),
    )
    sdk = sdk_read(inventory.to_wire(), "CustomerInventory")
    assert sdk.profile.integration_id == "p1"
    assert {c.value: c.state for c in sdk.coupons} == states
    assert sdk.referrals[0].referred_customers == ["f1"]


def test_the_inventory_holds_created_codes_and_skips_parts_not_asked_for() -> None:
    sb = signup_shop()
    made = sb.track_event("p1", "signup", {"newsletter": True}).created_coupons[0]["value"]
    inventory = sb.get_inventory("p1")
    assert [(c.code, c.state) for c in inventory.coupons] == [(made, "active")]
    assert inventory.to_wire(profile=False, referrals=False) == {
        "coupons": [inventory.coupons[0].to_wire()]
    }


def test_the_inventory_of_an_unknown_profile_is_an_error_with_a_hint() -> None:
    sb = signup_shop()
    sb.track_event("anna", "login")
    with pytest.raises(UnknownEntityError, match=r"anne.*did you mean 'anna'"):
        sb.get_inventory("anne")


# ---------------------------------------------------------------------------
# Referrals made by the API (createReferral)


def test_a_referral_made_by_the_api_is_usable_at_once() -> None:
    sb = Sandbox(now=NOW)
    refer = sb.campaign("Refer")
    refer.rule("welcome", when=[c.referral_valid], then=[e.set_discount("welcome", 3)])
    made = sb.create_referral("Refer", "anna", pattern="ANNA-####")
    assert made.code.startswith("ANNA-")
    assert len(made.code) == len("ANNA-####")
    assert (made.advocate, made.campaign_id, made.usage_counter) == ("anna", refer.id, 0)
    used = sb.update("s1", {"profileId": "bob", "referralCode": made.code})
    assert used.accepted_referrals == [made.code]
    second = sb.create_referral(refer.id, "anna")
    assert second.code != made.code  # a new code each time
    assert [r.code for r in sb.get_inventory("anna").referrals] == [made.code, second.code]


def test_a_referral_for_an_unknown_campaign_names_the_close_one() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Refer a friend")
    with pytest.raises(UnknownEntityError, match="did you mean 'Refer a friend'"):
        sb.create_referral("Refer a frend", "anna")


# ---------------------------------------------------------------------------
# Returns: runRuleEngine and Idempotency-Key


def spend_shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    spend = sb.campaign("Spend 100", reevaluate_on_return=True)
    spend.rule("10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("10 off", 10)])
    sb.campaign("Steady").rule(
        "5 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("5 off", 5)]
    )
    return sb


TWO_ITEMS = {
    "profileId": "p1",
    "cartItems": [
        {"sku": "a", "quantity": 1, "price": 60},
        {"sku": "b", "quantity": 1, "price": 60},
    ],
    "state": "closed",
}


def rolled_back(state: Any) -> dict[str, Decimal]:
    return {x.props["name"]: x.props["value"] for x in state.effects}


def test_a_return_with_the_rule_engine_takes_back_what_the_kept_items_no_longer_earn() -> None:
    sb = spend_shop()
    sb.update("s1", TWO_ITEMS)
    plain = sb.return_items("s1", [{"position": 1}], dry=True)
    # 60 of 120 returned: half of each discount by share.
    assert rolled_back(plain) == {"10 off": Decimal("5.00"), "5 off": Decimal("2.50")}
    again = sb.return_items("s1", [{"position": 1}], run_rule_engine=True)
    # The kept 60 is under 100: the reevaluated campaign gives back all of its 10; the
    # other campaign (reevaluateOnReturn off) its share only.
    assert rolled_back(again) == {"10 off": Decimal("10.00"), "5 off": Decimal("2.50")}
    budget_left = sb.get_session("s1").discounts_left
    assert sorted(v for _, v in budget_left) == [Decimal("0.00"), Decimal("2.50")]


def test_a_reevaluated_coupon_campaign_does_not_count_the_sessions_own_redemption() -> None:
    sb = Sandbox(now=NOW)
    vip = sb.campaign("VIP", reevaluate_on_return=True)
    vip.coupon("ONCE", usage_limit=1)
    vip.rule(
        "20 off from 50 with the code",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("20 off", 20)],
    )
    sb.update("s1", {**TWO_ITEMS, "couponCodes": ["ONCE"]})
    # Kept 60 still earns the 20: only the proportional share (10) comes back.
    back = sb.return_items("s1", [{"position": 1}], run_rule_engine=True)
    assert rolled_back(back) == {"20 off": Decimal("10.00")}


def test_a_repeated_return_with_its_key_answers_the_first_answer_and_changes_nothing() -> None:
    sb = spend_shop()
    sb.update("s1", {**TWO_ITEMS, "cartItems": [{"sku": "a", "quantity": 3, "price": 60}]})
    first = sb.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k-1")
    before = sb.snapshot()
    again = sb.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k-1")
    assert again == first
    assert sb.snapshot() == before
    assert sb.get_session("s1").returned == (1,)
    with pytest.raises(ValidationError, match="Idempotency-Key: the key 'k-1' was used"):
        sb.return_items("s1", [{"position": 0, "quantity": 2}], idempotency_key="k-1")
    sb.advance(hours=24)  # the key has expired: the same request is a new return
    sb.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k-1")
    assert sb.get_session("s1").returned == (2,)


# ---------------------------------------------------------------------------
# The spec's required fields


def test_session_answers_carry_the_item_cost_total_and_campaigns_their_type() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Ship", reevaluate_on_return=True).rule("1 off", then=[e.set_discount("1", 1)])
    state = sb.update(
        "s1",
        {
            "customerSession": {
                "cartItems": [
                    {
                        "sku": "a",
                        "quantity": 2,
                        "price": 10,
                        "additionalCosts": {"wrap": {"price": 1.5}},
                    }
                ],
                "additionalCosts": {"shipping": {"price": 4}},
            },
            "responseContent": ["customerSession", "triggeredCampaigns"],
        },
    )
    wire = state.to_wire(state.response_content)
    session = wire["customerSession"]
    assert (session["cartItemTotal"], session["additionalCostTotal"]) == (20, 7)
    assert session["cartItemAdditionalCostTotal"] == 3  # 1.5 x 2 units
    (campaign,) = wire["triggeredCampaigns"]
    assert (campaign["type"], campaign["reevaluateOnReturn"]) == ("advanced", True)


# ---------------------------------------------------------------------------
# Events and returns as lines of a sessions file (eval, diff, replays)


def test_event_and_return_lines_replay_through_read_step() -> None:
    from sandbox.steps import parse_line, read_step

    sb = signup_shop()
    spend = sb.campaign("Spend 100", reevaluate_on_return=True)
    spend.rule("10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("10 off", 10)])
    lines = [
        '{"trackEvent": {"profileId": "p1", "type": "signup", "attributes": {"newsletter": true}}}',
        '{"customerSessionId": "s1", "customerSession": {"profileId": "p1", "state": "closed",'
        ' "cartItems": [{"sku": "a", "quantity": 2, "price": 60}]}}',
        '{"returnItems": "s1", "returnedCartItems": [{"position": 0, "quantity": 1}],'
        ' "runRuleEngine": true, "idempotencyKey": "k1"}',
    ]
    answers = [read_step(parse_line(line), n)(sb, False) for n, line in enumerate(lines, 1)]
    assert answers[0].created_coupons[0]["recipientIntegrationId"] == "p1"
    assert [x.props["value"] for x in answers[2].effects] == [Decimal("10.00")]


def test_a_bad_event_line_points_into_the_line() -> None:
    from sandbox.steps import parse_line, read_step

    with pytest.raises(ValidationError, match=r"/trackEvent/type"):
        read_step(parse_line('{"trackEvent": {"profileId": "p1"}}'), 1)
    with pytest.raises(ValidationError, match=r"/idempotencyKy: unknown key.*'idempotencyKey'"):
        read_step(
            parse_line('{"returnItems": "s1", "returnedCartItems": [], "idempotencyKy": 1}'), 1
        )
