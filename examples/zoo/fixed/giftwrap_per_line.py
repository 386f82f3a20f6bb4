"""Fixed twin of `../giftwrap_per_line.py`: the per-item rule tests the unit price.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    wrap = sb.campaign("Free gift wrap")
    wrap.rule(
        "free wrap on items from 20",
        when=[],
        then=[
            e.set_discount_per_additional_cost_per_item(
                "Free wrap",
                cost="giftwrap",
                percent=100,
                where=lambda item: item.price >= 20,
            )
        ],
    )
    return sb


def property_free_wrap_only_on_items_of_20(state: IntegrationState) -> bool:
    """No item priced under 20.00 gets its gift wrap for free."""
    items = state.session.cart_items or ()
    return all(
        items[e.props["position"]].price >= 20
        for e in state.effects
        if e.props.get("additionalCost") == "giftwrap"
    )
