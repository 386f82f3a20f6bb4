"""Rolling back what a close committed: a cancel or reopen gives back all of it, a
return the returned items' share (Talon.One's ``rollbackCoupon``,
``rollbackReferral`` and ``rollbackDiscount`` effects, and the counters they free).

Pure functions of a stored session; the sandbox applies what they compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from sandbox.codec import from_wire
from sandbox.engine import Settings
from sandbox.errors import Problem, ValidationError
from sandbox.ledger import Charge
from sandbox.models import ReturnedCartItem, describe
from sandbox.sessions import StoredSession
from sandbox.state import Effect
from sandbox.talon import EffectType, LimitAction

__all__ = [
    "CountersWithout",
    "budget_releases",
    "kept_session",
    "minus",
    "reevaluated_shares",
    "resolve_returns",
    "return_shares",
    "returned_items",
    "rollback_effects",
    "rolled_back_discount",
    "sales_left",
]

ZERO = Decimal(0)


def rollback_effects(stored: StoredSession) -> list[Effect]:
    """A cancel's or reopen's effects: each accepted code back, then each discount's
    value not yet rolled back."""
    evaluation = stored.closed_with
    assert evaluation is not None
    effects: list[Effect] = []
    for effect in evaluation.effects:
        if effect.effect_type is EffectType.ACCEPT_COUPON:
            effects.append(
                _rollback_of(effect, EffectType.ROLLBACK_COUPON, {"value": effect.value})
            )
        elif effect.effect_type is EffectType.ACCEPT_REFERRAL:
            effects.append(
                _rollback_of(effect, EffectType.ROLLBACK_REFERRAL, {"value": effect.value})
            )
    left = dict(stored.discounts_left)
    for index, effect in enumerate(evaluation.effects):
        if effect.effect_type.is_discount and left.get(index):
            effects.append(rolled_back_discount(effect, left[index]))
    return effects


def _rollback_of(effect: Effect, kind: EffectType, props: dict[str, Any]) -> Effect:
    return attrs.evolve(effect, effect_type=kind, props=props, condition_index=None)


def rolled_back_discount(effect: Effect, value: Decimal) -> Effect:
    """Talon.One's ``rollbackDiscount`` of (part of) a committed discount."""
    given = effect.props
    props: dict[str, Any] = {"name": given["name"], "value": value}
    if "position" in given:
        props["cartItemPosition"] = given["position"]
        if "subPosition" in given:
            props["cartItemSubPosition"] = given["subPosition"]
    if "additionalCostId" in given:
        props["additionalCostId"] = given["additionalCostId"]
        props["additionalCost"] = given["additionalCost"]
        props["scope"] = "additionalCosts"
    elif effect.effect_type is EffectType.SET_DISCOUNT_PER_ITEM:
        props["scope"] = "price"
    else:
        props["scope"] = "sessionTotal"
    return _rollback_of(effect, EffectType.ROLLBACK_DISCOUNT, props)


def return_shares(
    effects: Sequence[Effect],
    left: Mapping[int, Decimal],
    cart: Sequence[Any],
    before: Sequence[int],
    back: Sequence[int],
    settings: Settings,
) -> list[tuple[int, Decimal]]:
    """(effect index, value to roll back) for each discount a return touches.

    A per-item discount gives back the returned units' share of what is left of
    it; a session discount the returned value's share of what is left of the
    cart. The last units, or the whole cart, take exactly what is left, so the
    rounded shares always add up to the discount.
    """
    quantum = Decimal(1).scaleb(-settings.precision)
    remaining_value = sum(
        (i.line_total * (i.quantity - r) / i.quantity for i, r in zip(cart, before, strict=True)),
        ZERO,
    )
    returned_value = sum(
        (i.line_total * b / i.quantity for i, b in zip(cart, back, strict=True)), ZERO
    )
    everything = all(r + b == i.quantity for r, b, i in zip(before, back, cart, strict=True))
    shares = []
    for index, value in left.items():
        effect = effects[index]
        if effect.effect_type.is_item_discount:
            pos = effect.props["position"]
            if not back[pos]:
                continue
            sub = effect.props.get("subPosition")
            if sub is not None:
                # A flattened cart: units are returned in subPosition order, each whole.
                if before[pos] <= sub < before[pos] + back[pos]:
                    shares.append((index, value))
                continue
            units_left = cart[pos].quantity - before[pos]
            last = back[pos] == units_left
            share = value if last else value * back[pos] / units_left
        elif effect.effect_type is EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST:
            # A session cost (shipping) belongs to no item: only returning everything
            # gives its discount back.
            if not everything:
                continue
            share = value
        else:
            if not returned_value or not remaining_value:
                continue
            share = value if everything else value * returned_value / remaining_value
        share = min(share.quantize(quantum, settings.rounding), value)
        if share:
            shares.append((index, share))
    return shares


class CountersWithout(Mapping[Any, Decimal]):
    """Live counters as they were without some committed charges (a session's own
    redemptions, when its kept items are evaluated again on a return)."""

    def __init__(self, live: Mapping[Any, Decimal], charges: Sequence[Charge]) -> None:
        self.live = live
        self.minus: dict[Any, Decimal] = {}
        for charge in charges:
            self.minus[charge.key] = self.minus.get(charge.key, ZERO) + charge.amount

    def get(self, key: Any, default: Any = ZERO) -> Any:
        found = self.live.get(key)
        if found is None:
            return default
        return found - self.minus.get(key, ZERO)

    def __getitem__(self, key: Any) -> Decimal:
        return self.live[key] - self.minus.get(key, ZERO)

    def __iter__(self) -> Any:
        return iter(self.live)

    def __len__(self) -> int:
        return len(self.live)


def kept_session(stored: StoredSession) -> Any:
    """The session of a return's re-evaluation: what the customer kept."""
    from sandbox.models import replace as replace_model

    session = stored.session
    items = tuple(
        replace_model(
            item, quantity=item.quantity - back, returned_quantity=None, remaining_quantity=None
        )
        for item, back in zip(session.cart_items or (), stored.returned, strict=True)
        if item.quantity > back
    )
    return replace_model(session, cart_items=items)


def reevaluated_shares(
    effects: Sequence[Effect],
    left: Mapping[int, Decimal],
    shares: Sequence[tuple[int, Decimal]],
    campaigns: frozenset[int],
    again: Sequence[Effect],
) -> list[tuple[int, Decimal]]:
    """A return's rollbacks when campaigns were evaluated again on the kept items
    (``runRuleEngine``): each discount of those campaigns gives back at least its share,
    and as much more as the kept items no longer earn (a threshold no longer met gives
    back all of it). A discount is never raised by a return."""
    earned: dict[tuple[int, str], Decimal] = {}
    for effect in again:
        if effect.effect_type.is_discount and effect.campaign_id in campaigns:
            key = (effect.campaign_id, effect.props["name"])
            earned[key] = earned.get(key, ZERO) + effect.props["value"]
    base = dict(shares)
    groups: dict[tuple[int, str], list[int]] = {}
    for index in left:
        effect = effects[index]
        if effect.campaign_id in campaigns:
            groups.setdefault((effect.campaign_id, effect.props["name"]), []).append(index)
    for key, indexes in groups.items():
        held = sum((left[i] for i in indexes), ZERO)
        owed = held - earned.get(key, ZERO)
        extra = owed - sum((base.get(i, ZERO) for i in indexes), ZERO)
        for i in indexes:
            if extra <= 0:
                break
            room = left[i] - base.get(i, ZERO)
            more = min(room, extra)
            if more > 0:
                base[i] = base.get(i, ZERO) + more
                extra -= more
    return [(i, v) for i, v in sorted(base.items()) if v]


def sales_left(
    stored: StoredSession, cart: Sequence[Any], returned: Sequence[int], returned_value: Decimal
) -> Decimal:
    """totalSales still counted for a session after a return: the returned items' share
    of the total the session closed with (which is the client's total under strict_total=False)."""
    if all(r == item.quantity for r, item in zip(returned, cart, strict=True)):
        return ZERO
    cart_total = stored.submitted.cart_total
    if not cart_total:
        return stored.sales_left
    share = stored.submitted.effective_total * returned_value / cart_total
    return stored.sales_left - share


def budget_releases(
    committed: Sequence[Charge], rolled_back: Mapping[int, Decimal]
) -> list[Charge]:
    """The money-budget share of rolled-back discounts (counts of effects stay)."""
    return [
        Charge(c.key, rolled_back[c.effect_ref], c.effect_ref)
        for c in committed
        if c.effect_ref is not None
        and c.effect_ref in rolled_back
        and c.key.action == LimitAction.SET_DISCOUNT.value
    ]


def minus(committed: Sequence[Charge], releases: Sequence[Charge]) -> tuple[Charge, ...]:
    """What stays committed after ``releases``."""
    out = []
    taken = {(r.key, r.effect_ref): r.amount for r in releases}
    for c in committed:
        amount = c.amount - taken.pop((c.key, c.effect_ref), ZERO)
        if amount:
            out.append(attrs.evolve(c, amount=amount))
    return tuple(out)


def returned_items(items: Any) -> list[ReturnedCartItem]:
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ValidationError(
            [
                Problem(
                    "/returnedCartItems",
                    f"must be a list of returned items, got {describe(items)}",
                )
            ],
            subject="return",
        )
    parsed: list[ReturnedCartItem] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        if isinstance(item, ReturnedCartItem):
            parsed.append(item)
            continue
        try:
            parsed.append(from_wire(ReturnedCartItem, item))
        except ValidationError as exc:
            problems.extend(p.within(f"/returnedCartItems/{i}") for p in exc.errors)
    if problems:
        raise ValidationError(problems, subject="return")
    if not parsed:
        raise ValidationError(
            [Problem("/returnedCartItems", "must name at least one item to return")],
            subject="return",
        )
    return parsed


def resolve_returns(
    items: Sequence[ReturnedCartItem], cart: Sequence[Any], returned: Sequence[int]
) -> list[int]:
    back = [0] * len(cart)
    problems: list[Problem] = []
    for i, item in enumerate(items):
        where = f"/returnedCartItems/{i}"
        position = item.position
        if position is None:
            candidates = [
                p
                for p, c in enumerate(cart)
                if c.sku == item.sku and c.quantity - returned[p] - back[p] > 0
            ]
            if not candidates:
                problems.append(
                    Problem(f"{where}/sku", f"no cart item with sku {item.sku!r} is left to return")
                )
                continue
            position = candidates[0]
        elif position >= len(cart):
            problems.append(
                Problem(
                    f"{where}/position", f"the cart has {len(cart)} item(s): no position {position}"
                )
            )
            continue
        elif item.sku is not None and cart[position].sku != item.sku:
            problems.append(
                Problem(
                    f"{where}/sku",
                    f"position {position} holds sku {cart[position].sku!r}, not {item.sku!r}",
                )
            )
            continue
        left = cart[position].quantity - returned[position] - back[position]
        if item.quantity is None and left == 0:
            # No quantity was sent, so the problem is the item named, not a quantity.
            field = "position" if item.position is not None else "sku"
            problems.append(
                Problem(
                    f"{where}/{field}",
                    f"position {position} has no units left to return: all "
                    f"{cart[position].quantity} were returned already",
                )
            )
            continue
        quantity = left if item.quantity is None else item.quantity
        if quantity > left or left == 0:
            problems.append(
                Problem(
                    f"{where}/quantity",
                    f"position {position} has {left} unit(s) left to return, asked {quantity}",
                )
            )
            continue
        back[position] += quantity
    if problems:
        raise ValidationError(problems, subject="return")
    return back
