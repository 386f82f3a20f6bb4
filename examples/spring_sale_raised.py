"""examples/spring_sale.py with one change: SPRING10 now needs a cart of 60, not 50.

    Spring sale   10 off carts of 60 or more with the code SPRING10
    Big basket    15 off carts of 200 or more, no code needed

Compare the two on recorded sessions, or on generated ones (shrunk to the boundary):

    python -m sandbox diff examples/spring_sale.py examples/spring_sale_raised.py \\
        --sessions examples/spring_sessions.jsonl
    python -m sandbox diff examples/spring_sale.py examples/spring_sale_raised.py --seed 1
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

SPRING_THRESHOLD = 60  # raised from 50


def build() -> Sandbox:
    sb = Sandbox(now="2027-03-21T09:00:00Z")
    spring = sb.campaign("Spring sale")
    spring.coupon("SPRING10")
    spring.rule(
        "10 off with SPRING10",
        when=[c.coupon_valid, c.total_at_least(SPRING_THRESHOLD)],
        then=[e.set_discount("Spring 10", 10)],
    )
    sb.campaign("Big basket").rule(
        "15 off carts of 200 or more",
        when=[c.total_at_least(200)],
        then=[e.set_discount("Big basket 15", 15)],
    )
    return sb


def property_at_most_25_off(state: IntegrationState) -> bool:
    """The two discounts (10 and 15) are all there is: never more than 25 off."""
    return state.total_discount <= 25
