"""The rule engine: a pure function from (session, world) to an Evaluation.

No I/O and no mutation of the sandbox: everything mutable lives in the
ledger and the session store of :class:`~sandbox.Sandbox`. One evaluation:

1. each submitted code is checked for validity and limits (in Talon.One's
   order of rejection reasons), giving a candidate or a rejection;
2. running campaigns, in order: rules top to bottom, conditions in order
   (stopping at the first false), then the desired effects of fired rules;
3. evaluation groups arbitrate between triggered campaigns;
4. the winners' effects are applied in order: discounts rounded, capped so
   nothing goes below zero, and checked against budgets (committed counters
   plus this evaluation's own use); each code gets exactly one accept or reject.
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any

import attrs

from sandbox.conditions import Condition, NotABoolError, as_bool
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
from sandbox.errors import RuleError
from sandbox.ledger import (
    Charge,
    CounterKey,
    period_bucket,
    profile_usage_key,
    referred_key,
    usage_key,
)
from sandbox.models import (
    ARITHMETIC,
    MAX_MONEY,
    AnySession,
    CartItem,
    bound_problem,
    describe,
)
from sandbox.profiles import CustomerProfile
from sandbox.rules import Campaign, Coupon, Limit, Referral, Rule
from sandbox.state import CampaignTrace, Effect, RuleFailureReason, RuleTrace
from sandbox.talon import (
    CampaignState,
    CouponRejection,
    EffectType,
    ExclusionReason,
    GroupMode,
    LimitAction,
    LimitEntity,
    ReferralRejection,
)

__all__ = ["Context", "Evaluation", "Settings", "World", "evaluate"]

ZERO = Decimal(0)
ONE = Decimal(1)
BASE_GROUP_ID = 1  # Talon.One's base group of every Application is stackable


@attrs.frozen
class Settings:
    precision: int = 2
    partial_discounts: bool = False
    rounding: str = ROUND_HALF_EVEN
    flatten_cart_items: bool = True


@attrs.frozen
class World:
    """A read-only view of what an evaluation may look at.

    ``evaluable`` is a dry run's ``evaluableCampaignIds``: only those campaigns
    are evaluated, disabled ones included. ``cost_ids`` gives each additional
    cost a rule discounts its id (``additionalCostId``).
    """

    campaigns: Sequence[Campaign]
    coupons: Mapping[str, tuple[Campaign, Coupon]]
    referrals: Mapping[str, tuple[Campaign, Referral]]
    counters: Mapping[CounterKey, Decimal]
    now: datetime
    settings: Settings
    normalize: Callable[[str], str]
    evaluable: frozenset[int] | None = None
    cost_ids: Mapping[str, int] = attrs.Factory(dict)
    profile: CustomerProfile | None = None
    """The session's profile as stored (None: anonymous, or not created yet)."""
    session_id: str = ""
    """Seeds the codes create effects generate, so they differ from session to session."""
    campaigns_by_name: Mapping[str, Campaign] = attrs.Factory(dict)


class Context:
    """What a condition sees: one session, in one campaign, at one instant.

    ``coupon`` is the campaign's own valid code (``coupon_valid`` says there is
    one); ``coupon_codes`` every code the session sent.
    """

    __slots__ = (
        "additional_costs",
        "attributes",
        "campaign",
        "coupon",
        "coupon_codes",
        "coupon_valid",
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
        self, session: AnySession, now: datetime, profile: CustomerProfile | None = None
    ) -> None:
        self.session = session
        self.total: Decimal = session.effective_total
        self.items: tuple[CartItem, ...] = session.cart_items or ()
        # No context field is None (rules need no None checks); no profile is "".
        self.profile_id: str = session.profile_id or ""
        self.identifiers: tuple[str, ...] = session.identifiers or ()
        self.attributes: Mapping[str, Any] = MappingProxyType(session.attributes or {})
        self.coupon_codes: tuple[str, ...] = session.coupon_codes or ()
        self.referral_code: str = session.referral_code or ""
        self.additional_costs: Mapping[str, Decimal] = MappingProxyType(
            {name: cost.price for name, cost in (session.additional_costs or {}).items()}
        )
        self.now = now
        if profile is None:
            profile = (
                CustomerProfile(self.profile_id, 0, now, MappingProxyType({}), last_activity=now)
                if self.profile_id
                else CustomerProfile.anonymous(now)
            )
        self.profile: CustomerProfile = profile
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


@attrs.frozen
class Evaluation:
    """The pure result of evaluating one session."""

    effects: tuple[Effect, ...]
    failures: tuple[RuleFailureReason, ...]
    trace: tuple[CampaignTrace, ...]
    charges: tuple[Charge, ...]
    """What closing the session would commit to the ledger."""
    created: tuple[CreatedCode, ...] = ()
    """The codes create effects made: they exist once the session closes."""


@attrs.frozen
class CreatedCode:
    """A coupon or referral a create effect made, as the inventory will hold it."""

    kind: str  # "coupon" or "referral"
    code: str  # as stored, case-normalised
    campaign_id: int
    profile_id: str  # the coupon's recipient, the referral's advocate
    friend: str | None = None
    usage_limit: int = 0
    start_date: datetime | None = None
    expiry_date: datetime | None = None


# ---------------------------------------------------------------------------
# Code checks (Talon.One's order of rejection reasons; the first failure wins)


@attrs.frozen
class _CodeCheck:
    reason: str | None
    details: str = ""
    exclusion: ExclusionReason | None = None


def _limit_keys(
    limit: Limit, campaign_id: int, scope: Mapping[LimitEntity, Sequence[str]], now: datetime
) -> list[CounterKey] | None:
    """Every counter a limit charges for this session; None when an entity is missing."""
    values = []
    for entity in limit.entities:
        found = scope.get(entity) or ()
        if not found:
            return None
        values.append([(entity.value, v) for v in found])
    bucket = _bucket(limit.period, now) if limit.period is not None else None
    return [
        CounterKey(campaign_id, limit.action.value, tuple(combo), bucket, limit.period)
        for combo in itertools.product(*values)
    ]


@functools.lru_cache(maxsize=256)
def _bucket(period: Any, now: datetime) -> str | None:
    return period_bucket(period, now)


def _room(
    counters: Mapping[CounterKey, Decimal],
    key: CounterKey,
    limit: Limit,
    pending: Mapping[CounterKey, Decimal],
) -> Decimal:
    return limit.limit - counters.get(key, ZERO) - pending.get(key, ZERO)


@attrs.frozen
class _Code:
    """A submitted code: as sent, as stored (case-normalised), and what it is, if anything."""

    sent: str
    stored: str
    campaign: Campaign | None
    definition: Coupon | Referral | None


# Where a discount takes its value from: the session total, one item (a unit of it when
# flattened: sub is not None), the session's cost, or an item's cost.
_Slot = tuple[Any, ...]


class _Run:
    """Scratch state of one evaluation; discarded when it returns."""

    def __init__(self, session: AnySession, world: World) -> None:
        self.session = session
        self.world = world
        self.now = world.now
        self.settings = world.settings
        self.quantum = Decimal(1).scaleb(-world.settings.precision)
        self.profile_id = session.profile_id or None
        self.identifiers = tuple(dict.fromkeys(session.identifiers or ()))
        self.effects: list[Effect | None] = []
        self.failures: list[RuleFailureReason] = []
        self.trace: list[CampaignTrace] = []
        self.pending: dict[CounterKey, Decimal] = {}
        self.charges: list[Charge] = []
        self.total = session.effective_total
        self.session_left = self.total
        self.left: dict[_Slot, Decimal] = {}  # what each item, unit and cost has left
        self.discount_by_name: dict[str, int] = {}
        # The submitted codes, looked up once (case-normalised) for the whole run.
        normalize = world.normalize
        self.coupons = [
            _Code(sent, normalize(sent), *(world.coupons.get(normalize(sent)) or (None, None)))
            for sent in session.coupon_codes or ()
        ]
        referral = session.referral_code
        self.referral = (
            _Code(
                referral,
                normalize(referral),
                *(world.referrals.get(normalize(referral)) or (None, None)),
            )
            if referral
            else None
        )
        self.created: list[CreatedCode] = []  # by create effects that applied
        self.budgets: dict[int, Any] = {}  # campaign id -> its budget counters, once per run
        # The code each campaign's rules see (its first valid code in the session), by campaign id.
        self.campaign_coupon: dict[int, _Code] = {}
        self.campaign_referral: dict[int, _Code] = {}

    def is_running(self, campaign: Campaign) -> bool:
        if self.world.evaluable is not None:
            # A dry run's evaluableCampaignIds: evaluated even if disabled.
            return (
                campaign.id in self.world.evaluable
                and campaign.state is not CampaignState.ARCHIVED
                and campaign.is_live(self.now)
            )
        return campaign.is_running(self.now)

    def left_of(self, slot: _Slot, initial: Decimal) -> Decimal:
        found = self.left.get(slot)
        return initial if found is None else found

    # -- codes --------------------------------------------------------------

    def _scope(
        self, campaign: Campaign, coupon: str | None, referral: str | None
    ) -> dict[LimitEntity, Sequence[str]]:
        return {
            LimitEntity.COUPON: (coupon,) if coupon else (),
            LimitEntity.REFERRAL: (referral,) if referral else (),
            LimitEntity.PROFILE: (self.profile_id,) if self.profile_id else (),
            LimitEntity.IDENTIFIER: self.identifiers,
        }

    def _common_checks(
        self,
        campaign: Campaign,
        start: datetime | None,
        expiry: datetime | None,
        reasons: Any,
    ) -> _CodeCheck | None:
        if campaign.state is CampaignState.ARCHIVED:
            return _CodeCheck(
                reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
                f"campaign {campaign.name!r} is archived",
                ExclusionReason.NOT_IN_EVALUATION_SET,
            )
        if self.world.evaluable is not None and campaign.id not in self.world.evaluable:
            return _CodeCheck(
                reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
                f"campaign {campaign.name!r} is not in the dry run's evaluableCampaignIds",
                ExclusionReason.NOT_IN_EVALUATION_SET,
            )
        if not self.is_running(campaign):
            return _CodeCheck(
                reasons.PART_OF_NOT_RUNNING_CAMPAIGN, _not_running(campaign, self.now)
            )
        if start is not None and self.now < start:
            return _CodeCheck(reasons.START_DATE_IN_FUTURE, f"valid from {start.isoformat()}")
        if expiry is not None and self.now > expiry:
            return _CodeCheck(reasons.EXPIRED, f"expired at {expiry.isoformat()}")
        if self.profile_id is None and any(
            LimitEntity.PROFILE in lim.entities for lim in campaign.limits
        ):
            # Coupons: ProfileRequired. Referrals have no such documented reason; the sandbox
            # answers ProfileLimitReached, its details saying a profile is required.
            reason = (
                reasons.PROFILE_REQUIRED
                if reasons is CouponRejection
                else reasons.PROFILE_LIMIT_REACHED
            )
            return _CodeCheck(
                reason,
                f"a profile is required: campaign {campaign.name!r} has a per-profile limit",
            )
        return None

    def _limit_checks(
        self,
        campaign: Campaign,
        action: LimitAction,
        own_usage: tuple[CounterKey, int],
        scope: Mapping[LimitEntity, Sequence[str]],
        reasons: Any,
    ) -> _CodeCheck | None:
        key, usage_limit = own_usage
        counters = self.world.counters
        if usage_limit and counters.get(key, ZERO) >= usage_limit:
            return _CodeCheck(reasons.LIMIT_REACHED, f"usage limit {usage_limit} reached")
        if not self.identifiers and any(
            LimitEntity.IDENTIFIER in lim.entities for lim in campaign.limits
        ):
            return _CodeCheck(
                reasons.LIMIT_REACHED,
                "an identifier is required: the campaign limits use per identifier",
            )
        # Checked in the order of reasons: per code or identifier, per profile, campaign-wide.
        tiers: list[tuple[Callable[[Limit], bool], Any]] = [
            (
                lambda lim: LimitEntity.PROFILE not in lim.entities and bool(lim.entities),
                reasons.LIMIT_REACHED,
            ),
            (lambda lim: LimitEntity.PROFILE in lim.entities, reasons.PROFILE_LIMIT_REACHED),
            (lambda lim: not lim.entities, reasons.CAMPAIGN_LIMIT_REACHED),
        ]
        for belongs, reason in tiers:
            for limit in campaign.limits_for(action):
                if not belongs(limit):
                    continue
                for counter in _limit_keys(limit, campaign.id, scope, self.now) or ():
                    used = counters.get(counter, ZERO)
                    if used + 1 > limit.limit:
                        return _CodeCheck(reason, f"limit {limit.describe()} reached: {used} used")
        return None

    def check_coupon(self, campaign: Campaign, coupon: Coupon) -> _CodeCheck | None:
        reasons = CouponRejection
        found = self._common_checks(campaign, coupon.start_date, coupon.expiry_date, reasons)
        if found:
            return found
        if coupon.recipient is not None and coupon.recipient != self.profile_id:
            return _CodeCheck(
                reasons.RECIPIENT_DOES_NOT_MATCH,
                f"the coupon is for profile {coupon.recipient!r}, the session has {self.profile_id!r}",
            )
        return self._limit_checks(
            campaign,
            LimitAction.REDEEM_COUPON,
            (usage_key(campaign.id, "coupon", coupon.code), coupon.usage_limit),
            self._scope(campaign, coupon.code, None),
            reasons,
        )

    def check_referral(self, campaign: Campaign, referral: Referral) -> _CodeCheck | None:
        reasons = ReferralRejection
        found = self._common_checks(campaign, referral.start_date, referral.expiry_date, reasons)
        if found:
            return found
        if self.profile_id is not None and self.profile_id == referral.advocate:
            return _CodeCheck(
                reasons.RECIPIENT_ID_SAME_AS_ADVOCATE,
                f"profile {self.profile_id!r} is the advocate of this referral",
            )
        if referral.friend is not None and referral.friend != self.profile_id:
            return _CodeCheck(
                reasons.RECIPIENT_DOES_NOT_MATCH,
                f"the referral is for friend {referral.friend!r}, the session has {self.profile_id!r}",
            )
        if self.profile_id is not None and self.world.counters.get(
            referred_key(campaign.id, self.profile_id), ZERO
        ):
            return _CodeCheck(
                reasons.CUSTOMER_ALREADY_REFERRED,
                f"profile {self.profile_id!r} has already redeemed a referral of campaign "
                f"{campaign.name!r}",
            )
        return self._limit_checks(
            campaign,
            LimitAction.REDEEM_REFERRAL,
            (usage_key(campaign.id, "referral", referral.code), referral.usage_limit),
            self._scope(campaign, None, referral.code),
            reasons,
        )

    # -- effects ------------------------------------------------------------

    def emit(self, effect: Effect) -> int:
        self.effects.append(effect)
        return len(self.effects) - 1

    def reject(
        self,
        effect_type: EffectType,
        code: str,
        campaign: Campaign | None,
        check: _CodeCheck,
        *,
        rule: Rule | None = None,
        condition_index: int | None = None,
        effect_index: int | None = None,
    ) -> None:
        props: dict[str, Any] = {"value": code, "rejectionReason": str(check.reason)}
        if condition_index is not None:
            props["conditionIndex"] = condition_index
        if effect_index is not None:
            props["effectIndex"] = effect_index
        if check.details:
            props["details"] = check.details
        if check.exclusion is not None:
            props["campaignExclusionReason"] = check.exclusion.value
        group = campaign.group if campaign else None
        self.emit(
            Effect(
                effect_type=effect_type,
                campaign_id=campaign.id if campaign else -1,
                ruleset_id=campaign.id if campaign else -1,
                rule_index=rule.index if rule else -1,
                rule_name=rule.title if rule else "",
                props=props,
                condition_index=condition_index,
                evaluation_group_id=_group_id(campaign) if campaign else None,
                evaluation_group_mode=(group.mode.value if group else GroupMode.STACKABLE.value)
                if campaign
                else None,
            )
        )


def _group_id(campaign: Campaign) -> int:
    return campaign.group.id if campaign.group else BASE_GROUP_ID


def _group_mode(campaign: Campaign) -> GroupMode:
    return campaign.group.mode if campaign.group else GroupMode.STACKABLE


def _not_running(campaign: Campaign, now: datetime) -> str:
    if campaign.state is not CampaignState.ENABLED:
        return f"campaign {campaign.name!r} is {campaign.state.value}"
    if campaign.start is not None and now < campaign.start:
        return f"campaign {campaign.name!r} starts at {campaign.start.isoformat()}"
    assert campaign.end is not None
    return f"campaign {campaign.name!r} ended at {campaign.end.isoformat()}"


# ---------------------------------------------------------------------------
# Rules: conditions, then the desired effects of fired rules


class _Desired:
    """An effect a fired rule wants, before caps and budgets.

    A discount takes its value from a ``slot`` (the session, an item or a unit
    of it, a cost) that starts at ``base``; ``missing`` says why it cannot be
    applied at all (an item without the additional cost the effect discounts).
    A plain slotted class: one is made per unit of every discounted item.
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
        slot: _Slot | None = None,
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


@attrs.define
class _FiredRule:
    rule: Rule
    desired: list[_Desired]


@attrs.define
class _CampaignOutcome:
    campaign: Campaign
    fired: list[_FiredRule] = attrs.Factory(list)
    failed: dict[int, RuleFailureReason] = attrs.Factory(dict)
    excluded: ExclusionReason | None = None

    @property
    def triggered(self) -> bool:
        return bool(self.fired)

    @property
    def desired_discount(self) -> Decimal:
        return sum((d.value for f in self.fired for d in f.desired if d.value is not None), ZERO)


def _to_amount(value: Any, campaign: Campaign, rule: Rule, index: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise RuleError(
            campaign.name,
            rule.title,
            f"effect {index} amount",
            problem=f"returned {describe(value)}: the amount callable must return a number",
        )
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise RuleError(
            campaign.name,
            rule.title,
            f"effect {index} amount",
            problem=f"returned {describe(value)}: an amount must be a finite number >= 0",
        )
    out_of_bounds = bound_problem(amount, MAX_MONEY)
    if out_of_bounds is not None:
        raise RuleError(
            campaign.name,
            rule.title,
            f"effect {index} amount",
            problem=f"returned an amount out of bounds: it {out_of_bounds}",
        )
    return amount


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


def _details(condition: Condition, ctx: Context) -> str:
    recorder = _Recorder(ctx)
    with contextlib.suppress(Exception):  # details are best effort; the condition failed already
        condition.fn(recorder)  # type: ignore[arg-type]
    seen = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in recorder.seen.items()
    )
    return f"{condition.description}" + (f" (saw {seen})" if seen else "")


def _lazy_details(condition: Condition, ctx: Context) -> Callable[[], str]:
    """The details of a failed condition, worked out when read, on a copy of the
    context as the condition saw it (the run's context moves on to other campaigns)."""
    seen = ctx.for_campaign(ctx.campaign or "")
    seen.coupon_valid, seen.coupon = ctx.coupon_valid, ctx.coupon
    seen.referral_valid, seen.referral = ctx.referral_valid, ctx.referral
    return lambda: _details(condition, seen)


def _run_rules(run: _Run, campaign: Campaign, ctx: Context) -> _CampaignOutcome:
    outcome = _CampaignOutcome(campaign)
    for rule in campaign.rules:
        failed_at = None
        for index, condition in enumerate(rule.conditions):
            try:
                ok = condition(ctx)
            except NotABoolError as exc:
                raise RuleError(
                    campaign.name,
                    rule.title,
                    f"condition {index} ({condition.description})",
                    problem=f"{exc}: a condition must return True or False",
                ) from None
            except Exception as exc:
                raise RuleError(
                    campaign.name, rule.title, f"condition {index} ({condition.description})", exc
                ) from exc
            if not ok:
                failed_at = index
                break
        if failed_at is not None:
            outcome.failed[rule.index] = _failure(
                run,
                campaign,
                rule,
                condition_index=failed_at,
                details=_lazy_details(rule.conditions[failed_at], ctx),
            )
            continue
        outcome.fired.append(_FiredRule(rule, list(_desire(run, campaign, rule, ctx))))
    return outcome


def _failure(run: _Run, campaign: Campaign, rule: Rule, **fields: Any) -> RuleFailureReason:
    coupon = run.campaign_coupon.get(campaign.id)
    referral = run.campaign_referral.get(campaign.id)
    coupon_def = coupon.definition if coupon else None
    referral_def = referral.definition if referral else None
    return RuleFailureReason(
        campaign_id=campaign.id,
        campaign_name=campaign.name,
        ruleset_id=campaign.id,
        rule_index=rule.index,
        rule_name=rule.title,
        coupon_id=coupon_def.id if coupon_def else None,
        coupon_value=coupon_def.code if coupon_def else None,
        referral_id=referral_def.id if referral_def else None,
        referral_value=referral_def.code if referral_def else None,
        evaluation_group_id=_group_id(campaign),
        evaluation_group_mode=_group_mode(campaign).value,
        **fields,
    )


def _matches(spec: Any, item: CartItem, campaign: Campaign, rule: Rule, index: int) -> bool:
    if spec.where is None:
        return True
    try:
        return as_bool(spec.where(item))
    except NotABoolError as exc:
        raise RuleError(
            campaign.name,
            rule.title,
            f"effect {index} where=",
            problem=f"{exc}: where= must return True or False for each item",
        ) from None
    except Exception as exc:
        raise RuleError(campaign.name, rule.title, f"effect {index} where=", exc) from exc


def _units(run: _Run, item: CartItem) -> Iterable[int | None]:
    """The units a per-item effect sees: each of them when flattened, else the line."""
    if run.settings.flatten_cart_items:
        return range(item.quantity)
    return (None,)


def _desire(run: _Run, campaign: Campaign, rule: Rule, ctx: Context) -> Iterable[_Desired]:
    quantize = functools.partial(Decimal.quantize, exp=run.quantum, rounding=run.settings.rounding)
    for index, spec in enumerate(rule.effects):
        if isinstance(spec, SetDiscount):
            if spec.percent is not None:
                raw = run.total * spec.percent / 100
            else:
                raw = _amount_of(spec.amount, ctx, campaign, rule, index)
            yield _Desired(spec, index, value=quantize(raw))
        elif isinstance(spec, SetDiscountPerItem):
            for position, item in enumerate(ctx.items):
                if not _matches(spec, item, campaign, rule, index):
                    continue
                price = item.price or ZERO
                for sub in _units(run, item):
                    base = price if sub is not None else item.line_total
                    if spec.percent is not None:
                        raw = base * spec.percent / 100
                    else:
                        # Per unit; the cap at the unit (or line) happens when applied, so a
                        # capped item discount reports desiredValue.
                        amount = _amount_of(spec.amount, ctx, campaign, rule, index)
                        raw = amount if sub is not None else amount * item.quantity
                    yield _Desired(
                        spec,
                        index,
                        value=quantize(raw),
                        position=position,
                        sub_position=sub,
                        slot=("item", position, sub),
                        base=base,
                    )
        elif isinstance(spec, SetDiscountPerAdditionalCost):
            cost = (ctx.session.additional_costs or {}).get(spec.cost)
            if cost is None:
                yield _Desired(
                    spec, index, missing=f"the session has no additional cost {spec.cost!r}"
                )
                continue
            if spec.percent is not None:
                raw = cost.price * spec.percent / 100
            else:
                raw = _amount_of(spec.amount, ctx, campaign, rule, index)
            yield _Desired(
                spec, index, value=quantize(raw), slot=("cost", spec.cost), base=cost.price
            )
        elif isinstance(spec, SetDiscountPerAdditionalCostPerItem):
            matching = [
                (position, item)
                for position, item in enumerate(ctx.items)
                if _matches(spec, item, campaign, rule, index)
            ]
            lacking = [p for p, item in matching if spec.cost not in (item.additional_costs or {})]
            if lacking:
                yield _Desired(
                    spec,
                    index,
                    missing=f"cart item(s) {', '.join(map(str, lacking))} have no additional "
                    f"cost {spec.cost!r}",
                )
                continue
            for position, item in matching:
                unit_cost = (item.additional_costs or {})[spec.cost].price
                for sub in _units(run, item):
                    base = unit_cost if sub is not None else unit_cost * item.quantity
                    if spec.percent is not None:
                        raw = base * spec.percent / 100
                    else:
                        amount = _amount_of(spec.amount, ctx, campaign, rule, index)
                        raw = amount if sub is not None else amount * item.quantity
                    yield _Desired(
                        spec,
                        index,
                        value=quantize(raw),
                        position=position,
                        sub_position=sub,
                        slot=("item cost", position, sub, spec.cost),
                        base=base,
                    )
        elif isinstance(spec, CreateCoupon | CreateReferral):
            yield _desired_code(run, campaign, rule, ctx, index, spec)
        elif isinstance(spec, AddFreeItem):
            yield _Desired(
                spec,
                index,
                props={"sku": spec.sku, "name": spec.name, "desiredQuantity": spec.quantity},
            )
        elif isinstance(spec, ShowNotification):
            yield _Desired(
                spec,
                index,
                props={
                    "notificationType": spec.notification_type,
                    "title": spec.title,
                    "body": spec.body,
                },
            )
        elif isinstance(spec, UpdateAttribute):
            yield _Desired(spec, index, props={"path": spec.path, "value": spec.value})
        elif isinstance(spec, TriggerWebhook):
            yield _Desired(
                spec, index, props={"webhookId": spec.webhook_id, "webhookName": spec.webhook_name}
            )


_CODE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _generated(run: _Run, pattern: str, seed: str) -> str:
    """A code from ``pattern`` (``#`` = a character of A-Z0-9), the same for the same
    session and rule every time, and not one the sandbox already has."""
    world = run.world
    for attempt in itertools.count():
        digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
        chars = iter(_CODE_CHARS[b % len(_CODE_CHARS)] for b in digest * 4)
        code = world.normalize("".join(next(chars) if ch == "#" else ch for ch in pattern))
        if code not in world.coupons and code not in world.referrals:
            return code
    raise AssertionError("unreachable")  # pragma: no cover


def _desired_code(
    run: _Run,
    campaign: Campaign,
    rule: Rule,
    ctx: Context,
    index: int,
    spec: CreateCoupon | CreateReferral,
) -> _Desired:
    """What a create effect would make: the code, where, for whom (or why it cannot)."""
    kind = "coupon" if isinstance(spec, CreateCoupon) else "referral"
    target = campaign
    if spec.campaign is not None:
        target = run.world.campaigns_by_name[spec.campaign]
    if spec.value is None:
        seed = f"{run.world.session_id}:{target.id}:{campaign.id}:{rule.index}:{index}"
        code = _generated(run, spec.pattern, seed)
    else:
        value = spec.value
        if callable(value):
            try:
                value = value(ctx)
            except Exception as exc:
                raise RuleError(campaign.name, rule.title, f"effect {index} value", exc) from exc
            problem = _code_problem(value)
            if problem is not None:
                raise RuleError(
                    campaign.name,
                    rule.title,
                    f"effect {index} value",
                    problem=f"returned {describe(value)}: {problem}",
                )
        code = run.world.normalize(value)
        if code in run.world.coupons or code in run.world.referrals:
            return _Desired(spec, index, missing=f"the {kind} code {code!r} already exists")
    owner = spec.recipient if isinstance(spec, CreateCoupon) else None
    owner = owner or run.profile_id
    if owner is None:
        who = "recipient" if kind == "coupon" else "advocate"
        return _Desired(
            spec, index, missing=f"a created {kind} needs a {who}: the session has no profile"
        )
    expiry = spec.expiry_date
    if spec.valid_days is not None:
        expiry = _days_after(run.now, spec.valid_days)
    made = CreatedCode(
        kind,
        code,
        target.id,
        owner,
        friend=spec.friend if isinstance(spec, CreateReferral) else None,
        usage_limit=spec.usage_limit,
        start_date=spec.start_date,
        expiry_date=expiry,
    )
    props = {"value": code, "profileId": owner} if kind == "coupon" else {"value": code}
    return _Desired(spec, index, props=props, created=made)


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


def _amount_of(amount: Any, ctx: Context, campaign: Campaign, rule: Rule, index: int) -> Decimal:
    if not callable(amount):
        assert isinstance(amount, Decimal)
        return amount
    try:
        value = amount(ctx)
    except Exception as exc:
        raise RuleError(campaign.name, rule.title, f"effect {index} amount", exc) from exc
    return _to_amount(value, campaign, rule, index)


# ---------------------------------------------------------------------------
# Arbitration by evaluation group


def _arbitrate(outcomes: list[_CampaignOutcome]) -> None:
    groups: dict[int, list[_CampaignOutcome]] = {}
    for outcome in outcomes:
        if outcome.campaign.group is not None and outcome.triggered:
            groups.setdefault(outcome.campaign.group.id, []).append(outcome)
    for members in groups.values():
        mode = members[0].campaign.group.mode  # type: ignore[union-attr]
        # listOrder is decided while applying (see evaluate): the first campaign
        # that applies wins, so one whose rules all failed on budgets does not.
        if mode in (GroupMode.STACKABLE, GroupMode.LIST_ORDER) or len(members) < 2:
            continue
        # Ties go to the earlier campaign: max/min return the first of equals.
        pick = max if mode is GroupMode.HIGHEST_DISCOUNT else min
        winner = pick(members, key=lambda o: o.desired_discount)
        for outcome in members:
            if outcome is not winner:
                outcome.excluded = ExclusionReason.GAVE_LOWER_DISCOUNT


# ---------------------------------------------------------------------------
# Application: caps, budgets, emitted effects, accept / reject


def _budget_keys(
    run: _Run, campaign: Campaign, action: LimitAction, scope: Mapping[LimitEntity, Sequence[str]]
) -> tuple[list[tuple[CounterKey, Limit]], str | None]:
    """The budget counters an effect charges, or why it cannot be charged."""
    found: list[tuple[CounterKey, Limit]] = []
    for limit in campaign.limits_for(action):
        keys = _limit_keys(limit, campaign.id, scope, run.now)
        if keys is None:
            missing = [e.value for e in limit.entities if not scope.get(e)]
            if set(missing) <= {LimitEntity.COUPON.value, LimitEntity.REFERRAL.value}:
                continue  # a per-code budget does not apply to a session without that code
            return (
                [],
                f"budget {limit.describe()} needs a {' and '.join(missing).lower()} in the session",
            )
        found.extend((key, limit) for key in keys)
    return found, None


def _discount_props(run: _Run, desired: _Desired, value: Decimal) -> dict[str, Any]:
    spec = desired.spec
    props: dict[str, Any]
    if isinstance(spec, SetDiscountPerItem):
        props = {"name": f"{spec.name}#{desired.position}", "value": value}
        props["position"] = desired.position
        if desired.sub_position is not None:
            props["subPosition"] = desired.sub_position
    elif isinstance(spec, SetDiscountPerAdditionalCost | SetDiscountPerAdditionalCostPerItem):
        props = {
            "name": spec.name
            if isinstance(spec, SetDiscountPerAdditionalCost)
            else f"{spec.name}#{desired.position}",
            "additionalCostId": run.world.cost_ids.get(spec.cost, 0),
            "additionalCost": spec.cost,
            "value": value,
        }
        if desired.position is not None:
            props["position"] = desired.position
        if desired.sub_position is not None:
            props["subPosition"] = desired.sub_position
    else:
        assert isinstance(spec, SetDiscount)
        props = {"name": spec.name, "value": value}
    return props


def _apply_rule(
    run: _Run,
    campaign: Campaign,
    fired: _FiredRule,
    scope: Mapping[LimitEntity, Sequence[str]],
    group_id: int,
    group_mode: str,
    triggered_by: int | None,
    *,
    trial: bool = False,
) -> tuple[list[Effect | None], list[Charge], tuple[int, str] | None]:
    """Caps and budgets for one fired rule; all of it applies, or none of it.

    A ``trial`` only says whether the rule would fail on a budget; the run is left as is.
    """
    effects: list[Effect | None] = []
    charges: list[Charge] = []
    pending = dict(run.pending)
    session_left = run.session_left
    left = dict(run.left)
    overwritten: list[int] = []
    own_names: dict[str, int] = {}  # setDiscount name -> index in effects, this rule only
    settings = run.settings
    budgets: tuple[Any, Any] | None = None  # computed at the first discount, once per rule
    created: list[CreatedCode] = []
    for desired in fired.desired:
        spec = desired.spec
        props = dict(desired.props) if desired.props else {}
        if desired.missing is not None:
            return [], [], (desired.effect_index, desired.missing)
        if desired.created is not None:
            code = desired.created.code
            if any(c.code == code for c in (*run.created, *created)):
                return [], [], (desired.effect_index, f"the code {code!r} is already created")
            created.append(desired.created)
        if desired.value is not None:
            want = desired.value
            if isinstance(spec, SetDiscount) and spec.name in own_names:
                # The same name twice in one rule: the later one overwrites too.
                mine = own_names.pop(spec.name)
                replaced = effects[mine]
                assert replaced is not None
                effects[mine] = None
                session_left += replaced.props["value"]
                for charge in charges:
                    if charge.effect_ref == mine:
                        pending[charge.key] = pending.get(charge.key, ZERO) - charge.amount
                charges = [c for c in charges if c.effect_ref != mine]
            elif isinstance(spec, SetDiscount) and spec.name in run.discount_by_name:
                # Same name overwrites: the earlier discount's room comes back first.
                earlier_index = run.discount_by_name[spec.name]
                earlier = run.effects[earlier_index]
                if earlier is not None and earlier_index not in overwritten:
                    overwritten.append(earlier_index)
                    session_left += earlier.props["value"]
                    for charge in run.charges:
                        if charge.effect_ref == earlier_index:
                            pending[charge.key] = pending.get(charge.key, ZERO) - charge.amount
            cap = session_left
            if desired.slot is not None:
                slot_left = left.get(desired.slot)
                cap = min(cap, desired.base if slot_left is None else slot_left)
            # A capped value is in currency precision too; rounded down so the cap holds
            # (a line of 3 x 0.333 gives 0.99 off, not 1.00).
            value = min(want, max(cap, ZERO).quantize(run.quantum, ROUND_DOWN))
            if budgets is None:
                budgets = run.budgets.get(campaign.id)
                if budgets is None:
                    budgets = (
                        _budget_keys(run, campaign, LimitAction.SET_DISCOUNT, scope),
                        _budget_keys(run, campaign, LimitAction.SET_DISCOUNT_EFFECT, scope),
                    )
                    run.budgets[campaign.id] = budgets
            (budget_keys, missing), (count_keys, missing_count) = budgets
            if missing or missing_count:
                return [], [], (desired.effect_index, missing or missing_count or "")
            for key, limit in count_keys:
                if _room(run.world.counters, key, limit, pending) < 1:
                    return [], [], (desired.effect_index, f"limit {limit.describe()} reached")
            room = (
                min(_room(run.world.counters, key, limit, pending) for key, limit in budget_keys)
                if budget_keys
                else None
            )
            if room is not None and value > room:
                # What is left is given in currency precision, rounded down so the budget
                # holds; less than one unit of it is as good as nothing.
                room = max(room, ZERO).quantize(run.quantum, ROUND_DOWN)
                if not settings.partial_discounts or not room:
                    return (
                        [],
                        [],
                        (
                            desired.effect_index,
                            f"discount budget exhausted: {max(room, ZERO)} left, {value} asked",
                        ),
                    )
                value = room
            if budget_keys:
                for key, _ in budget_keys:
                    pending[key] = pending.get(key, ZERO) + value
                    charges.append(Charge(key, value, effect_ref=len(effects)))
            if count_keys:
                for key, _ in count_keys:
                    pending[key] = pending.get(key, ZERO) + 1
                    charges.append(Charge(key, ONE, effect_ref=len(effects)))
            session_left -= value
            if desired.slot is not None:
                slot_left = left.get(desired.slot)
                left[desired.slot] = (desired.base if slot_left is None else slot_left) - value
            props.update(_discount_props(run, desired, value))
            if isinstance(spec, SetDiscount):
                own_names[spec.name] = len(effects)
            if value != want:
                props["desiredValue"] = want
        effects.append(
            Effect(
                effect_type=spec.effect_type,
                campaign_id=campaign.id,
                ruleset_id=campaign.id,
                rule_index=fired.rule.index,
                rule_name=fired.rule.title,
                props=props,
                triggered_by_coupon=triggered_by,
                evaluation_group_id=group_id,
                evaluation_group_mode=group_mode,
            )
        )
    if trial:
        return effects, charges, None
    # The rule applies: commit its scratch state to the run.
    for index in overwritten:
        earlier = run.effects[index]
        assert earlier is not None
        run.effects[index] = None
        run.charges = [c for c in run.charges if c.effect_ref != index]
    run.pending = pending
    run.session_left = session_left
    run.left = left
    run.created.extend(created)
    return effects, charges, None


def evaluate(session: AnySession, world: World) -> Evaluation:
    """Evaluate one session against the world; pure (see the module docstring).

    All arithmetic runs in :data:`sandbox.models.ARITHMETIC`, whose precision
    holds every value within the wire format's bounds exactly.
    """
    with decimal.localcontext(ARITHMETIC):
        return _evaluate(session, world)


def _check_codes(run: _Run) -> None:
    """Step 1: each submitted code, on its own; a campaign takes the first valid one."""
    for code in run.coupons:
        if code.campaign is None:
            run.reject(
                EffectType.REJECT_COUPON, code.sent, None, _CodeCheck(CouponRejection.NOT_FOUND)
            )
            continue
        assert isinstance(code.definition, Coupon)
        check = run.check_coupon(code.campaign, code.definition)
        if check is not None:
            run.reject(EffectType.REJECT_COUPON, code.sent, code.campaign, check)
        elif code.campaign.id not in run.campaign_coupon:
            run.campaign_coupon[code.campaign.id] = code
        # A second valid code of a campaign that already has one is rejected after
        # the campaign's own code is decided (see _reject_extra_codes).
    referral = run.referral
    if referral is None:
        return
    if referral.campaign is None:
        run.reject(
            EffectType.REJECT_REFERRAL,
            referral.sent,
            None,
            _CodeCheck(ReferralRejection.NOT_FOUND),
        )
        return
    assert isinstance(referral.definition, Referral)
    found = run.check_referral(referral.campaign, referral.definition)
    if found is not None:
        run.reject(EffectType.REJECT_REFERRAL, referral.sent, referral.campaign, found)
    else:
        run.campaign_referral[referral.campaign.id] = referral


def _extra_codes(run: _Run, campaign: Campaign) -> list[_Code]:
    """Valid codes of ``campaign`` beyond the one its rules see."""
    used = run.campaign_coupon.get(campaign.id)
    return [
        code
        for code in run.coupons
        if code.campaign is campaign
        and code is not used
        and used is not None
        and code.stored != used.stored
        and run.check_coupon(campaign, code.definition) is None  # type: ignore[arg-type]
    ]


def _evaluate(session: AnySession, world: World) -> Evaluation:
    run = _Run(session, world)

    # 1. Codes
    _check_codes(run)

    # 2. Rules of running campaigns
    outcomes: list[_CampaignOutcome] = []
    base_ctx = Context(session, world.now, world.profile)
    for campaign in world.campaigns:
        if campaign.state is CampaignState.ARCHIVED:
            run.trace.append(CampaignTrace(campaign.id, campaign.name, "archived"))
            continue
        if world.evaluable is not None and campaign.id not in world.evaluable:
            run.trace.append(
                CampaignTrace(campaign.id, campaign.name, "not in evaluableCampaignIds")
            )
            continue
        if not run.is_running(campaign):
            run.trace.append(
                CampaignTrace(campaign.id, campaign.name, _not_running(campaign, world.now))
            )
            continue
        # One context for the run; only the campaign's own fields change from campaign to
        # campaign (conditions and amounts use it while their campaign runs, never later).
        ctx = base_ctx
        ctx.campaign = campaign.name
        coupon = run.campaign_coupon.get(campaign.id)
        ctx.coupon_valid, ctx.coupon = (True, coupon.stored) if coupon else (False, None)
        referral = run.campaign_referral.get(campaign.id)
        ctx.referral_valid, ctx.referral = (True, referral.stored) if referral else (False, None)
        outcomes.append(_run_rules(run, campaign, ctx))

    # 3. Evaluation groups
    _arbitrate(outcomes)

    # 4. Application, in campaign order
    applied_groups: set[int] = set()  # listOrder groups whose first campaign applied
    for outcome in outcomes:
        _apply_campaign(run, outcome, applied_groups)

    # A valid code whose campaign was not evaluated at all cannot happen: the
    # checks above reject codes of campaigns that are not running.
    emitted = tuple(e for e in run.effects if e is not None)
    # Charges point into run.effects, which keeps None for overwritten discounts;
    # the ledger and returns index the emitted effects, so renumber.
    renumber = dict(zip((i for i, e in enumerate(run.effects) if e is not None), itertools.count()))
    final_charges = tuple(
        c if c.effect_ref is None else Charge(c.key, c.amount, renumber[c.effect_ref])
        for c in run.charges
    )
    return Evaluation(
        emitted, tuple(run.failures), tuple(run.trace), final_charges, tuple(run.created)
    )


def _apply_campaign(run: _Run, outcome: _CampaignOutcome, applied_groups: set[int]) -> None:
    campaign = outcome.campaign
    if (
        not outcome.fired
        and campaign.id not in run.campaign_coupon
        and campaign.id not in run.campaign_referral
    ):
        # Nothing fired and no code to decide: only the failures and the trace.
        traces = []
        for rule in campaign.rules:
            failure = outcome.failed.get(rule.index)
            traces.append(RuleTrace(rule.index, rule.title, fired=False, failure=failure))
            if failure is not None:
                run.failures.append(failure)
        run.trace.append(CampaignTrace(campaign.id, campaign.name, None, tuple(traces)))
        return
    list_group = (
        campaign.group.id
        if campaign.group is not None and campaign.group.mode is GroupMode.LIST_ORDER
        else None
    )
    if list_group in applied_groups and outcome.triggered:
        outcome.excluded = ExclusionReason.IS_NOT_FIRST
    group_id, group_mode = _group_id(campaign), _group_mode(campaign).value
    coupon = run.campaign_coupon.get(campaign.id)
    referral = run.campaign_referral.get(campaign.id)
    scope = run._scope(
        campaign, coupon.stored if coupon else None, referral.stored if referral else None
    )
    coupon_accepted = referral_accepted = False
    rule_traces: dict[int, RuleTrace] = {}
    budget_failures: dict[int, tuple[int, str]] = {}
    for fired in outcome.fired:
        rule = fired.rule
        coupon_rule = coupon is not None and rule.uses_coupon_valid
        referral_rule = referral is not None and rule.uses_referral_valid
        triggered_by = coupon.definition.id if coupon_rule and coupon else None  # type: ignore[union-attr]
        if outcome.excluded is not None:
            outcome.failed[rule.index] = _failure(
                run,
                campaign,
                rule,
                details=f"campaign excluded by its evaluation group: {outcome.excluded.value}",
            )
            if coupon_rule or referral_rule:
                # Budgets outrank group arbitration as a code's rejection reason
                # (Talon.One's order of reasons): would this rule have failed on one?
                failed = _apply_rule(
                    run, campaign, fired, scope, group_id, group_mode, triggered_by, trial=True
                )[2]
                if failed is not None:
                    budget_failures[rule.index] = failed
            continue
        effects, charges, failed = _apply_rule(
            run, campaign, fired, scope, group_id, group_mode, triggered_by
        )
        if failed is not None:
            budget_failures[rule.index] = failed
            outcome.failed[rule.index] = _failure(
                run, campaign, rule, effect_index=failed[0], details=failed[1]
            )
            continue
        envelope: dict[str, Any] = {
            "campaign_id": campaign.id,
            "ruleset_id": campaign.id,
            "rule_index": rule.index,
            "rule_name": rule.title,
            "evaluation_group_id": group_id,
            "evaluation_group_mode": group_mode,
        }
        if coupon_rule and not coupon_accepted and coupon is not None:
            coupon_accepted = True
            run.emit(
                Effect(
                    EffectType.ACCEPT_COUPON,
                    props={"value": coupon.sent},
                    triggered_by_coupon=coupon.definition.id,  # type: ignore[union-attr]
                    **envelope,
                )
            )
            run.charges.extend(
                _redeem_charges(
                    run,
                    campaign,
                    LimitAction.REDEEM_COUPON,
                    scope,
                    usage_key(campaign.id, "coupon", coupon.stored),
                )
            )
            if run.profile_id:
                # Not a limit: what IntegrationCoupon.profileRedemptionCount reports.
                run.charges.append(
                    Charge(profile_usage_key(campaign.id, coupon.stored, run.profile_id), ONE)
                )
        if referral_rule and not referral_accepted and referral is not None:
            referral_accepted = True
            run.emit(Effect(EffectType.ACCEPT_REFERRAL, props={"value": referral.sent}, **envelope))
            run.charges.extend(
                _redeem_charges(
                    run,
                    campaign,
                    LimitAction.REDEEM_REFERRAL,
                    scope,
                    usage_key(campaign.id, "referral", referral.stored),
                )
            )
            if run.profile_id:
                # Not a limit: a friend is referred once per campaign (AlreadyReferred).
                run.charges.append(Charge(referred_key(campaign.id, run.profile_id), ONE))
        offset = len(run.effects)
        for effect in effects:
            # A None keeps the place of a discount overwritten within the rule,
            # so the charges' effect_ref offsets stay right.
            run.effects.append(effect)
            if effect is not None and effect.effect_type is EffectType.SET_DISCOUNT:
                run.discount_by_name[effect.props["name"]] = len(run.effects) - 1
        run.charges.extend(Charge(c.key, c.amount, offset + (c.effect_ref or 0)) for c in charges)
        rule_traces[rule.index] = RuleTrace(rule.index, rule.title, fired=True)
        if list_group is not None:
            applied_groups.add(list_group)
    for rule in campaign.rules:
        if rule.index not in rule_traces:
            failure = outcome.failed.get(rule.index)
            rule_traces[rule.index] = RuleTrace(
                rule.index, rule.title, fired=False, failure=failure
            )
            if failure is not None:
                run.failures.append(failure)
    run.trace.append(
        CampaignTrace(
            campaign.id,
            campaign.name,
            None,
            tuple(rule_traces[r.index] for r in campaign.rules),
            excluded=outcome.excluded.value if outcome.excluded else None,
        )
    )
    if coupon is not None and not coupon_accepted:
        _reject_unaccepted(
            run,
            EffectType.REJECT_COUPON,
            coupon.sent,
            campaign,
            outcome,
            budget_failures,
            CouponRejection,
            lambda r: r.uses_coupon_valid,
        )
    for extra in _extra_codes(run, campaign):
        run.reject(
            EffectType.REJECT_COUPON,
            extra.sent,
            campaign,
            _CodeCheck(
                CouponRejection.REJECTED_BY_CONDITION,
                f"campaign {campaign.name!r} already uses coupon {coupon.sent!r} from this "  # type: ignore[union-attr]
                "session: a campaign takes one coupon code per session",
            ),
        )
    if referral is not None and not referral_accepted:
        _reject_unaccepted(
            run,
            EffectType.REJECT_REFERRAL,
            referral.sent,
            campaign,
            outcome,
            budget_failures,
            ReferralRejection,
            lambda r: r.uses_referral_valid,
        )


def _redeem_charges(
    run: _Run,
    campaign: Campaign,
    action: LimitAction,
    scope: Mapping[LimitEntity, Sequence[str]],
    usage: CounterKey,
) -> list[Charge]:
    charges = [Charge(usage, Decimal(1))]
    for limit in campaign.limits_for(action):
        for key in _limit_keys(limit, campaign.id, scope, run.now) or ():
            charges.append(Charge(key, Decimal(1)))
    return charges


def _reject_unaccepted(
    run: _Run,
    effect_type: EffectType,
    code: str,
    campaign: Campaign,
    outcome: _CampaignOutcome,
    budget_failures: Mapping[int, tuple[int, str]],
    reasons: Any,
    uses_code: Callable[[Rule], bool],
) -> None:
    """A valid code no applied rule accepted: why (budgets, then group arbitration)."""
    code_rules = [r for r in campaign.rules if uses_code(r)]
    passed = [f.rule for f in outcome.fired if uses_code(f.rule)]
    # An excluded campaign's code is rejected for its group, unless every rule that
    # would have accepted it fails on a budget too: budgets come first.
    excluded_only = any(r.index not in budget_failures for r in passed)
    if passed and outcome.excluded is not None and excluded_only:
        run.reject(
            effect_type,
            code,
            campaign,
            _CodeCheck(
                reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
                f"campaign {campaign.name!r} was excluded by its evaluation group",
                outcome.excluded,
            ),
            rule=passed[0],
        )
        return
    for rule in passed:
        if rule.index in budget_failures:
            effect_index, details = budget_failures[rule.index]
            run.reject(
                effect_type,
                code,
                campaign,
                _CodeCheck(reasons.EFFECT_COULD_NOT_BE_APPLIED, details),
                rule=rule,
                effect_index=effect_index,
            )
            return
    deciding = next((r for r in code_rules if r.index in outcome.failed), None)
    if deciding is None:
        what = "coupon" if effect_type is EffectType.REJECT_COUPON else "referral"
        run.reject(
            effect_type,
            code,
            campaign,
            _CodeCheck(
                reasons.REJECTED_BY_CONDITION,
                f"no rule of campaign {campaign.name!r} checks that the {what} code is valid",
            ),
        )
        return
    failure = outcome.failed[deciding.index]
    run.reject(
        effect_type,
        code,
        campaign,
        _CodeCheck(reasons.REJECTED_BY_CONDITION, failure.details),
        rule=deciding,
        condition_index=failure.condition_index,
    )
