"""Planted bug: two stackable campaigns plus a referral give 35% off a band of totals.

VIP customers get 15% with the VIP-15 coupon, referred friends 5%, and carts from 100 to
200 get 15%. Each is fine alone; a VIP with a referral and a cart in the band gets 35%,
above the shop's 30% ceiling. Found by combining a coupon, an attribute, a referral and a
total at once.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    vip = sb.campaign("VIP")
    vip.coupon("VIP-15")
    vip.rule(
        "15% for VIPs",
        when=[c.coupon_valid, c.attribute_equals("vip", True)],
        then=[e.set_discount("VIP 15%", percent=15)],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-AMY", advocate="amy")
    friends.rule(
        "5% for friends", when=[c.referral_valid], then=[e.set_discount("Friend 5%", percent=5)]
    )
    band = sb.campaign("Mid basket")
    band.rule(
        "15% from 100 to 200",
        when=[c.total_at_least(100), c.total_below(200)],
        then=[e.set_discount("Band 15%", percent=15)],
    )
    return sb


def property_at_most_30_percent_off(state: IntegrationState) -> bool:
    """No customer ever gets more than 30% off."""
    return state.total_discount * 100 <= state.session.effective_total * 30
