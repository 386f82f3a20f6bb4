"""Fixed twin of `../weekly_as_daily.py`: the limit's period is a week.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Limit, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    once = Limit("redeemCoupon", 1, entities=["Profile"], period="weekly")
    deal = sb.campaign("Weekly deal", limits=[once])
    deal.coupon("DEAL")
    deal.rule("10 off with the deal", when=[c.coupon_valid], then=[e.set_discount("Deal 10", 10)])
    return sb


def property_one_deal_per_customer_per_week(state: IntegrationState, sb: Sandbox) -> bool:
    """No customer has two kept orders with the deal in one ISO week."""
    seen: dict[tuple[str, int, int], int] = {}
    for stored in sb.sessions.values():
        profile = stored.submitted.profile_id
        redeemed = any(e.effect_type.value == "acceptCoupon" for e in stored.effects)
        if profile and redeemed and stored.state is SessionState.CLOSED and stored.meta:
            year, week, _ = stored.meta.updated.isocalendar()
            seen[profile, year, week] = seen.get((profile, year, week), 0) + 1
    return all(n <= 1 for n in seen.values())
