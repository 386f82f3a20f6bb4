"""A rules file with a planted bug, for `python -m sandbox fuzz examples/planted_bug.py`.

Two campaigns stack (both sit in Talon.One's default stackable group):
"Big basket" gives 30% off any cart of 100 or more, no code needed, and
"VIP" gives 25% off with the coupon VIP25. Each looks fine alone, but a
VIP with a big basket gets 55% off, which breaks the shop's own rule below.
`examples/half_off_ok.py` is the fixed version.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")

    basket = sb.campaign("Big basket")
    basket.rule(
        "30% off carts of 100 or more",
        when=[c.total_at_least(100)],
        then=[e.set_discount("Big basket 30%", percent=30)],
    )

    vip = sb.campaign("VIP")
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
