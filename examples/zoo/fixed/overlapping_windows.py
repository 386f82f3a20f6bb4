"""Fixed twin of `../overlapping_windows.py`: New year starts the day after Christmas week ends.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-18T09:00:00Z")
    christmas = sb.campaign(
        "Christmas week", start="2026-12-20T00:00:00Z", end="2026-12-27T23:59:59Z"
    )
    christmas.rule("15% off", when=[], then=[e.set_discount("Christmas 15%", percent=15)])
    new_year = sb.campaign(
        "New year",
        start="2026-12-28T00:00:00Z",
        end="2027-01-06T23:59:59Z",
    )
    new_year.rule("10% off", when=[], then=[e.set_discount("New year 10%", percent=10)])
    return sb


def property_at_most_15_percent_off(state: IntegrationState) -> bool:
    """No customer gets more than 15% off (a cent of rounding per discount effect)."""
    rounding = Decimal("0.01") * sum(1 for e in state.effects if e.effect_type.is_discount)
    return state.total_discount <= state.session.effective_total * Decimal("0.15") + rounding
