"""Planted bug: a group mode that lets two campaigns stack.

Two welcome offers (10 off with WELCOME10, 15% for app users) were meant to exclude each
other: the team made a listOrder group, but created the second campaign without
`group=`. A customer with the code in the app gets both.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    welcome = sb.group("Welcome", mode="listOrder")
    code = sb.campaign("Welcome code", group=welcome)
    code.coupon("WELCOME10")
    code.rule("10 off", when=[c.coupon_valid], then=[e.set_discount("Welcome 10", 10)])
    app = sb.campaign("Welcome app")  # the bug: group=welcome is missing
    app.rule(
        "15% in the app",
        when=[c.attribute_equals("channel", "app")],
        then=[e.set_discount("Welcome app 15%", percent=15)],
    )
    return sb


def property_one_welcome_offer_at_most(state: IntegrationState) -> bool:
    """A session gets one welcome offer, never two."""
    return sum(name.startswith("Welcome") for name in state.discounts) <= 1
