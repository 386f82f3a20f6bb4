"""Planted bug: a thank-you discount for anyone who sends a thank-you code.

A friend who orders with Ann's referral code gets 10 off, and the order creates a
thank-you code (15 off) for Ann. The thank-you rule checks that a code starting with
"THANKS-" was sent, not that it is valid: when Ann's code reaches someone else (a friend
she forwards it to, a coupon site), Talon.One rejects the code for the wrong recipient,
and the 15 off is given all the same. Needs created codes offered, after the close that
creates them, to others than their owner.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    thanks = sb.campaign("Thank you")
    thanks.rule(
        "15 off with a thank-you code",
        # the bug: c.coupon_valid
        when=[lambda ctx: any(code.startswith("THANKS-") for code in ctx.coupon_codes)],
        then=[e.set_discount("Thanks 15", 15)],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-ANN", advocate="ann")
    friends.referral("REF-BOB", advocate="bob")
    friends.rule(
        "10 off for a friend, a thank-you code for the advocate",
        when=[c.referral_valid],
        then=[
            e.set_discount("Friend 10", 10),
            e.create_coupon(
                pattern="THANKS-####", recipient=lambda ctx: ctx.advocate_id, campaign="Thank you"
            ),
        ],
    )
    return sb


def property_thank_you_discount_only_for_the_codes_owner(
    state: IntegrationState, sb: Sandbox
) -> bool:
    """The thank-you discount goes only to the advocate a thank-you code was made for."""
    if "Thanks 15" not in state.discounts:
        return True
    owners = {sb.get_coupon(code).recipient for code in state.accepted_coupons}
    return state.session.profile_id in owners
