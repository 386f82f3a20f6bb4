"""The embedded default rules file: `python -m sandbox demo` runs it.

A Christmas coupon campaign (10% off carts of 50 or more, one redemption per
profile), a referral programme, and a category discount for shoes. Copy it
and change the rules; `python -m sandbox fuzz examples/xmas.py` checks it.
"""

from decimal import Decimal

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")

    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
    xmas.rule(
        "10% off carts over 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10% off", percent=10)],
    )

    friends = sb.campaign(
        "Refer a friend", limits=[Limit("redeemReferral", 1, entities=["Profile"])]
    )
    friends.referral("REF-2740", advocate="adv-1")
    # `python -m sandbox fuzz` found that 5 off a 0.01 cart is more than half off:
    # the threshold keeps the welcome discount under the file's own property.
    friends.rule(
        "5 off for referred friends",
        when=[c.referral_valid, c.total_at_least(20)],
        then=[e.set_discount("Welcome 5", Decimal(5))],
    )

    shoes = sb.campaign("Shoe week")
    shoes.rule(
        "20% off shoes",
        when=[c.has_item(category="shoes")],
        then=[
            e.set_discount_per_item(
                "Shoes 20%", percent=20, where=lambda item: item.category == "shoes"
            )
        ],
    )
    return sb


def property_never_more_than_half_off(state) -> bool:  # type: ignore[no-untyped-def]
    """No customer ever gets more than half off."""
    return state.total_discount * 2 <= state.session.effective_total
