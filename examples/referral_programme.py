"""A referral programme: advocates share codes, referred friends get 10 off.

Each advocate's code may bring in three friends (``usage_limit=3``); each
friend may be referred only once, whichever code they use (a per-profile
``redeemReferral`` limit). A friend's first order must be 30 or more. An
advocate cannot use their own code (ReferralRecipientIdSameAsAdvocate), and
a code made for one named friend works only for that friend
(ReferralRecipientDoesNotMatch).

    python -m sandbox fuzz examples/referral_programme.py --examples 200
"""

from decimal import Decimal

from sandbox import IntegrationState, Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

WELCOME = Decimal(10)


def build() -> Sandbox:
    sb = Sandbox(now="2026-03-02T12:00:00Z")
    friends = sb.campaign(
        "Refer a friend", limits=[Limit("redeemReferral", 1, entities=["Profile"])]
    )
    friends.referral("REF-ANNA", advocate="anna", usage_limit=3)
    friends.referral("REF-BEN", advocate="ben", usage_limit=3)
    # A personal invitation: only Carla may use it.
    friends.referral("REF-ANNA-CARLA", advocate="anna", friend="carla")
    friends.rule(
        "10 off a referred friend's order of 30 or more",
        when=[c.referral_valid, c.total_at_least(30)],
        then=[
            e.set_discount("Welcome 10", WELCOME),
            e.show_notification("Welcome!", "A friend sent you: 10 off this order"),
        ],
    )
    return sb


def property_friends_get_at_most_ten_off(state: IntegrationState) -> bool:
    """The programme never gives more than its 10 welcome discount."""
    return state.total_discount <= WELCOME
