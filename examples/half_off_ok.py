"""The fixed version of `examples/planted_bug.py`: the same two campaigns,
now in one evaluation group with mode "highestDiscount", so a customer gets
the better of the two deals (at most 30% off), never both.

`python -m sandbox fuzz examples/half_off_ok.py` finds no violation.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    best_deal = sb.group("Best deal", mode="highestDiscount")

    basket = sb.campaign("Big basket", group=best_deal)
    basket.rule(
        "30% off carts of 100 or more",
        when=[c.total_at_least(100)],
        then=[e.set_discount("Big basket 30%", percent=30)],
    )

    vip = sb.campaign("VIP", group=best_deal)
    vip.coupon("VIP25")
    vip.rule(
        "25% off for VIPs",
        when=[c.coupon_valid],
        then=[e.set_discount("VIP 25%", percent=25)],
    )
    return sb


def property_at_most_half_off(state: IntegrationState) -> bool:
    """No customer ever gets more than half off."""
    return state.total_discount <= state.session.effective_total / Decimal(2)
