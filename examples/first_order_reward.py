"""A first order earns a 10% code for the next one.

"First order reward" watches closing sessions: a profile's first order of 30 or more
creates a personal coupon (NEXT-####, valid 30 days, one use) in the "Next order"
campaign, whose rule gives 10% off with it. The code exists once the first order
closes; cancelling that order deletes it again. Try:
`python -m sandbox fuzz examples/first_order_reward.py`.
"""

from sandbox import IntegrationState, Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")

    next_order = sb.campaign("Next order", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    next_order.rule(
        "10% off with a reward code",
        when=[c.coupon_valid],
        then=[e.set_discount("Reward 10%", percent=10)],
    )

    reward = sb.campaign("First order reward")
    reward.rule(
        "a code for the next order",
        when=[c.first_order, c.total_at_least(30)],
        then=[
            e.create_coupon(pattern="NEXT-####", valid_days=30, campaign="Next order"),
            e.show_notification(
                "Thank you", "Your next order is 10% off", notification_type="Offer"
            ),
        ],
    )
    return sb


def property_at_most_one_reward_code_per_session(state: IntegrationState) -> bool:
    """A session never creates more than one coupon."""
    return len(state.created_coupons) <= 1
