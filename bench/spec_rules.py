"""Rules for ``bench/spec_check.py``: something for every operation the server serves.

A coupon campaign (known codes, limits, a per-item discount, an additional-cost
discount, a free item, a notification), a referral programme (known codes, codes
made by ``POST /v1/referrals``, the advocate rewarded with a coupon), an event rule
(any event with a ``newsletter`` attribute creates a coupon) and a campaign
evaluated again on returns, so that schemathesis's requests meet effects, created
codes, inventory entries and returns rather than empty answers.

    python -m sandbox serve bench/spec_rules.py
"""

from decimal import Decimal

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-03-02T12:00:00Z")
    shop = sb.campaign(
        "Spring coupons",
        limits=[Limit("redeemCoupon", 5, entities=["Profile"])],
    )
    for code in ("SPRING", "string", "XMAS-2026"):
        shop.coupon(code, usage_limit=1000)
    shop.coupon("FOR-ANNA", recipient="anna")
    shop.rule(
        "10% off with a coupon",
        when=[c.coupon_valid],
        then=[
            e.set_discount("Spring 10%", percent=10),
            e.show_notification("Spring", "10% off this order"),
        ],
    )
    shop.rule(
        "5% off each item of 20 or more",
        when=[c.total_at_least(20)],
        then=[e.set_discount_per_item("Per item 5%", percent=5)],
    )
    shop.rule(
        "free shipping over 50",
        when=[c.total_at_least(50)],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    shop.rule(
        "a gift over 80",
        when=[c.total_at_least(80)],
        then=[e.add_free_item("GIFT-1", "Tote bag"), e.update_attribute("Profile.vip", True)],
    )

    friends = sb.campaign(
        "Refer a friend", limits=[Limit("redeemReferral", 1, entities=["Profile"])]
    )
    friends.referral("REF-ANNA", advocate="anna", usage_limit=3)
    friends.referral("REF-BEN", advocate="ben", usage_limit=3)
    friends.rule(
        "10 off a referred friend, a coupon for the advocate",
        when=[c.referral_valid, c.total_at_least(30)],
        then=[
            e.set_discount("Welcome 10", Decimal(10)),
            e.create_coupon(pattern="THANKS-####", recipient=lambda ctx: ctx.advocate_id),
        ],
    )
    friends.rule(
        "a referral code of their own after a first order",
        when=[c.total_at_least(100)],
        then=[e.create_referral(pattern="REF-######", usage_limit=3)],
    )

    events = sb.campaign("Newsletter")
    events.rule(
        "a code for newsletter signups",
        when=[
            c.named(
                "an event with a newsletter attribute",
                lambda ctx: "newsletter" in ctx.event.attributes,
            )
        ],
        then=[e.create_coupon(pattern="HELLO-####", valid_days=14)],
    )

    returns = sb.campaign("Big baskets", reevaluate_on_return=True)
    returns.rule(
        "15 off baskets of 150 or more",
        when=[c.total_at_least(150)],
        then=[e.set_discount("Big basket", Decimal(15))],
    )
    return sb
