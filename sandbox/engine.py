"""The rule engine: a pure function from (session, world) to an Evaluation.

No I/O and no mutation of the sandbox: everything mutable lives in the
ledger and the session store of :class:`~sandbox.Sandbox`. One evaluation:

1. each submitted code is checked for validity and limits (reference section
   4.2 order), giving a candidate or a rejection;
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
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any

import attrs

from sandbox.conditions import Condition, NotABoolError, as_bool
from sandbox.effects import (
    AddFreeItem,
    EffectSpec,
    SetDiscount,
    SetDiscountPerItem,
    ShowNotification,
    TriggerWebhook,
    UpdateAttribute,
)
from sandbox.errors import RuleError
from sandbox.ledger import Charge, CounterKey, period_bucket, usage_key
from sandbox.models import (
    ARITHMETIC,
    MAX_MONEY,
    CartItem,
    NewCustomerSession,
    bound_problem,
    describe,
)
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
BASE_GROUP_ID = 1  # Talon.One's base group of every Application is stackable


@attrs.frozen
class Settings:
    precision: int = 2
    partial_discounts: bool = False
    rounding: str = ROUND_HALF_EVEN


@attrs.frozen
class World:
    """A read-only view of what an evaluation may look at."""

    campaigns: Sequence[Campaign]
    coupons: Mapping[str, tuple[Campaign, Coupon]]
    referrals: Mapping[str, tuple[Campaign, Referral]]
    counters: Mapping[CounterKey, Decimal]
    now: datetime
    settings: Settings
    normalize: Callable[[str], str]


class Context:
    """What a condition sees: one session, in one campaign, at one instant."""

    __slots__ = (
        "attributes",
        "campaign",
        "coupon",
        "coupon_valid",
        "identifiers",
        "items",
        "now",
        "profile_id",
        "referral",
        "referral_valid",
        "session",
        "total",
    )

    def __init__(self, session: NewCustomerSession, now: datetime) -> None:
        self.session = session
        self.total: Decimal = session.effective_total
        self.items: tuple[CartItem, ...] = session.cart_items or ()
        # DESIGN.md section 3: no context field is None; no profile is "".
        self.profile_id: str = session.profile_id or ""
        self.identifiers: tuple[str, ...] = session.identifiers or ()
        self.attributes: Mapping[str, Any] = MappingProxyType(session.attributes or {})
        self.now = now
        self.campaign: str | None = None
        self.coupon_valid: bool = False
        self.referral_valid: bool = False
        self.coupon: str | None = None
        self.referral: str | None = None

    def for_campaign(self, campaign: str) -> Context:
        """A copy for one campaign; the session-derived fields are computed once per run."""
        ctx = object.__new__(Context)
        ctx.session, ctx.total, ctx.items = self.session, self.total, self.items
        ctx.profile_id, ctx.identifiers, ctx.attributes = (
            self.profile_id,
            self.identifiers,
            self.attributes,
        )
        ctx.now, ctx.campaign = self.now, campaign
        ctx.coupon_valid = ctx.referral_valid = False
        ctx.coupon = ctx.referral = None
        return ctx

    def __repr__(self) -> str:
        return (
            f"Context(total={self.total}, profile_id={self.profile_id!r}, "
            f"items={len(self.items)}, campaign={self.campaign!r})"
        )


@attrs.frozen
class Evaluation:
    """The pure result of evaluating one session."""

    effects: tuple[Effect, ...]
    failures: tuple[RuleFailureReason, ...]
    trace: tuple[CampaignTrace, ...]
    charges: tuple[Charge, ...]
    """What closing the session would commit to the ledger."""


# ---------------------------------------------------------------------------
# Code checks (reference section 4.2 and DESIGN.md section 4, first failure wins)


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
    bucket = period_bucket(limit.period, now)
    return [
        CounterKey(campaign_id, limit.action.value, tuple(combo), bucket, limit.period)
        for combo in itertools.product(*values)
    ]


def _room(
    counters: Mapping[CounterKey, Decimal],
    key: CounterKey,
    limit: Limit,
    pending: Mapping[CounterKey, Decimal],
) -> Decimal:
    return limit.limit - counters.get(key, ZERO) - pending.get(key, ZERO)


class _Run:
    """Scratch state of one evaluation; discarded when it returns."""

    def __init__(self, session: NewCustomerSession, world: World) -> None:
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
        items = session.cart_items or ()
        self.total = session.effective_total
        self.session_left = self.total
        self.item_left = [item.line_total for item in items]
        self.discount_by_name: dict[str, int] = {}
        # The submitted codes, looked up once (case-normalised) for the whole run.
        normalize = world.normalize
        self.coupon_code = normalize(session.coupon) if session.coupon else None
        self.referral_code = normalize(session.referral) if session.referral else None
        self.coupon_entry = world.coupons.get(self.coupon_code) if self.coupon_code else None
        self.referral_entry = (
            world.referrals.get(self.referral_code) if self.referral_code else None
        )

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
        if not campaign.is_running(self.now):
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
            return _CodeCheck(
                reasons.PROFILE_REQUIRED, f"campaign {campaign.name!r} has a per-profile limit"
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


@attrs.define
class _Desired:
    """An effect a fired rule wants, before caps and budgets."""

    spec: EffectSpec
    effect_index: int
    value: Decimal | None = None  # discounts: rounded, before any cap
    position: int | None = None  # per-item discounts
    props: dict[str, Any] = attrs.Factory(dict)


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
    def __init__(self, data: Mapping[str, Any], seen: dict[str, Any]) -> None:
        self._data, self._seen = data, seen

    def __getitem__(self, key: str) -> Any:
        self._seen[f"attributes[{key!r}]"] = self._data.get(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._seen[f"attributes[{key!r}]"] = self._data.get(key, default)
        return self._data.get(key, default)

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._seen[f"{key!r} in attributes"] = key in self._data
        return key in self._data


def _details(condition: Condition, ctx: Context) -> str:
    recorder = _Recorder(ctx)
    with contextlib.suppress(Exception):  # details are best effort; the condition failed already
        condition.fn(recorder)  # type: ignore[arg-type]
    seen = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in recorder.seen.items()
    )
    return f"{condition.description}" + (f" (saw {seen})" if seen else "")


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
                details=_details(rule.conditions[failed_at], ctx),
            )
            continue
        outcome.fired.append(_FiredRule(rule, list(_desire(run, campaign, rule, ctx))))
    return outcome


def _failure(run: _Run, campaign: Campaign, rule: Rule, **fields: Any) -> RuleFailureReason:
    coupon, referral = run.coupon_entry, run.referral_entry
    coupon_def = coupon[1] if coupon and coupon[0] is campaign else None
    referral_def = referral[1] if referral and referral[0] is campaign else None
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


def _desire(run: _Run, campaign: Campaign, rule: Rule, ctx: Context) -> Iterable[_Desired]:
    for index, spec in enumerate(rule.effects):
        if isinstance(spec, SetDiscount):
            if spec.percent is not None:
                raw = run.total * spec.percent / 100
            else:
                raw = _amount_of(spec.amount, ctx, campaign, rule, index)
            yield _Desired(spec, index, value=raw.quantize(run.quantum, run.settings.rounding))
        elif isinstance(spec, SetDiscountPerItem):
            for position, item in enumerate(ctx.items):
                if spec.where is not None:
                    try:
                        matches = as_bool(spec.where(item))
                    except NotABoolError as exc:
                        raise RuleError(
                            campaign.name,
                            rule.title,
                            f"effect {index} where=",
                            problem=f"{exc}: where= must return True or False for each item",
                        ) from None
                    except Exception as exc:
                        raise RuleError(
                            campaign.name, rule.title, f"effect {index} where=", exc
                        ) from exc
                    if not matches:
                        continue
                line = item.line_total
                if spec.percent is not None:
                    raw = line * spec.percent / 100
                else:
                    # Per unit; the cap at the line happens when applied, so a capped
                    # item discount reports desiredValue (DESIGN.md section 4).
                    raw = _amount_of(spec.amount, ctx, campaign, rule, index) * item.quantity
                yield _Desired(
                    spec,
                    index,
                    value=raw.quantize(run.quantum, run.settings.rounding),
                    position=position,
                )
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
    item_left = list(run.item_left)
    overwritten: list[int] = []
    own_names: dict[str, int] = {}  # setDiscount name -> index in effects, this rule only
    settings = run.settings
    budgets: tuple[Any, Any] | None = None  # computed at the first discount, once per rule
    for desired in fired.desired:
        spec = desired.spec
        props = dict(desired.props)
        if desired.value is not None:
            want = desired.value
            assert isinstance(spec, SetDiscount | SetDiscountPerItem)
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
            cap = (
                session_left
                if desired.position is None
                else min(session_left, item_left[desired.position])
            )
            # A capped value is in currency precision too; rounded down so the cap holds
            # (a line of 3 x 0.333 gives 0.99 off, not 1.00).
            value = min(want, max(cap, ZERO).quantize(run.quantum, ROUND_DOWN))
            if budgets is None:
                budgets = (
                    _budget_keys(run, campaign, LimitAction.SET_DISCOUNT, scope),
                    _budget_keys(run, campaign, LimitAction.SET_DISCOUNT_EFFECT, scope),
                )
            (budget_keys, missing), (count_keys, missing_count) = budgets
            if missing or missing_count:
                return [], [], (desired.effect_index, missing or missing_count or "")
            for key, limit in count_keys:
                if _room(run.world.counters, key, limit, pending) < 1:
                    return [], [], (desired.effect_index, f"limit {limit.describe()} reached")
            room = min(
                (_room(run.world.counters, key, limit, pending) for key, limit in budget_keys),
                default=None,
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
            for key, _ in budget_keys:
                pending[key] = pending.get(key, ZERO) + value
                charges.append(Charge(key, value, effect_ref=len(effects)))
            for key, _ in count_keys:
                pending[key] = pending.get(key, ZERO) + 1
                charges.append(Charge(key, Decimal(1), effect_ref=len(effects)))
            session_left -= value
            if desired.position is not None:
                item_left[desired.position] -= value
                props.update(
                    name=f"{spec.name}#{desired.position}", value=value, position=desired.position
                )
            else:
                props.update(name=spec.name, value=value)
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
    run.item_left = item_left
    return effects, charges, None


def evaluate(session: NewCustomerSession, world: World) -> Evaluation:
    """Evaluate one session against the world; pure (see the module docstring).

    All arithmetic runs in :data:`sandbox.models.ARITHMETIC`, whose precision
    holds every value within the wire format's bounds exactly.
    """
    with decimal.localcontext(ARITHMETIC):
        return _evaluate(session, world)


def _evaluate(session: NewCustomerSession, world: World) -> Evaluation:
    run = _Run(session, world)

    # 1. Codes
    coupon_code, referral_code = run.coupon_code, run.referral_code
    coupon_entry, referral_entry = run.coupon_entry, run.referral_entry
    coupon_ok = referral_ok = False
    if session.coupon and coupon_entry is None:
        run.reject(
            EffectType.REJECT_COUPON, session.coupon, None, _CodeCheck(CouponRejection.NOT_FOUND)
        )
    elif coupon_entry is not None:
        coupon_check = run.check_coupon(*coupon_entry)
        if coupon_check is not None:
            run.reject(
                EffectType.REJECT_COUPON, session.coupon or "", coupon_entry[0], coupon_check
            )
        coupon_ok = coupon_check is None
    if session.referral and referral_entry is None:
        run.reject(
            EffectType.REJECT_REFERRAL,
            session.referral,
            None,
            _CodeCheck(ReferralRejection.NOT_FOUND),
        )
    elif referral_entry is not None:
        referral_check = run.check_referral(*referral_entry)
        if referral_check is not None:
            run.reject(
                EffectType.REJECT_REFERRAL,
                session.referral or "",
                referral_entry[0],
                referral_check,
            )
        referral_ok = referral_check is None
    coupon_campaign = coupon_entry[0] if coupon_ok and coupon_entry else None
    referral_campaign = referral_entry[0] if referral_ok and referral_entry else None

    # 2. Rules of running campaigns
    outcomes: list[_CampaignOutcome] = []
    base_ctx = Context(session, world.now)
    for campaign in world.campaigns:
        if campaign.state is CampaignState.ARCHIVED:
            run.trace.append(CampaignTrace(campaign.id, campaign.name, "archived"))
            continue
        if not campaign.is_running(world.now):
            run.trace.append(
                CampaignTrace(campaign.id, campaign.name, _not_running(campaign, world.now))
            )
            continue
        ctx = base_ctx.for_campaign(campaign.name)
        if campaign is coupon_campaign:
            ctx.coupon_valid, ctx.coupon = True, coupon_code
        if campaign is referral_campaign:
            ctx.referral_valid, ctx.referral = True, referral_code
        outcomes.append(_run_rules(run, campaign, ctx))

    # 3. Evaluation groups
    _arbitrate(outcomes)

    # 4. Application, in campaign order
    coupon_accepted = referral_accepted = False
    applied_groups: set[int] = set()  # listOrder groups whose first campaign applied
    for outcome in outcomes:
        campaign = outcome.campaign
        list_group = (
            campaign.group.id
            if campaign.group is not None and campaign.group.mode is GroupMode.LIST_ORDER
            else None
        )
        if list_group in applied_groups and outcome.triggered:
            outcome.excluded = ExclusionReason.IS_NOT_FIRST
        group_id, group_mode = _group_id(campaign), _group_mode(campaign).value
        has_coupon = campaign is coupon_campaign
        has_referral = campaign is referral_campaign
        scope = run._scope(
            campaign, coupon_code if has_coupon else None, referral_code if has_referral else None
        )
        rule_traces: dict[int, RuleTrace] = {}
        budget_failures: dict[int, tuple[int, str]] = {}
        for fired in outcome.fired:
            rule = fired.rule
            coupon_rule = has_coupon and rule.uses_coupon_valid
            referral_rule = has_referral and rule.uses_referral_valid
            triggered_by = coupon_entry[1].id if coupon_rule and coupon_entry else None
            if outcome.excluded is not None:
                outcome.failed[rule.index] = _failure(
                    run,
                    campaign,
                    rule,
                    details=f"campaign excluded by its evaluation group: {outcome.excluded.value}",
                )
                if coupon_rule or referral_rule:
                    # Budgets outrank group arbitration as a code's rejection reason
                    # (DESIGN.md section 4): would this rule have failed on one?
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
            if coupon_rule and not coupon_accepted and coupon_entry:
                coupon_accepted = True
                run.emit(
                    Effect(
                        EffectType.ACCEPT_COUPON,
                        props={"value": session.coupon},
                        triggered_by_coupon=coupon_entry[1].id,
                        **envelope,
                    )
                )
                run.charges.extend(
                    _redeem_charges(
                        run,
                        campaign,
                        LimitAction.REDEEM_COUPON,
                        scope,
                        usage_key(campaign.id, "coupon", coupon_entry[1].code),
                    )
                )
            if referral_rule and not referral_accepted and referral_entry:
                referral_accepted = True
                run.emit(
                    Effect(
                        EffectType.ACCEPT_REFERRAL, props={"value": session.referral}, **envelope
                    )
                )
                run.charges.extend(
                    _redeem_charges(
                        run,
                        campaign,
                        LimitAction.REDEEM_REFERRAL,
                        scope,
                        usage_key(campaign.id, "referral", referral_entry[1].code),
                    )
                )
            offset = len(run.effects)
            for effect in effects:
                # A None keeps the place of a discount overwritten within the rule,
                # so the charges' effect_ref offsets stay right.
                run.effects.append(effect)
                if effect is not None and effect.effect_type is EffectType.SET_DISCOUNT:
                    run.discount_by_name[effect.props["name"]] = len(run.effects) - 1
            run.charges.extend(
                Charge(c.key, c.amount, offset + (c.effect_ref or 0)) for c in charges
            )
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
        if has_coupon and not coupon_accepted and session.coupon:
            _reject_unaccepted(
                run,
                EffectType.REJECT_COUPON,
                session.coupon,
                campaign,
                outcome,
                budget_failures,
                CouponRejection,
                lambda r: r.uses_coupon_valid,
            )
        if has_referral and not referral_accepted and session.referral:
            _reject_unaccepted(
                run,
                EffectType.REJECT_REFERRAL,
                session.referral,
                campaign,
                outcome,
                budget_failures,
                ReferralRejection,
                lambda r: r.uses_referral_valid,
            )

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
    return Evaluation(emitted, tuple(run.failures), tuple(run.trace), final_charges)


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
    """A valid code no applied rule accepted: why (DESIGN.md section 4 order)."""
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
