"""Fixed twin of `../silver_and_gold.py`: silver ends where gold begins.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    silver = sb.campaign("Silver")
    silver.rule(
        "10% for silver members",
        when=[
            c.profile_attribute_at_least("points", 500),
            c.not_(c.profile_attribute_at_least("points", 2000)),
        ],
        then=[e.set_discount("Silver 10%", percent=10)],
    )
    gold = sb.campaign("Gold")
    gold.rule(
        "20% for gold members",
        when=[c.profile_attribute_at_least("points", 2000)],
        then=[e.set_discount("Gold 20%", percent=20)],
    )
    return sb


def property_members_get_at_most_20_percent(state: IntegrationState) -> bool:
    """No member gets more than 20% off (a cent of rounding per discount effect)."""
    rounding = Decimal("0.01") * sum(1 for e in state.effects if e.effect_type.is_discount)
    return state.total_discount <= state.session.effective_total * Decimal("0.20") + rounding
