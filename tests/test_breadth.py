"""More of Talon.One (the breadth issue): what rules read, rewards for the advocate,
events, the customer inventory, referrals made by the API and idempotent returns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.errors import DefinitionError, RuleError

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
