"""Tiered cart discounts in one evaluation group, and a launch bonus with a budget.

The tiers share the evaluation group "Cart tiers" in listOrder mode, the
highest tier first, so a customer gets exactly one tier: the first whose
threshold the cart reaches (the others are excluded with
CampaignIsNotFirst):

    Gold    15% off carts of 200 or more
    Silver  10% off carts of 100 or more
    Bronze   5% off carts of 50 or more

A separate "Launch bonus" campaign (in the default stackable group, so it
adds to the tier) gives 10 off carts of 100 or more while its money budget
lasts: ``Limit("setDiscount", 25)`` lets closed sessions take 25 in all.
Two bonuses spend 20; the third wants 10 with 5 left, and its rule does not
fire (EffectCouldNotBeApplied), unless the sandbox is made with
``partial_discounts=True``, which gives the 5 that is left.

    python -m sandbox fuzz examples/tiered_cart.py --examples 200
"""

from decimal import Decimal

from sandbox import IntegrationState, Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

TIERS = (("Gold", 200, 15), ("Silver", 100, 10), ("Bronze", 50, 5))
BONUS_BUDGET = Decimal(25)


def build(*, partial_discounts: bool = False) -> Sandbox:
    sb = Sandbox(now="2026-05-04T08:00:00Z", partial_discounts=partial_discounts)
    tiers = sb.group("Cart tiers", mode="listOrder")
    for name, threshold, percent in TIERS:
        tier = sb.campaign(f"{name} tier", group=tiers)
        tier.rule(
            f"{percent}% off carts of {threshold} or more",
            when=[c.total_at_least(threshold)],
            then=[e.set_discount(f"{name} {percent}%", percent=percent)],
        )
    bonus = sb.campaign("Launch bonus", limits=[Limit("setDiscount", BONUS_BUDGET)])
    bonus.rule(
        "10 off carts of 100 or more",
        when=[c.total_at_least(100)],
        then=[e.set_discount("Launch bonus", Decimal(10))],
    )
    return sb


def property_one_tier_at_most(state: IntegrationState) -> bool:
    """The tiers never stack: at most one tier discount per session."""
    tiers = [n for n in state.discounts if n.split()[0] in {t[0] for t in TIERS}]
    return len(tiers) <= 1
