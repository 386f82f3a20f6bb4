"""What a fired rule's effects want, before caps and budgets.

A discount takes its value from a *slot* (the session total, an item or one unit of
it, the session's additional cost, an item's cost) that starts at a *base*; a
``where=`` filter picks the items of a per-item effect; a create effect works out
the code it would make. Amounts are rounded to the currency precision here, once per
effect; caps and budgets come when the effects are applied.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.conditions import NotABoolError, as_bool
from sandbox.effects import (
    AddFreeItem,
    CreateCoupon,
    CreateReferral,
    EffectSpec,
    SetDiscount,
    SetDiscountPerAdditionalCost,
    SetDiscountPerAdditionalCostPerItem,
    SetDiscountPerItem,
    ShowNotification,
    TriggerWebhook,
    UpdateAttribute,
)
from sandbox.engine.context import Context
from sandbox.engine.plan import CampaignPlan, RulePlan
from sandbox.engine.results import CreatedCode
from sandbox.errors import RuleError
from sandbox.models import MAX_MONEY, CartItem, bound_problem, describe

if TYPE_CHECKING:
    from sandbox.engine.run import Run

__all__ = ["Desired", "desire", "generate_code"]

ZERO = Decimal(0)

# Where a discount takes its value from: ("item", position, unit), ("cost", name),
# ("item cost", position, unit, name); None for the session total.
Slot = tuple[Any, ...]


class Desired:
    """An effect a fired rule wants, before caps and budgets.

    ``missing`` says why it cannot be applied at all (an item without the additional
    cost the effect discounts). A plain slotted class: one is made per unit of every
    discounted item.
    """

    __slots__ = (
        "base",
        "created",
        "effect_index",
        "missing",
        "position",
        "props",
        "slot",
        "spec",
        "sub_position",
        "value",
    )

    def __init__(
        self,
        spec: EffectSpec,
        effect_index: int,
        *,
        value: Decimal | None = None,  # discounts: rounded, before any cap
        position: int | None = None,  # per-item discounts
        sub_position: int | None = None,  # per-unit discounts of a flattened cart
        slot: Slot | None = None,
        base: Decimal = ZERO,
        props: dict[str, Any] | None = None,
        missing: str | None = None,
        created: CreatedCode | None = None,
    ) -> None:
        self.spec = spec
        self.effect_index = effect_index
        self.value = value
        self.position = position
        self.sub_position = sub_position
        self.slot = slot
        self.base = base
        self.props = props
        self.missing = missing
        self.created = created


def _to_amount(value: Any, campaign: str, rule: str, index: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise RuleError(
            campaign,
            rule,
            f"effect {index} amount",
            problem=f"returned {describe(value)}: the amount callable must return a number",
        )
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise RuleError(
            campaign,
            rule,
            f"effect {index} amount",
            problem=f"returned {describe(value)}: an amount must be a finite number >= 0",
        )
    out_of_bounds = bound_problem(amount, MAX_MONEY)
    if out_of_bounds is not None:
        raise RuleError(
            campaign,
            rule,
            f"effect {index} amount",
            problem=f"returned an amount out of bounds: it {out_of_bounds}",
        )
    return amount


def _amount_of(amount: Any, ctx: Context, campaign: str, rule: str, index: int) -> Decimal:
    if not callable(amount):
        assert isinstance(amount, Decimal)
        return amount
    try:
        value = amount(ctx)
    except Exception as exc:
        raise RuleError(campaign, rule, f"effect {index} amount", exc) from exc
    return _to_amount(value, campaign, rule, index)


def _matches(spec: Any, item: CartItem, campaign: str, rule: str, index: int) -> bool:
    where = spec.where
    if where is None:
        return True
    try:
        result = where(item)
    except Exception as exc:
        raise RuleError(campaign, rule, f"effect {index} where=", exc) from exc
    if result is True or result is False:
        return result
    try:
        return as_bool(result)
    except NotABoolError as exc:
        raise RuleError(
            campaign,
            rule,
            f"effect {index} where=",
            problem=f"{exc}: where= must return True or False for each item",
        ) from None


def _units(flatten: bool, item: CartItem) -> Iterable[int | None]:
    """The units a per-item effect sees: each of them when flattened, else the line."""
    return range(item.quantity) if flatten else (None,)


def desire(run: Run, plan: CampaignPlan, rule: RulePlan, ctx: Context) -> Iterator[Desired]:
    """The effects ``rule`` wants, in its order."""
    quantize = run.quantize
    campaign, title = plan.name, rule.title
    for index, spec in enumerate(rule.effects):
        kind = type(spec)
        if kind not in _KINDS:  # a subclass of a spec: dispatch on the spec it extends
            kind = next(k for k in _KINDS if isinstance(spec, k))
        if kind is SetDiscount:
            assert isinstance(spec, SetDiscount)
            if spec.percent is not None:
                raw = run.total * spec.percent / 100
            else:
                raw = _amount_of(spec.amount, ctx, campaign, title, index)
            yield Desired(spec, index, value=quantize(raw))
        elif kind is SetDiscountPerItem:
            assert isinstance(spec, SetDiscountPerItem)
            flatten = run.flatten
            for position, item in enumerate(ctx.items):
                if not _matches(spec, item, campaign, title, index):
                    continue
                price = item.price or ZERO
                for sub in _units(flatten, item):
                    base = price if sub is not None else item.line_total
                    if spec.percent is not None:
                        raw = base * spec.percent / 100
                    else:
                        # Per unit; the cap at the unit (or line) happens when applied, so a
                        # capped item discount reports desiredValue.
                        amount = _amount_of(spec.amount, ctx, campaign, title, index)
                        raw = amount if sub is not None else amount * item.quantity
                    yield Desired(
                        spec,
                        index,
                        value=quantize(raw),
                        position=position,
                        sub_position=sub,
                        slot=("item", position, sub),
                        base=base,
                    )
        elif kind is SetDiscountPerAdditionalCost:
            assert isinstance(spec, SetDiscountPerAdditionalCost)
            cost = (ctx.session.additional_costs or {}).get(spec.cost)
            if cost is None:
                yield Desired(
                    spec, index, missing=f"the session has no additional cost {spec.cost!r}"
                )
                continue
            if spec.percent is not None:
                raw = cost.price * spec.percent / 100
            else:
                raw = _amount_of(spec.amount, ctx, campaign, title, index)
            yield Desired(
                spec, index, value=quantize(raw), slot=("cost", spec.cost), base=cost.price
            )
        elif kind is SetDiscountPerAdditionalCostPerItem:
            assert isinstance(spec, SetDiscountPerAdditionalCostPerItem)
            yield from _per_item_cost(run, campaign, title, ctx, index, spec)
        elif kind is CreateCoupon or kind is CreateReferral:
            assert isinstance(spec, CreateCoupon | CreateReferral)
            yield _desired_code(run, plan, rule, ctx, index, spec)
        elif kind is AddFreeItem:
            assert isinstance(spec, AddFreeItem)
            yield Desired(
                spec,
                index,
                props={"sku": spec.sku, "name": spec.name, "desiredQuantity": spec.quantity},
            )
        elif kind is ShowNotification:
            assert isinstance(spec, ShowNotification)
            yield Desired(
                spec,
                index,
                props={
                    "notificationType": spec.notification_type,
                    "title": spec.title,
                    "body": spec.body,
                },
            )
        elif kind is UpdateAttribute:
            assert isinstance(spec, UpdateAttribute)
            yield Desired(spec, index, props={"path": spec.path, "value": spec.value})
        elif kind is TriggerWebhook:
            assert isinstance(spec, TriggerWebhook)
            yield Desired(
                spec, index, props={"webhookId": spec.webhook_id, "webhookName": spec.webhook_name}
            )


_KINDS = (
    SetDiscount,
    SetDiscountPerItem,
    SetDiscountPerAdditionalCost,
    SetDiscountPerAdditionalCostPerItem,
    CreateCoupon,
    CreateReferral,
    AddFreeItem,
    ShowNotification,
    UpdateAttribute,
    TriggerWebhook,
)


def _per_item_cost(
    run: Run,
    campaign: str,
    title: str,
    ctx: Context,
    index: int,
    spec: SetDiscountPerAdditionalCostPerItem,
) -> Iterator[Desired]:
    quantize = run.quantize
    matching = [
        (position, item)
        for position, item in enumerate(ctx.items)
        if _matches(spec, item, campaign, title, index)
    ]
    lacking = [p for p, item in matching if spec.cost not in (item.additional_costs or {})]
    if lacking:
        yield Desired(
            spec,
            index,
            missing=f"cart item(s) {', '.join(map(str, lacking))} have no additional "
            f"cost {spec.cost!r}",
        )
        return
    for position, item in matching:
        unit_cost = (item.additional_costs or {})[spec.cost].price
        for sub in _units(run.flatten, item):
            base = unit_cost if sub is not None else unit_cost * item.quantity
            if spec.percent is not None:
                raw = base * spec.percent / 100
            else:
                amount = _amount_of(spec.amount, ctx, campaign, title, index)
                raw = amount if sub is not None else amount * item.quantity
            yield Desired(
                spec,
                index,
                value=quantize(raw),
                position=position,
                sub_position=sub,
                slot=("item cost", position, sub, spec.cost),
                base=base,
            )


_CODE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _generated(run: Run, pattern: str, seed: str) -> str:
    """A code from ``pattern`` (``#`` = a character of A-Z0-9), the same for the same
    session and rule every time, and not one the sandbox already has."""
    world = run.world
    return generate_code(
        pattern, seed, world.normalize, lambda c: c in world.coupons or c in world.referrals
    )


def generate_code(
    pattern: str, seed: str, normalize: Callable[[str], str], taken: Callable[[str], bool]
) -> str:
    """The first code from ``pattern`` (``#`` = a character of A-Z0-9) drawn from ``seed``
    (the same seed, the same code) that is not ``taken``."""
    for attempt in itertools.count():
        digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
        chars = iter(_CODE_CHARS[b % len(_CODE_CHARS)] for b in digest * 4)
        code = normalize("".join(next(chars) if ch == "#" else ch for ch in pattern))
        if not taken(code):
            return code
    raise AssertionError("unreachable")  # pragma: no cover


def _desired_code(
    run: Run,
    plan: CampaignPlan,
    rule: RulePlan,
    ctx: Context,
    index: int,
    spec: CreateCoupon | CreateReferral,
) -> Desired:
    """What a create effect would make: the code, where, for whom (or why it cannot)."""
    kind = "coupon" if isinstance(spec, CreateCoupon) else "referral"
    target_id = plan.id
    if spec.campaign is not None:
        target_id = run.world.campaigns_by_name[spec.campaign].id
    if spec.value is None:
        seed = f"{run.world.session_id}:{target_id}:{plan.id}:{rule.index}:{index}"
        code = _generated(run, spec.pattern, seed)
    else:
        value = spec.value
        if callable(value):
            try:
                value = value(ctx)
            except Exception as exc:
                raise RuleError(plan.name, rule.title, f"effect {index} value", exc) from exc
            problem = _code_problem(value)
            if problem is not None:
                raise RuleError(
                    plan.name,
                    rule.title,
                    f"effect {index} value",
                    problem=f"returned {describe(value)}: {problem}",
                )
        code = run.world.normalize(value)
        if code in run.world.coupons or code in run.world.referrals:
            return Desired(spec, index, missing=f"the {kind} code {code!r} already exists")
    who = "recipient" if kind == "coupon" else "advocate"
    owner = spec.recipient if isinstance(spec, CreateCoupon) else spec.advocate
    if callable(owner):
        try:
            owner = owner(ctx)
        except Exception as exc:
            raise RuleError(plan.name, rule.title, f"effect {index} {who}", exc) from exc
        if owner is None or owner == "":
            return Desired(spec, index, missing=f"{who}=... gave no profile for the created {kind}")
        if not isinstance(owner, str) or len(owner) > 1000:
            raise RuleError(
                plan.name,
                rule.title,
                f"effect {index} {who}",
                problem=f"returned {describe(owner)}: a profile id must be a string",
            )
    owner = owner or run.profile_id
    if owner is None:
        return Desired(
            spec, index, missing=f"a created {kind} needs a {who}: the session has no profile"
        )
    expiry = spec.expiry_date
    if spec.valid_days is not None:
        expiry = _days_after(run.now, spec.valid_days)
    made = CreatedCode(
        kind,
        code,
        target_id,
        owner,
        friend=spec.friend if isinstance(spec, CreateReferral) else None,
        usage_limit=spec.usage_limit,
        start_date=spec.start_date,
        expiry_date=expiry,
    )
    props = {"value": code, "profileId": owner} if kind == "coupon" else {"value": code}
    return Desired(spec, index, props=props, created=made)


def _days_after(moment: datetime, days: int) -> datetime:
    """``days`` after ``moment``; past the year 9999 (in UTC), the last moment of it:
    the sandbox clock cannot go further, so a code expiring then is valid as long."""
    try:
        later = moment + timedelta(days=days)
        later.astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)
    return later


def _code_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "a code must be a string"
    if not 4 <= len(value) <= 100 or value != value.strip() or not value.isprintable():
        return "a code must have 4 to 100 printable characters and no spaces at its ends"
    return None


def quantizer(quantum: Decimal, rounding: str) -> Callable[[Decimal], Decimal]:
    """Rounding to the currency precision, applied once per effect."""
    return functools.partial(Decimal.quantize, exp=quantum, rounding=rounding)
