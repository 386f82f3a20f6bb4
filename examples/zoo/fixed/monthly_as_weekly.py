"""Fixed twin of `../monthly_as_weekly.py`: the budget's period is a month.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from decimal import Decimal

from sandbox import IntegrationState, Limit, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    treats = sb.campaign(
        "Treats",
        limits=[Limit("setDiscount", 50, period="monthly")],
    )
    treats.rule(
        "30 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Treat 30", 30)]
    )
    return sb


def property_treats_cost_at_most_50_a_month(state: IntegrationState, sb: Sandbox) -> bool:
    """The treats given in orders kept come to at most 50 in any calendar month."""
    spent: dict[tuple[int, int], Decimal] = {}
    for stored in sb.sessions.values():
        if stored.state is not SessionState.CLOSED or stored.meta is None:
            continue
        month = (stored.meta.updated.year, stored.meta.updated.month)
        given = sum(
            (e.props["value"] for e in stored.effects if e.props.get("name") == "Treat 30"),
            Decimal(0),
        )
        spent[month] = spent.get(month, Decimal(0)) + given
    return all(total <= 50 for total in spent.values())
