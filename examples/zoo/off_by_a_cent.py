"""Planted bug: a threshold off by a cent.

The policy: "10% off with SAVE10 from 50.00". The rule says `ctx.total > 50`, so a cart
of exactly 50.00 gets nothing. Found on the threshold itself.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    save = sb.campaign("Save 10")
    save.coupon("SAVE10")
    save.rule(
        "10% from 50",
        when=[c.coupon_valid, lambda ctx: ctx.total > 50],
        then=[e.set_discount("Save 10%", percent=10)],
    )
    return sb


def property_carts_from_50_with_save10_get_10_percent(state: IntegrationState) -> bool:
    """A valid SAVE10 on a cart of 50.00 or more always gives its 10%."""
    if "SAVE10" not in state.accepted_coupons and "SAVE10" not in state.rejected_coupons:
        return True
    if state.session.effective_total < Decimal(50):
        return True
    return "Save 10%" in state.discounts
