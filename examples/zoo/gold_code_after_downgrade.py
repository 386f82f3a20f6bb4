"""Planted bug: a gold members' code that still pays after the member drops to silver.

Every order of a gold member (profile attribute `tier`, set by the loyalty system with
profile updates) earns a code for 20% off the next one. The code's own rule checks only
that the code is valid, so a member who drops to silver before the next order still gets
the gold discount. Needs a profile whose tier changes between two orders, and a created
code offered to its owner after the close that created it.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    gold = sb.campaign("Gold 20")
    gold.rule(
        "20% with a gold code",
        when=[c.coupon_valid],  # the bug: c.profile_attribute_equals("tier", "gold") missing
        then=[e.set_discount("Gold 20%", percent=20)],
    )
    earn = sb.campaign("Gold orders")
    earn.rule(
        "a gold code with every gold order",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[
            e.create_coupon(
                pattern="GOLD-####", recipient=lambda ctx: ctx.profile_id, campaign="Gold 20"
            )
        ],
    )
    silver = sb.campaign("Silver")
    silver.rule(
        "5% for silver members",
        when=[c.profile_attribute_equals("tier", "silver")],
        then=[e.set_discount("Silver 5%", percent=5)],
    )
    return sb


def property_gold_discount_only_for_gold_members(state: IntegrationState, sb: Sandbox) -> bool:
    """Only a profile that is gold when it orders gets the gold discount."""
    if "Gold 20%" not in state.discounts:
        return True
    profile = state.session.profile_id
    return bool(profile) and sb.get_profile(profile).attributes.get("tier") == "gold"
