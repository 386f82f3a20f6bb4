"""Gold-tier customers get free shipping; everyone else from a basket of 100.

The tier is a customer-profile attribute (`sb.update_profile("p1", {"attributes":
{"tier": "gold"}})`, Talon.One's updateCustomerProfileV2); sessions send their shipping
as an additional cost (`"additionalCosts": {"shipping": {"price": 4.99}}`).
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    shipping = sb.group("Shipping", mode="listOrder")

    gold = sb.campaign("Gold shipping", group=shipping)
    gold.rule(
        "free shipping for gold",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )

    big = sb.campaign("Big basket shipping", group=shipping)
    big.rule(
        "free shipping from 100",
        when=[c.named("cart items of 100 or more", lambda ctx: ctx.session.cart_item_total >= 100)],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    return sb


def property_shipping_is_free_at_most_once(state: IntegrationState) -> bool:
    """Two free-shipping campaigns never both discount the same shipping."""
    costs = [x for x in state.effects if x.effect_type.value == "setDiscountPerAdditionalCost"]
    return len(costs) <= 1
