"""Planted bug: a create-coupon reward created again and again.

"Your first order earns a 10% code for the next one": the rule forgot `c.first_order`, so
every closed order of 30 or more creates another code for the same customer.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    next_order = sb.campaign("Next order")
    next_order.rule(
        "10% with the code", when=[c.coupon_valid], then=[e.set_discount("Reward 10%", percent=10)]
    )
    reward = sb.campaign("First order reward")
    reward.rule(
        "a code for the next order",
        when=[c.profile_present, c.total_at_least(30)],  # the bug: c.first_order is missing
        then=[e.create_coupon(pattern="NEXT-####", campaign="Next order")],
    )
    return sb


def property_one_reward_code_per_customer(state: IntegrationState, sb: Sandbox) -> bool:
    """No customer ever holds two reward codes."""
    campaign = sb.get_campaign("Next order")
    holders = [coupon.recipient for coupon in campaign.coupons.values()]
    return len(holders) == len(set(holders))
