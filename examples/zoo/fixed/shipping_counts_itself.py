"""Fixed twin of `../shipping_counts_itself.py`: the rule compares the items' total, `ctx.cart_item_total`.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    shipping = sb.campaign("Free shipping")
    shipping.rule(
        "free shipping from 75 of items",
        when=[lambda ctx: ctx.cart_item_total >= 75],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    return sb


def property_free_shipping_only_from_75_of_items(state: IntegrationState) -> bool:
    """Shipping is free only when the items alone come to 75 or more."""
    free = any(e.props.get("additionalCost") == "shipping" for e in state.effects)
    return not free or state.session.cart_item_total >= 75
