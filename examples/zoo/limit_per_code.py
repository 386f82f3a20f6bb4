"""Planted bug: "once per profile" written as a per-coupon limit.

Welcome codes WELCOME-1..3 should give a customer one welcome discount, ever. The limit
is per Coupon, so each code allows one redemption, and a customer who closes two orders
with two different codes gets the welcome twice.
"""

from sandbox import IntegrationState, Limit, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    welcome = sb.campaign("Welcome", limits=[Limit("redeemCoupon", 1, entities=["Coupon"])])
    for n in (1, 2, 3):
        welcome.coupon(f"WELCOME-{n}")
    welcome.rule("10 off", when=[c.coupon_valid], then=[e.set_discount("Welcome 10", 10)])
    return sb


def property_one_welcome_per_customer(state: IntegrationState, sb: Sandbox) -> bool:
    """No profile has two closed sessions that redeemed a welcome code."""
    seen: dict[str, int] = {}
    for stored in sb.sessions.values():
        profile = stored.submitted.profile_id
        closed = stored.state in (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED)
        if (
            profile
            and closed
            and any(e.effect_type.value == "acceptCoupon" for e in stored.effects)
        ):
            seen[profile] = seen.get(profile, 0) + 1
    return all(n <= 1 for n in seen.values())
