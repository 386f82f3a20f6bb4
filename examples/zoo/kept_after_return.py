"""Planted bug: a threshold discount kept after a return takes the cart below it.

"15 off carts of 100 or more" is given at close. A customer returns most of the cart;
the return rolls back only the returned share of the 15, so someone who keeps 40 of a
100 cart keeps 9 off, money the shop did not mean to give. The property looks at the
stored session after each step of a lifecycle (close, return, ...).
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    big = sb.campaign("Big basket")
    big.rule("15 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big 15", 15)])
    return sb


def property_no_discount_kept_below_the_threshold(state: IntegrationState, sb: Sandbox) -> bool:
    """After a return, what is kept still earns any discount kept."""
    if state.action != "return":
        return True
    stored = sb.get_session(state.session_id)
    cart = stored.submitted.cart_items or ()
    kept = sum(
        (
            (item.price or Decimal(0)) * (item.quantity - back)
            for item, back in zip(cart, stored.returned, strict=True)
        ),
        Decimal(0),
    )
    kept_discount = sum((value for _, value in stored.discounts_left), Decimal(0))
    return kept >= 100 or kept_discount == 0
