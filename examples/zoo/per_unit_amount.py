"""Planted bug: a per-item discount over what it should be, under flattening.

"5 off each line of two or more" was written as a per-item discount of 5. Talon.One
flattens carts (as the sandbox does by default): an item of quantity 3 is three units,
each getting 5 off, so the line gets 15.
"""

from decimal import Decimal

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    bulk = sb.campaign("Bulk")
    bulk.rule(
        "5 off lines of two or more",
        then=[e.set_discount_per_item("Bulk 5", amount=5, where=lambda item: item.quantity >= 2)],
    )
    return sb


def property_a_line_gets_at_most_5_off(state: IntegrationState) -> bool:
    """The bulk discount is at most 5 per cart line."""
    per_line: dict[int, Decimal] = {}
    for effect in state.effects_of("setDiscountPerItem"):
        line = effect.props["position"]
        per_line[line] = per_line.get(line, Decimal(0)) + effect.props["value"]
    return all(value <= 5 for value in per_line.values())
