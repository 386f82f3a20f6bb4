"""Planted bug: two campaigns that spell an item attribute two ways.

Items on member price (item attribute `memberPrice`) get 10% for members; the sitewide
sale gives 15% on every other item. The sale's exclusion reads `member_price`, a key the
catalogue never sends, so member-price items get both discounts. Needs cart items that
carry attributes.
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
                # the bug: the catalogue's key is "memberPrice"
                where=lambda item: not (item.attributes or {}).get("member_price"),
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
