"""Planted bug: coupons that expire a year late.

The Black Friday codes give 25% until the end of November 2026; the expiry date was typed
with the year 2027, so the codes keep working through December and the next eleven
months. Needs the clock to pass the end of November.
"""

from datetime import UTC, datetime

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

END_OF_NOVEMBER = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
EXPIRY = "2027-11-30T23:59:59Z"  # the bug: "2026-11-30T23:59:59Z"


def build() -> Sandbox:
    sb = Sandbox(now="2026-11-27T09:00:00Z")
    black_friday = sb.campaign("Black Friday")
    for n in (1, 2, 3):
        black_friday.coupon(f"BF-{n}", expiry_date=EXPIRY)
    black_friday.rule(
        "25% with a Black Friday code",
        when=[c.coupon_valid],
        then=[e.set_discount("Black Friday 25%", percent=25)],
    )
    return sb


def property_no_black_friday_discount_after_november(state: IntegrationState) -> bool:
    """The Black Friday discount is given in November 2026 and never after."""
    return "Black Friday 25%" not in state.discounts or state.meta.updated <= END_OF_NOVEMBER
