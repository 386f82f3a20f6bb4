"""Fixed twin of `../thank_you_for_anyone.py`: the thank-you rule checks the code is valid.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    thanks = sb.campaign("Thank you")
    thanks.rule(
        "15 off with a thank-you code",
        when=[c.coupon_valid],
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
