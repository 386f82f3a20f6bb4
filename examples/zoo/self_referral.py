"""Planted bug: a referral to oneself accepted.

The welcome rule checks that a referral code was sent (`ctx.referral_code`), not that it
is valid (`c.referral_valid`): the advocate using her own code (rejected with
ReferralRecipientIdSameAsAdvocate) still gets the friend's discount, and so does any
unknown code.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    friends = sb.campaign("Friends")
    friends.referral("REF-P1", advocate="p1")
    friends.rule(
        "5 off for friends",
        when=[
            c.named("a referral code was sent", lambda ctx: bool(ctx.referral_code)),
            c.total_at_least(20),
        ],
        then=[e.set_discount("Friend 5", 5)],
    )
    return sb


def property_no_friend_discount_without_a_valid_referral(state: IntegrationState) -> bool:
    """The friend's discount needs an accepted referral."""
    return "Friend 5" not in state.discounts or bool(state.accepted_referrals)
