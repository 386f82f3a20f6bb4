"""Fixed twin of `../member_price_key.py`: both campaigns read `memberPrice`.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    member = sb.campaign("Member prices")
    member.rule(
        "10% on member-price items",
        when=[c.profile_present],
        then=[
            e.set_discount_per_item(
                "Member 10%",
                percent=10,
                where=lambda item: (item.attributes or {}).get("memberPrice"),
            )
        ],
    )
    sale = sb.campaign("Sitewide sale")
    sale.rule(
        "15% on everything not on member price",
        when=[],
        then=[
            e.set_discount_per_item(
                "Sale 15%",
                percent=15,
                where=lambda item: not (item.attributes or {}).get("memberPrice"),
            )
        ],
    )
    return sb


def property_no_unit_gets_two_item_discounts(state: IntegrationState) -> bool:
    """No unit of a cart item gets both the member price and the sale."""
    units = [
        (e.props["position"], e.props.get("subPosition"))
        for e in state.effects
        if e.effect_type.value == "setDiscountPerItem"
    ]
    return len(units) == len(set(units))
