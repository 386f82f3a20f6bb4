"""What a condition sees, and what a failing condition read (for ``explain()``)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from sandbox.models import AnySession, CartItem
from sandbox.profiles import CustomerProfile

if TYPE_CHECKING:
    from sandbox.conditions import Condition

__all__ = ["CampaignView", "Context", "Event", "condition_details"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
UPDATED = "talon_session_updated"
"""The event of an evaluation outside the session lifecycle (``sb.evaluate``)."""


@attrs.frozen
class Event:
    """What a rule reads as ``ctx.event``: the event being evaluated.

    A session update is Talon.One's built-in event for it (``talon_session_created``,
    ``talon_session_updated``, ``talon_session_closed``, ...) with the session's
    attributes; ``sb.track_event`` evaluates a custom event with its own type and
    attributes.
    """

    type: str
    attributes: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


class Context:
    """What a condition sees: one session, in one campaign, at one instant.

    ``coupon`` is the campaign's own valid code (``coupon_valid`` says there is
    one); ``coupon_codes`` every code the session sent. ``total`` is the session's
    total (items and additional costs), ``cart_item_total`` the items' alone (price x
    quantity) and ``additional_cost_total`` the costs' (session costs, plus each item's
    costs x its quantity). ``advocate_id`` is the advocate of the session's valid
    referral (``""`` without one); ``event`` the event evaluated (:class:`Event`). No
    field is None: a session without items has ``items == ()``, without a profile
    ``profile_id == ""``, without attributes an empty mapping.
    """

    __slots__ = (
        "additional_cost_total",
        "additional_costs",
        "advocate_id",
        "attributes",
        "campaign",
        "cart_item_total",
        "coupon",
        "coupon_codes",
        "coupon_valid",
        "event",
        "identifiers",
        "items",
        "now",
        "profile",
        "profile_id",
        "referral",
        "referral_code",
        "referral_valid",
        "session",
        "total",
    )

    def __init__(
        self,
        session: AnySession,
        now: datetime,
        profile: CustomerProfile | None = None,
        event: Event | None = None,
    ) -> None:
        self.session = session
        self.total: Decimal = session.effective_total
        self.cart_item_total: Decimal = session.cart_item_total
        self.additional_cost_total: Decimal = session.additional_cost_total
        self.advocate_id = ""
        self.items: tuple[CartItem, ...] = session.cart_items or ()
        self.profile_id: str = session.profile_id or ""
        self.identifiers: tuple[str, ...] = session.identifiers or ()
        attributes = session.attributes
        self.attributes: Mapping[str, Any] = MappingProxyType(attributes) if attributes else _EMPTY
        self.coupon_codes: tuple[str, ...] = session.coupon_codes or ()
        self.referral_code: str = session.referral_code or ""
        costs = session.additional_costs
        self.additional_costs: Mapping[str, Decimal] = (
            MappingProxyType({name: cost.price for name, cost in costs.items()})
            if costs
            else _EMPTY
        )
        self.now = now
        if profile is None:
            profile = (
                CustomerProfile(self.profile_id, 0, now, _EMPTY, last_activity=now)
                if self.profile_id
                else CustomerProfile.anonymous(now)
            )
        self.profile: CustomerProfile = profile
        self.event: Event = event or Event(UPDATED, self.attributes)
        self.campaign: str | None = None
        self.coupon_valid: bool = False
        self.referral_valid: bool = False
        self.coupon: str | None = None
        self.referral: str | None = None

    def for_campaign(self, campaign: str) -> Context:
        """A copy for one campaign; the session-derived fields are computed once per run."""
        ctx = object.__new__(Context)
        for name in _SESSION_SLOTS:
            setattr(ctx, name, getattr(self, name))
        ctx.campaign = campaign
        ctx.coupon_valid = ctx.referral_valid = False
        ctx.coupon = ctx.referral = None
        return ctx

    def __repr__(self) -> str:
        return (
            f"Context(total={self.total}, profile_id={self.profile_id!r}, "
            f"items={len(self.items)}, campaign={self.campaign!r})"
        )


_SESSION_SLOTS = (
    "session",
    "total",
    "cart_item_total",
    "additional_cost_total",
    "advocate_id",
    "event",
    "items",
    "profile_id",
    "identifiers",
    "attributes",
    "coupon_codes",
    "referral_code",
    "additional_costs",
    "now",
    "profile",
)


class CampaignView:
    """The context as one campaign's conditions saw it, kept cheaply: the run's shared
    context (its session-derived fields never change during a run) and the campaign's
    own four fields. :meth:`context` rebuilds it when a failure's details are read."""

    __slots__ = ("base", "campaign", "coupon", "coupon_valid", "referral", "referral_valid")

    def __init__(self, base: Context) -> None:
        self.base = base
        self.campaign = base.campaign
        self.coupon_valid, self.coupon = base.coupon_valid, base.coupon
        self.referral_valid, self.referral = base.referral_valid, base.referral

    def context(self) -> Context:
        ctx = self.base.for_campaign(self.campaign or "")
        ctx.coupon_valid, ctx.coupon = self.coupon_valid, self.coupon
        ctx.referral_valid, ctx.referral = self.referral_valid, self.referral
        return ctx


# ---------------------------------------------------------------------------
# What a failing condition read


class _Recorder:
    """Wraps a context to record what a failing condition read, for its details."""

    def __init__(self, ctx: Context) -> None:
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "seen", {})

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._ctx, name)
        if name == "attributes":
            return _RecordingMapping(value, self.seen)
        if name == "profile":
            return _RecordingProfile(value, self.seen)
        if name == "items":
            self.seen["items"] = _Shown(
                "["
                + ", ".join(
                    f"{i.quantity} x {i.sku}" + (f" ({i.category})" if i.category else "")
                    for i in value
                )
                + "]"
            )
        elif name != "session":
            self.seen[name] = value
        return value


class _Shown(str):
    """A summary that explain() shows as is, without quotes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class _RecordingMapping(Mapping[str, Any]):
    def __init__(
        self, data: Mapping[str, Any], seen: dict[str, Any], label: str = "attributes"
    ) -> None:
        self._data, self._seen, self._label = data, seen, label

    def __getitem__(self, key: str) -> Any:
        self._seen[f"{self._label}[{key!r}]"] = self._data.get(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._seen[f"{self._label}[{key!r}]"] = self._data.get(key, default)
        return self._data.get(key, default)

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._seen[f"{key!r} in {self._label}"] = key in self._data
        return key in self._data


class _RecordingProfile:
    """``ctx.profile`` for a failing condition's details: what of the profile it read."""

    def __init__(self, profile: CustomerProfile, seen: dict[str, Any]) -> None:
        self._profile, self._seen = profile, seen

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._profile, name)
        if name == "attributes":
            return _RecordingMapping(value, self._seen, "profile.attributes")
        self._seen[f"profile.{name}"] = value
        return value


def condition_details(condition: Condition, ctx: Context) -> str:
    """A failed condition's description and what it read: ``total >= 50 (saw total=30)``."""
    recorder = _Recorder(ctx)
    with contextlib.suppress(Exception):  # details are best effort; the condition failed already
        condition.fn(recorder)  # type: ignore[arg-type]
    seen = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in recorder.seen.items()
    )
    return f"{condition.description}" + (f" (saw {seen})" if seen else "")
