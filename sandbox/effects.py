"""Rule effects: what a rule does when its conditions hold.

Each builder returns a frozen spec checked at definition time; the engine
turns it into a Talon.One effect (``setDiscount``, ``setDiscountPerItem``,
...). ``acceptCoupon``, ``rejectCoupon``, ``acceptReferral``,
``rejectReferral`` and the ``rollback*`` effects are emitted by the engine,
never by rules.

>>> from sandbox import effects as e
>>> e.set_discount("10% off", percent=10)
set_discount('10% off', percent=Decimal('10'))
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from sandbox.checks import check_code_shape, parse_time
from sandbox.errors import DefinitionError
from sandbox.models import MAX_MONEY, CartItem, bound_problem, json_value, to_json
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.engine import Context

__all__ = [
    "AddFreeItem",
    "CreateCoupon",
    "CreateReferral",
    "EffectSpec",
    "SetDiscount",
    "SetDiscountPerAdditionalCost",
    "SetDiscountPerAdditionalCostPerItem",
    "SetDiscountPerItem",
    "ShowNotification",
    "TriggerWebhook",
    "UpdateAttribute",
    "add_free_item",
    "create_coupon",
    "create_referral",
    "set_discount",
    "set_discount_per_additional_cost",
    "set_discount_per_additional_cost_per_item",
    "set_discount_per_item",
    "show_notification",
    "trigger_webhook",
    "update_attribute",
]

Amount: TypeAlias = "Decimal | int | float | str | Callable[[Context], Any]"


def _amount(value: Any, what: str) -> Decimal | Callable[[Context], Any]:
    if callable(value):
        fn: Callable[[Context], Any] = value  # computed per evaluation; checked then (engine)
        return fn
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise DefinitionError(
            f"{what} must be a number or a callable of the context, got {value!r}"
        )
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        raise DefinitionError(f"{what} must be a number, got {value!r}") from None
    if not result.is_finite() or result < 0:
        raise DefinitionError(f"{what} must be a finite number >= 0, got {value!r}")
    out_of_bounds = bound_problem(result, MAX_MONEY)
    if out_of_bounds is not None:
        raise DefinitionError(f"{what} {out_of_bounds}")
    return result


def _percent(value: Any, what: str) -> Decimal:
    result = _amount(value, what)
    if callable(result) or result > 100:
        raise DefinitionError(f"{what} must be a number from 0 to 100, got {value!r}")
    return result


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _one_of_amount_percent(
    builder: str, amount: Any, percent: Any
) -> tuple[Decimal | Callable[[Context], Any] | None, Decimal | None]:
    if (amount is None) == (percent is None):
        raise DefinitionError(
            f"{builder}() takes exactly one of amount=... or percent=..., "
            f"got amount={amount!r}, percent={percent!r}"
        )
    if percent is not None:
        return None, _percent(percent, f"{builder}(percent=...)")
    return _amount(amount, f"{builder}(amount=...)"), None


def _show(spec: Any, fields: tuple[str, ...], first: str) -> str:
    head = repr(getattr(spec, first))
    rest = [f"{f}={getattr(spec, f)!r}" for f in fields if getattr(spec, f) is not None]
    return f"{spec.builder}({', '.join([head, *rest])})"


@attrs.frozen(repr=False)
class SetDiscount:
    """A session discount: a fixed ``amount`` or a ``percent`` of the total."""

    name: str
    amount: Decimal | Callable[[Context], Any] | None = None
    percent: Decimal | None = None
    effect_type = EffectType.SET_DISCOUNT
    builder = "set_discount"

    def __repr__(self) -> str:
        return _show(self, ("amount", "percent"), "name")


@attrs.frozen(repr=False)
class SetDiscountPerItem:
    """One discount per cart item matching ``where`` (all items without it).

    ``percent`` is of price x quantity; a fixed ``amount`` is per unit.
    """

    name: str
    amount: Decimal | Callable[[Context], Any] | None = None
    percent: Decimal | None = None
    where: Callable[[CartItem], Any] | None = None
    effect_type = EffectType.SET_DISCOUNT_PER_ITEM
    builder = "set_discount_per_item"

    def __repr__(self) -> str:
        return _show(self, ("amount", "percent", "where"), "name")


@attrs.frozen(repr=False)
class SetDiscountPerAdditionalCost:
    """A discount on one of the session's additional costs (``additionalCosts``).

    ``percent`` is of the cost's price; the discount never takes it below zero.
    A session without that cost fails the rule at this effect.
    """

    name: str
    cost: str
    amount: Decimal | Callable[[Context], Any] | None = None
    percent: Decimal | None = None
    effect_type = EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST
    builder = "set_discount_per_additional_cost"

    def __repr__(self) -> str:
        return _show(self, ("cost", "amount", "percent"), "name")


@attrs.frozen(repr=False)
class SetDiscountPerAdditionalCostPerItem:
    """A discount on an additional cost of each cart item matching ``where``.

    Per unit when the cart is flattened, per line otherwise; a fixed ``amount``
    is per unit. Talon.One: "If one or more items do not have an additional
    cost, the rule will fail", so a matching item without ``cost`` fails it.
    """

    name: str
    cost: str
    amount: Decimal | Callable[[Context], Any] | None = None
    percent: Decimal | None = None
    where: Callable[[CartItem], Any] | None = None
    effect_type = EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST_PER_ITEM
    builder = "set_discount_per_additional_cost_per_item"

    def __repr__(self) -> str:
        return _show(self, ("cost", "amount", "percent", "where"), "name")


@attrs.frozen(repr=False)
class CreateCoupon:
    """``createCoupon``: a new coupon for the session's profile (or ``recipient``).

    ``value`` is the code, or a callable of the context giving it; without one,
    ``pattern`` generates it (``#`` is a random character of ``A-Z0-9``, chosen
    deterministically from the session, so a dry run and the real update agree).
    ``recipient`` is a profile id or a callable of the context giving one (``lambda
    ctx: ctx.advocate_id`` rewards the referral's advocate); a callable answering
    ``""`` or None leaves the coupon uncreated, with the reason in the rule's failure.
    The code exists from the close of the session that created it and stays when
    the session is reopened or cancelled (Talon.One does not roll creation back).
    ``campaign`` names the campaign to create it in (default: the rule's own).
    """

    value: str | Callable[[Context], Any] | None = None
    pattern: str = "####-####"
    recipient: str | Callable[[Context], Any] | None = None
    usage_limit: int = 1
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    valid_days: int | None = None
    campaign: str | None = None
    effect_type = EffectType.COUPON_CREATED
    builder = "create_coupon"

    def __repr__(self) -> str:
        return _show(
            self,
            ("pattern", "recipient", "usage_limit", "valid_days", "campaign"),
            "value",
        )


@attrs.frozen(repr=False)
class CreateReferral:
    """``createReferral``: a new referral code whose advocate is the session's profile
    (or ``advocate``: a profile id or a callable of the context, as
    :class:`CreateCoupon`'s ``recipient``).

    ``value``, ``pattern`` and ``campaign`` as for :class:`CreateCoupon`;
    ``friend`` limits it to one friend.
    """

    value: str | Callable[[Context], Any] | None = None
    pattern: str = "REF-######"
    friend: str | None = None
    usage_limit: int = 0
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    valid_days: int | None = None
    campaign: str | None = None
    advocate: str | Callable[[Context], Any] | None = None
    effect_type = EffectType.REFERRAL_CREATED
    builder = "create_referral"

    def __repr__(self) -> str:
        return _show(
            self,
            ("pattern", "advocate", "friend", "usage_limit", "valid_days", "campaign"),
            "value",
        )


@attrs.frozen(repr=False)
class AddFreeItem:
    sku: str
    name: str
    quantity: int = 1
    effect_type = EffectType.ADD_FREE_ITEM
    builder = "add_free_item"

    def __repr__(self) -> str:
        return _show(self, ("name", "quantity"), "sku")


@attrs.frozen(repr=False)
class ShowNotification:
    title: str
    body: str
    notification_type: str = "Info"
    effect_type = EffectType.SHOW_NOTIFICATION
    builder = "show_notification"

    def __repr__(self) -> str:
        return _show(self, ("body", "notification_type"), "title")


@attrs.frozen(repr=False)
class UpdateAttribute:
    path: str
    value: Any
    effect_type = EffectType.UPDATE_ATTRIBUTE
    builder = "update_attribute"

    def __repr__(self) -> str:
        return _show(self, ("value",), "path")


@attrs.frozen(repr=False)
class TriggerWebhook:
    webhook_id: int
    webhook_name: str
    effect_type = EffectType.TRIGGER_WEBHOOK
    builder = "trigger_webhook"

    def __repr__(self) -> str:
        return _show(self, ("webhook_name",), "webhook_id")


EffectSpec: TypeAlias = (
    SetDiscount
    | SetDiscountPerItem
    | SetDiscountPerAdditionalCost
    | SetDiscountPerAdditionalCostPerItem
    | CreateCoupon
    | CreateReferral
    | AddFreeItem
    | ShowNotification
    | UpdateAttribute
    | TriggerWebhook
)
EFFECT_SPECS = (
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


def set_discount(name: str, amount: Amount | None = None, *, percent: Any = None) -> SetDiscount:
    """``setDiscount``: ``amount`` off the session, or ``percent`` of its total.

    A later discount with the same name overwrites an earlier one (Talon.One).
    ``amount`` may be a callable of the context, e.g. ``lambda ctx: ctx.total / 10``.
    """
    fixed, pct = _one_of_amount_percent("set_discount", amount, percent)
    return SetDiscount(_name(name, "set_discount(name)"), fixed, pct)


def set_discount_per_item(
    name: str,
    *,
    amount: Amount | None = None,
    percent: Any = None,
    where: Callable[[CartItem], Any] | None = None,
) -> SetDiscountPerItem:
    """``setDiscountPerItem``: one effect per item position matching ``where``.

    >>> e = set_discount_per_item("shoes", percent=20, where=lambda item: item.category == "shoes")
    """
    fixed, pct = _one_of_amount_percent("set_discount_per_item", amount, percent)
    if where is not None and not callable(where):
        raise DefinitionError(
            f"set_discount_per_item(where=...) must be a callable taking a CartItem, got {where!r}"
        )
    return SetDiscountPerItem(_name(name, "set_discount_per_item(name)"), fixed, pct, where)


def _cost_name(value: Any, builder: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise DefinitionError(
            f"{builder}(cost=...) must name an additional cost such as 'shipping', got {value!r}"
        )
    return value


def set_discount_per_additional_cost(
    name: str, *, cost: str, amount: Amount | None = None, percent: Any = None
) -> SetDiscountPerAdditionalCost:
    """``setDiscountPerAdditionalCost``: ``amount`` or ``percent`` off the session's ``cost``.

    >>> set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)
    set_discount_per_additional_cost('Free shipping', cost='shipping', percent=Decimal('100'))
    """
    builder = "set_discount_per_additional_cost"
    fixed, pct = _one_of_amount_percent(builder, amount, percent)
    return SetDiscountPerAdditionalCost(
        _name(name, f"{builder}(name)"), _cost_name(cost, builder), fixed, pct
    )


def set_discount_per_additional_cost_per_item(
    name: str,
    *,
    cost: str,
    amount: Amount | None = None,
    percent: Any = None,
    where: Callable[[CartItem], Any] | None = None,
) -> SetDiscountPerAdditionalCostPerItem:
    """``setDiscountPerAdditionalCostPerItem``: off each matching item's ``cost``."""
    builder = "set_discount_per_additional_cost_per_item"
    fixed, pct = _one_of_amount_percent(builder, amount, percent)
    if where is not None and not callable(where):
        raise DefinitionError(
            f"{builder}(where=...) must be a callable taking a CartItem, got {where!r}"
        )
    return SetDiscountPerAdditionalCostPerItem(
        _name(name, f"{builder}(name)"), _cost_name(cost, builder), fixed, pct, where
    )


_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-#")


def _code_or_pattern(builder: str, value: Any, pattern: Any) -> tuple[Any, str]:

    if value is not None and not callable(value):
        check_code_shape(value, builder.removeprefix("create_"), f"{builder}(value=...)")
    if not isinstance(pattern, str) or not 3 <= len(pattern) <= 100:
        raise DefinitionError(
            f"{builder}(pattern=...) must be a string of 3 to 100 characters, got {pattern!r}"
        )
    if not set(pattern) <= _PATTERN_CHARS or "#" not in pattern:
        raise DefinitionError(
            f"{builder}(pattern=...) uses letters, digits, '_', '-' and at least one '#' "
            f"(a random character), as Talon.One's code patterns do, got {pattern!r}"
        )
    if len(pattern) < 4:
        raise DefinitionError(
            f"{builder}(pattern=...) must make codes of at least 4 characters, got {pattern!r}"
        )
    return value, pattern


def _validity(builder: str, start: Any, expiry: Any, valid_days: Any) -> tuple[Any, Any, Any]:

    start_at = None if start is None else parse_time(start, f"{builder}(start_date=...)")
    expiry_at = None if expiry is None else parse_time(expiry, f"{builder}(expiry_date=...)")
    if valid_days is not None and (type(valid_days) is not int or valid_days < 1):
        raise DefinitionError(
            f"{builder}(valid_days=...) must be an integer >= 1, got {valid_days!r}"
        )
    if valid_days is not None and expiry_at is not None:
        raise DefinitionError(f"{builder}() takes expiry_date=... or valid_days=..., not both")
    if start_at is not None and expiry_at is not None and expiry_at < start_at:
        raise DefinitionError(f"{builder}(): expiry_date is before start_date")
    return start_at, expiry_at, valid_days


def _usage(builder: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= 999_999:
        raise DefinitionError(
            f"{builder}(usage_limit=...) must be an integer from 0 (unlimited) to 999999, "
            f"got {value!r}"
        )
    return value


def _optional_id(builder: str, what: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 1000):
        raise DefinitionError(f"{builder}({what}=...) must be a profile id, got {value!r}")
    return value


def _profile_or_callable(builder: str, what: str, value: Any) -> Any:
    """A profile id, a callable of the context giving one, or None."""
    if callable(value) and not isinstance(value, str):
        return value
    if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 1000):
        raise DefinitionError(
            f"{builder}({what}=...) must be a profile id or a callable of the context "
            f"(e.g. lambda ctx: ctx.advocate_id), got {value!r}"
        )
    return value


def create_coupon(
    value: str | Callable[[Context], Any] | None = None,
    *,
    pattern: str = "####-####",
    recipient: str | Callable[[Context], Any] | None = None,
    usage_limit: int = 1,
    start_date: Any = None,
    expiry_date: Any = None,
    valid_days: int | None = None,
    campaign: str | None = None,
) -> CreateCoupon:
    """``createCoupon``: reward the session with a code, e.g. for the next order.

    ``recipient`` (default: the session's profile) is a profile id or a callable of
    the context; ``recipient=lambda ctx: ctx.advocate_id`` rewards the advocate of the
    session's referral.

    >>> create_coupon(pattern="NEXT-####", valid_days=30)
    create_coupon(None, pattern='NEXT-####', usage_limit=1, valid_days=30)
    """
    builder = "create_coupon"
    code, shape = _code_or_pattern(builder, value, pattern)
    start, expiry, days = _validity(builder, start_date, expiry_date, valid_days)
    return CreateCoupon(
        code,
        shape,
        _profile_or_callable(builder, "recipient", recipient),
        _usage(builder, usage_limit),
        start,
        expiry,
        days,
        _name(campaign, f"{builder}(campaign)") if campaign is not None else None,
    )


def create_referral(
    value: str | Callable[[Context], Any] | None = None,
    *,
    pattern: str = "REF-######",
    friend: str | None = None,
    usage_limit: int = 0,
    start_date: Any = None,
    expiry_date: Any = None,
    valid_days: int | None = None,
    campaign: str | None = None,
    advocate: str | Callable[[Context], Any] | None = None,
) -> CreateReferral:
    """``createReferral``: a referral code the session's profile (or ``advocate``: a
    profile id or a callable of the context) can share."""
    builder = "create_referral"
    code, shape = _code_or_pattern(builder, value, pattern)
    start, expiry, days = _validity(builder, start_date, expiry_date, valid_days)
    return CreateReferral(
        code,
        shape,
        _optional_id(builder, "friend", friend),
        _usage(builder, usage_limit),
        start,
        expiry,
        days,
        _name(campaign, f"{builder}(campaign)") if campaign is not None else None,
        _profile_or_callable(builder, "advocate", advocate),
    )


def add_free_item(sku: str, name: str | None = None, *, quantity: int = 1) -> AddFreeItem:
    """``addFreeItem``: tell the integration to add ``sku`` for free."""
    if type(quantity) is not int or quantity < 1:
        raise DefinitionError(
            f"add_free_item(quantity=...) must be an integer >= 1, got {quantity!r}"
        )
    sku = _name(sku, "add_free_item(sku)")
    return AddFreeItem(
        sku, _name(name if name is not None else sku, "add_free_item(name)"), quantity
    )


def show_notification(
    title: str, body: str, *, notification_type: str = "Info"
) -> ShowNotification:
    """``showNotification``: a message for the shopper."""
    if notification_type not in ("Info", "Offer", "Error", "Misc"):
        raise DefinitionError(
            "show_notification(notification_type=...) must be one of 'Info', 'Offer', 'Error', "
            f"'Misc', got {notification_type!r}"
        )
    if not isinstance(body, str):
        raise DefinitionError(f"show_notification(body) must be a string, got {body!r}")
    return ShowNotification(_name(title, "show_notification(title)"), body, notification_type)


def update_attribute(path: str, value: Any) -> UpdateAttribute:
    """``updateAttribute``: e.g. ``update_attribute("Session.Attributes.tier", "gold")``.

    ``value`` is any JSON value within the bounds of an attribute (it is written
    back in every answer that carries the effect).
    """
    name = _name(path, "update_attribute(path)")
    problems = list(json_value("value", to_json(value)))
    if problems:
        raise DefinitionError(
            f"update_attribute({name!r}, value): " + "; ".join(p.message for p in problems)
        )
    return UpdateAttribute(name, value)


def trigger_webhook(webhook_id: int, webhook_name: str) -> TriggerWebhook:
    """``triggerWebhook``: informational; the sandbox sends nothing."""
    if type(webhook_id) is not int or webhook_id < 0:
        raise DefinitionError(
            f"trigger_webhook(webhook_id) must be an integer >= 0, got {webhook_id!r}"
        )
    return TriggerWebhook(webhook_id, _name(webhook_name, "trigger_webhook(webhook_name)"))
