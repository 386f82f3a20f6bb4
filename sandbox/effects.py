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
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from sandbox.errors import DefinitionError
from sandbox.models import MAX_MONEY, CartItem, bound_problem
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.engine import Context

__all__ = [
    "AddFreeItem",
    "EffectSpec",
    "SetDiscount",
    "SetDiscountPerItem",
    "ShowNotification",
    "TriggerWebhook",
    "UpdateAttribute",
    "add_free_item",
    "set_discount",
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
    | AddFreeItem
    | ShowNotification
    | UpdateAttribute
    | TriggerWebhook
)
EFFECT_SPECS = (
    SetDiscount,
    SetDiscountPerItem,
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
    """``updateAttribute``: e.g. ``update_attribute("Session.Attributes.tier", "gold")``."""
    return UpdateAttribute(_name(path, "update_attribute(path)"), value)


def trigger_webhook(webhook_id: int, webhook_name: str) -> TriggerWebhook:
    """``triggerWebhook``: informational; the sandbox sends nothing."""
    if type(webhook_id) is not int or webhook_id < 0:
        raise DefinitionError(
            f"trigger_webhook(webhook_id) must be an integer >= 0, got {webhook_id!r}"
        )
    return TriggerWebhook(webhook_id, _name(webhook_name, "trigger_webhook(webhook_name)"))
