"""Planted bug: free shipping judged on a total that includes the shipping.

"Shipping is free when your items come to 75 or more": the rule compares `ctx.total`, which
in a V2 session is the items and the additional costs together. A cart of 70.00 with 5.99
shipping reaches 75.99 and ships free. Only sessions that carry an additional cost show it.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    shipping = sb.campaign("Free shipping")
    shipping.rule(
        "free shipping from 75 of items",
        when=[lambda ctx: ctx.total >= 75],  # the bug: ctx.cart_item_total >= 75
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    return sb


def property_free_shipping_only_from_75_of_items(state: IntegrationState) -> bool:
    """Shipping is free only when the items alone come to 75 or more."""
    free = any(e.props.get("additionalCost") == "shipping" for e in state.effects)
    return not free or state.session.cart_item_total >= 75
