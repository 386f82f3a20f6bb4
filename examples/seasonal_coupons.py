"""A seasonal coupon campaign: Black Friday to Cyber Monday, with anti-abuse limits.

"Black Friday" runs from Friday 27 November to the end of Monday 30 November
2026 (UTC). Its public code BLACKFRIDAY gives 15% off carts of 60 or more,
and 5 off smaller carts of 20 or more. Each customer profile may redeem it
once, and so may each identifier (here the shopper's IP address), so a
second account on the same connection gets CouponLimitReached. A session
that sends the code without any identifier is rejected the same way, its
details saying an identifier is required. The code itself is good for 1000
redemptions in all.

    python -m sandbox fuzz examples/seasonal_coupons.py --examples 200
"""

from decimal import ROUND_HALF_UP, Decimal

from sandbox import IntegrationState, Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

CODE = "BLACKFRIDAY"


def build() -> Sandbox:
    sb = Sandbox(now="2026-11-27T09:00:00Z")  # Black Friday morning
    season = sb.campaign(
        "Black Friday",
        start="2026-11-27T00:00:00Z",
        end="2026-11-30T23:59:59Z",
        limits=[
            Limit("redeemCoupon", 1, entities=["Profile"]),
            Limit("redeemCoupon", 1, entities=["Identifier"]),
        ],
    )
    season.coupon(CODE, usage_limit=1000)
    season.rule(
        "15% off carts of 60 or more",
        when=[c.coupon_valid, c.total_at_least(60)],
        then=[e.set_discount("Black Friday 15%", percent=15)],
    )
    season.rule(
        "5 off carts from 20 to 60",
        when=[c.coupon_valid, c.total_at_least(20), c.total_below(60)],
        then=[e.set_discount("Black Friday 5 off", Decimal(5))],
    )
    return sb


def property_at_most_fifteen_percent_off(state: IntegrationState) -> bool:
    """Nobody gets more than 15% off (rounded to the cent), except the flat 5 off on
    carts of 20 to 60. (The cent matters: 15% of 79.97 is 11.9955, given as 12.00.)"""
    total = state.session.effective_total
    fifteen = (total * Decimal("0.15")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    flat = Decimal(5) if 20 <= total < 60 else Decimal(0)
    return state.total_discount <= max(fifteen, flat)
