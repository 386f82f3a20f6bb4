"""The inventory a sandbox evaluates: campaigns, their coupons, referrals,
rules, limits and evaluation groups.

Definitions are checked when they are made, with errors that name the
campaign and the value; everything that can be computed once (condition
descriptions, which rules use ``couponValid``) is computed here, not per
evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox._html import html_of
from sandbox.checks import enum_value, parse_time
from sandbox.conditions import Condition, as_condition
from sandbox.effects import EFFECT_SPECS, EffectSpec
from sandbox.errors import DefinitionError
from sandbox.models import MAX_MONEY, bound_problem
from sandbox.talon import CampaignState, GroupMode, LimitAction, LimitEntity, Period

if TYPE_CHECKING:
    from sandbox.core import Sandbox

__all__ = ["Campaign", "Coupon", "Group", "Limit", "Referral", "Rule", "parse_time"]

MAX_USAGE_LIMIT = 999_999


def _optional_time(value: Any, what: str) -> datetime | None:
    return None if value is None else parse_time(value, what)


def _usage_limit(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_USAGE_LIMIT:
        raise DefinitionError(
            f"{what} must be an integer from 0 (unlimited) to {MAX_USAGE_LIMIT}, got {value!r}"
        )
    return value


# ---------------------------------------------------------------------------
# Limits and groups


def _limit_amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise DefinitionError(f"Limit(limit=...) must be a number >= 0, got {value!r}")
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise DefinitionError(f"Limit(limit=...) must be a number >= 0, got {value!r}")
    out_of_bounds = bound_problem(amount, MAX_MONEY)
    if out_of_bounds is not None:
        raise DefinitionError(f"Limit(limit=...) {out_of_bounds}")
    return amount


def _limit_entities(value: Iterable[Any]) -> tuple[LimitEntity, ...]:
    if isinstance(value, str):
        raise DefinitionError(
            f"Limit(entities=...) must be a list such as ['Profile'], got the string {value!r}"
        )
    entities = tuple(enum_value(LimitEntity, v, "Limit(entities=...)") for v in value)
    if len(set(entities)) != len(entities):
        raise DefinitionError(f"Limit(entities=...) names an entity twice: {list(value)!r}")
    return entities


def _limit_action(value: Any) -> LimitAction:
    action: LimitAction = enum_value(LimitAction, value, "Limit(action)")
    return action


def _period(value: Any) -> Period | None:
    period: Period | None = None if value is None else enum_value(Period, value, "Limit(period)")
    return period


@attrs.frozen
class Limit:
    """A campaign limit (Talon.One's ``LimitConfig``).

    ``Limit("redeemCoupon", 1, entities=["Profile"])``: each profile may redeem
    one coupon of the campaign. No entities means campaign-wide; ``period``
    buckets the counter by UTC day, ISO week, month or year.
    """

    action: LimitAction = attrs.field(converter=_limit_action)
    limit: Decimal = attrs.field(converter=_limit_amount)
    entities: tuple[LimitEntity, ...] = attrs.field(
        default=(), kw_only=True, converter=_limit_entities
    )
    period: Period | None = attrs.field(default=None, kw_only=True, converter=_period)

    def __attrs_post_init__(self) -> None:
        money = self.action is LimitAction.SET_DISCOUNT
        if not money and self.limit != self.limit.to_integral_value():
            raise DefinitionError(
                f"a {self.action.value} limit counts uses: a whole number, got {self.limit}"
            )
        wrong = {
            LimitAction.REDEEM_COUPON: LimitEntity.REFERRAL,
            LimitAction.REDEEM_REFERRAL: LimitEntity.COUPON,
        }.get(self.action)
        if wrong in self.entities:
            raise DefinitionError(
                f"a {self.action.value} limit cannot be counted per {wrong.value}"
            )

    def describe(self) -> str:
        scope = (
            "per " + " and ".join(e.value for e in self.entities)
            if self.entities
            else "campaign-wide"
        )
        period = f", {self.period.value}" if self.period else ""
        return f"{self.action.value} <= {self.limit} ({scope}{period})"


@attrs.define(eq=False)
class Group:
    """A campaign evaluation group; campaigns join it with ``group=``."""

    id: int
    name: str
    mode: GroupMode

    def __repr__(self) -> str:
        return f"Group({self.name!r}, mode={self.mode.value!r})"


# ---------------------------------------------------------------------------
# Codes


@attrs.frozen
class Coupon:
    """A coupon definition; its usage counter lives in the ledger."""

    id: int
    code: str
    campaign_id: int
    usage_limit: int = 0
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    recipient: str | None = None
    created: datetime | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Referral:
    """A referral code of an advocate, optionally for one friend."""

    id: int
    code: str
    campaign_id: int
    advocate: str
    friend: str | None = None
    usage_limit: int = 0
    start_date: datetime | None = None
    expiry_date: datetime | None = None
    created: datetime | None = attrs.field(default=None, eq=False)


# ---------------------------------------------------------------------------
# Rules and campaigns


@attrs.frozen
class Rule:
    """A rule: conditions checked in order, then effects applied in order."""

    index: int
    title: str
    conditions: tuple[Condition, ...]
    effects: tuple[EffectSpec, ...]
    uses_coupon_valid: bool
    uses_referral_valid: bool


class Campaign:
    """A live campaign of a :class:`~sandbox.Sandbox` (made by ``sb.campaign``)."""

    def __init__(
        self,
        sandbox: Sandbox,
        campaign_id: int,
        name: str,
        *,
        state: CampaignState,
        start: datetime | None,
        end: datetime | None,
        limits: tuple[Limit, ...],
        group: Group | None,
        reevaluate_on_return: bool = False,
    ) -> None:
        self._sandbox = sandbox
        self.id = campaign_id
        self.name = name
        self.state = state
        self.start = start
        self.end = end
        self.limits = limits
        self.created = sandbox.now
        self._limits_by_action: dict[LimitAction, tuple[Limit, ...]] = {
            action: tuple(limit for limit in limits if limit.action is action)
            for action in LimitAction
        }
        self.group = group
        self.reevaluate_on_return = reevaluate_on_return
        self.rules: tuple[Rule, ...] = ()
        self.coupons: dict[str, Coupon] = {}
        self.referrals: dict[str, Referral] = {}

    def __repr__(self) -> str:
        return (
            f"<Campaign {self.id} {self.name!r} {self.state.value}: {len(self.rules)} rules, "
            f"{len(self.coupons)} coupons, {len(self.referrals)} referrals>"
        )

    def _mutating(self, call: str) -> contextlib.AbstractContextManager[None]:
        return self._sandbox._defining(f"campaign {self.name!r}: {call}")

    def is_running(self, now: datetime) -> bool:
        """Enabled, and ``now`` inside ``[start, end]`` (missing bounds are open)."""
        return self.state is CampaignState.ENABLED and self.is_live(now)

    def is_live(self, now: datetime) -> bool:
        """``now`` is inside ``[start, end]``, whatever the state."""
        return (self.start is None or self.start <= now) and (self.end is None or now <= self.end)

    def limits_for(self, action: LimitAction) -> tuple[Limit, ...]:
        return self._limits_by_action.get(action, ())

    # -- state --------------------------------------------------------------

    def enable(self) -> None:
        with self._mutating("enable()"):
            self.state = CampaignState.ENABLED

    def disable(self) -> None:
        with self._mutating("disable()"):
            self.state = CampaignState.DISABLED

    def archive(self) -> None:
        with self._mutating("archive()"):
            self.state = CampaignState.ARCHIVED

    # -- inventory ----------------------------------------------------------

    def coupon(
        self,
        code: str,
        *,
        usage_limit: int = 0,
        start_date: Any = None,
        expiry_date: Any = None,
        recipient: str | None = None,
    ) -> Coupon:
        """Add a coupon code to this campaign (``usage_limit=0`` is unlimited)."""
        where = f"campaign {self.name!r}: coupon {code!r}"
        stored = self._sandbox._check_new_code(code, "coupon", where)
        coupon = Coupon(
            id=self._sandbox._next_id("coupon"),
            code=stored,
            campaign_id=self.id,
            usage_limit=_usage_limit(usage_limit, f"{where}: usage_limit"),
            start_date=_optional_time(start_date, f"{where}: start_date"),
            expiry_date=_optional_time(expiry_date, f"{where}: expiry_date"),
            recipient=_optional_profile(recipient, f"{where}: recipient"),
            created=self._sandbox.now,
        )
        _check_window(coupon.start_date, coupon.expiry_date, where)
        with self._mutating("coupon()"):
            self._sandbox._register_code(stored, self, coupon, where)
            self.coupons[stored] = coupon
        return coupon

    def referral(
        self,
        code: str,
        *,
        advocate: str | None = None,
        friend: str | None = None,
        usage_limit: int = 0,
        start_date: Any = None,
        expiry_date: Any = None,
    ) -> Referral:
        """Add an advocate's referral code, optionally for one ``friend``."""
        where = f"campaign {self.name!r}: referral {code!r}"
        stored = self._sandbox._check_new_code(code, "referral", where)
        advocate_id = _optional_profile(advocate, f"{where}: advocate")
        if advocate_id is None:
            raise DefinitionError(
                f"{where}: advocate=... is required: the profile id of the customer who "
                f"shares the code, got {advocate!r}"
            )
        referral = Referral(
            id=self._sandbox._next_id("referral"),
            code=stored,
            campaign_id=self.id,
            advocate=advocate_id,
            friend=_optional_profile(friend, f"{where}: friend"),
            usage_limit=_usage_limit(usage_limit, f"{where}: usage_limit"),
            start_date=_optional_time(start_date, f"{where}: start_date"),
            expiry_date=_optional_time(expiry_date, f"{where}: expiry_date"),
            created=self._sandbox.now,
        )
        if referral.friend is not None and referral.friend == referral.advocate:
            raise DefinitionError(f"{where}: the friend cannot be the advocate ({advocate!r})")
        _check_window(referral.start_date, referral.expiry_date, where)
        with self._mutating("referral()"):
            self._sandbox._register_code(stored, self, referral, where)
            self.referrals[stored] = referral
        return referral

    def rule(self, title: str, when: Sequence[Any] = (), then: Sequence[Any] = ()) -> Rule:
        """Add a rule at the bottom of this campaign's ruleset.

        ``when`` is a list of conditions (callables of the context), checked
        in order; ``then`` a list of effects from :mod:`sandbox.effects`.
        """
        if not isinstance(title, str) or not title.strip():
            raise DefinitionError(
                f"campaign {self.name!r}: a rule needs a non-empty title, got {title!r}"
            )
        where = f"campaign {self.name!r}, rule {title!r}"
        self._check_new_title(title, where)
        if isinstance(when, str | bytes) or not isinstance(when, Sequence):
            raise DefinitionError(f"{where}: when=... must be a list of conditions, got {when!r}")
        if isinstance(then, str | bytes) or not isinstance(then, Sequence):
            raise DefinitionError(f"{where}: then=... must be a list of effects, got {then!r}")
        conditions = tuple(as_condition(c, where=f"{where}: when[{i}]") for i, c in enumerate(when))
        for i, effect in enumerate(then):
            if not isinstance(effect, EFFECT_SPECS):
                raise DefinitionError(
                    f"{where}: then[{i}] must be an effect from sandbox.effects "
                    f"(set_discount, set_discount_per_item, ...), got {effect!r}"
                )
            target = getattr(effect, "campaign", None)
            if target is not None and target not in {c.name for c in self._sandbox.campaigns}:
                raise DefinitionError(
                    f"{where}: then[{i}] creates codes in campaign {target!r}, which does not "
                    "exist; define that campaign before this rule"
                )
        with self._mutating("rule()"):
            self._check_new_title(title, where)
            for effect in then:
                cost = getattr(effect, "cost", None)
                if cost is not None:
                    self._sandbox._cost_id(cost)  # again: another thread may have added it
            rule = Rule(
                index=len(self.rules),
                title=title,
                conditions=conditions,
                effects=tuple(then),
                uses_coupon_valid=any(c.kind == "couponValid" for c in conditions),
                uses_referral_valid=any(c.kind == "referralValid" for c in conditions),
            )
            self.rules = (*self.rules, rule)
        return rule

    def _check_new_title(self, title: str, where: str) -> None:
        if any(r.title == title for r in self.rules):
            raise DefinitionError(f"{where}: the campaign already has a rule with this title")

    def _repr_html_(self) -> str:
        return html_of(self)


def _optional_profile(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise DefinitionError(f"{what} must be a profile id (1 to 1000 characters), got {value!r}")
    return value


def _check_window(start: datetime | None, end: datetime | None, where: str) -> None:
    if start is not None and end is not None and end < start:
        raise DefinitionError(
            f"{where}: expiry_date {end.isoformat()} is before start_date {start.isoformat()}"
        )
