"""Planted bug: a one-time reward code that can be used again and again.

"Your first order earns 10% off your next one": the reward code is created for the
customer with `usage_limit=0`, which means unlimited, not once. The customer redeems it
on every later order. Needs a created code re-sent by its owner after it was used.
"""

from sandbox import IntegrationState, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    next_order = sb.campaign("Next order")
    next_order.rule(
        "10% with the code", when=[c.coupon_valid], then=[e.set_discount("Next 10%", percent=10)]
    )
    reward = sb.campaign("First order reward")
    reward.rule(
        "a code for the next order",
        when=[c.first_order],
        then=[
            e.create_coupon(
                pattern="NEXT-####",
                recipient=lambda ctx: ctx.profile_id,
                usage_limit=0,  # the bug: usage_limit=1
                campaign="Next order",
            )
        ],
    )
    return sb


def property_each_reward_code_is_redeemed_once(state: IntegrationState, sb: Sandbox) -> bool:
    """No reward code is redeemed in two orders that were kept."""
    rewards = sb.get_campaign("Next order").coupons
    kept = (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED)
    redeemed: dict[str, int] = {}
    for stored in sb.sessions.values():
        if stored.state not in kept:
            continue
        for effect in stored.effects:
            if effect.effect_type.value == "acceptCoupon" and effect.value in rewards:
                redeemed[effect.value] = redeemed.get(effect.value, 0) + 1
    return all(n <= 1 for n in redeemed.values())
