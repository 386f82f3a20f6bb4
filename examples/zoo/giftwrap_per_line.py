"""Planted bug: free gift wrap judged on the cart line, not on the item.

"Gift wrap is free on items of 20.00 or more": the per-item rule tests price x quantity,
so a line of three 8.00 candles (24.00) gets its wrap free, on every candle (a cart line
of quantity 3 is three units, each with its own wrap). Needs per-item additional costs
and quantities above one.
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
                where=lambda item: item.price * item.quantity >= 20,  # the bug: item.price >= 20
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
