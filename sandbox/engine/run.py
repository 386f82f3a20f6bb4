"""One evaluation: a pure function from (session, world) to an Evaluation.

No I/O and no mutation of the sandbox: everything mutable lives in the ledger and the
stores of :class:`~sandbox.Sandbox`. One evaluation walks the rule set's plan:

1. each submitted code is checked for validity and limits (in Talon.One's order of
   rejection reasons), giving a candidate or a rejection;
2. running campaigns, in order: rules top to bottom, conditions in order (stopping at
   the first false; a rule gated by ``couponValid``/``referralValid`` without a valid
   code fails there without a call), then the desired effects of fired rules;
3. evaluation groups arbitrate between triggered campaigns;
4. the winners' effects are applied in order (:mod:`sandbox.engine.apply`): discounts
   capped so nothing goes below zero and checked against budgets (committed counters
   plus this evaluation's own use); each code gets exactly one accept or reject.

Why each rule fired or not is recorded cheaply and built when read
(:mod:`sandbox.engine.results`).
"""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import attrs

from sandbox.conditions import NotABoolError, as_bool
from sandbox.engine import apply
from sandbox.engine.codes import CodeCheck, check_coupon, check_referral, is_running, not_running
from sandbox.engine.context import CampaignView, Context, Event
from sandbox.engine.desire import Desired, Slot, desire, quantizer
from sandbox.engine.plan import CampaignPlan, Plan, compile_plan
from sandbox.engine.results import (
    CONDITION,
    CampaignRecord,
    CreatedCode,
    Evaluation,
    Explainer,
)
from sandbox.errors import RuleError
from sandbox.ledger import Charge, CounterKey
from sandbox.models import ARITHMETIC, AnySession
from sandbox.profiles import CustomerProfile
from sandbox.rules import Campaign, Coupon, Referral
from sandbox.state import Effect
from sandbox.talon import (
    CampaignState,
    CouponRejection,
    EffectType,
    ExclusionReason,
    ReferralRejection,
)

__all__ = ["Run", "Settings", "World", "evaluate"]

ZERO = Decimal(0)
_ARCHIVED = CampaignState.ARCHIVED
_REJECT_COUPON = EffectType.REJECT_COUPON
_REJECT_REFERRAL = EffectType.REJECT_REFERRAL


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
    cost a rule discounts its id (``additionalCostId``). ``plan`` is the rule set
    compiled (made from ``campaigns`` when not given).
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
    plan: Plan | None = None
    event: Event | None = None
    """The event evaluated (None: a session update outside the lifecycle)."""


class Code:
    """A submitted code: as sent, as stored (case-normalised), and what it is, if anything."""

    __slots__ = ("campaign", "definition", "plan", "sent", "stored")

    def __init__(
        self,
        sent: str,
        stored: str,
        campaign: Campaign | None,
        definition: Coupon | Referral | None,
        plan: CampaignPlan | None,
    ) -> None:
        self.sent = sent
        self.stored = stored
        self.campaign = campaign
        self.definition = definition
        self.plan = plan


class FiredRule:
    __slots__ = ("desired", "rule")

    def __init__(self, rule: Any, desired: list[Desired]) -> None:
        self.rule = rule
        self.desired = desired


class CampaignOutcome:
    """A campaign after its rules ran: the fired ones, each rule's fate, its group verdict."""

    __slots__ = ("excluded", "fates", "fired", "plan")

    def __init__(self, plan: CampaignPlan, fates: list[Any], fired: list[FiredRule]) -> None:
        self.plan = plan
        self.fates = fates  # per rule: None (fired, fate decided when applied) or a failure
        self.fired = fired
        self.excluded: ExclusionReason | None = None

    @property
    def desired_discount(self) -> Decimal:
        return sum((d.value for f in self.fired for d in f.desired if d.value is not None), ZERO)


class Run:
    """Scratch state of one evaluation; discarded when it returns."""

    def __init__(self, session: AnySession, world: World, plan: Plan) -> None:
        self.session = session
        self.world = world
        self.plan = plan
        self.now = world.now
        settings = world.settings
        self.settings = settings
        self.flatten = settings.flatten_cart_items
        self.quantum = Decimal(1).scaleb(-settings.precision)
        self.quantize = quantizer(self.quantum, settings.rounding)
        self.profile_id = session.profile_id or None
        identifiers = session.identifiers
        self.identifiers: tuple[str, ...] = tuple(dict.fromkeys(identifiers)) if identifiers else ()
        self.effects: list[Effect | None] = []
        self.pending: dict[CounterKey, Decimal] = {}
        self.charges: list[Charge] = []
        self.total = session.effective_total
        self.session_left = self.total
        self.left: dict[Slot, Decimal] = {}  # what each item, unit and cost has left
        self.discount_by_name: dict[str, int] = {}
        self.created: list[CreatedCode] = []  # by create effects that applied
        self.budgets: dict[int, Any] = {}  # campaign id -> its budget counters, once per run
        # The code each campaign's rules see (its first valid code in the session).
        self.campaign_coupon: dict[int, Code] = {}
        self.campaign_referral: dict[int, Code] = {}
        self.records: list[CampaignRecord] = []
        self.coupons = [self._code(sent, world.coupons) for sent in session.coupon_codes or ()]
        referral = session.referral_code
        self.referral = self._code(referral, world.referrals) if referral else None

    def _code(self, sent: str, index: Mapping[str, tuple[Campaign, Any]]) -> Code:
        stored = self.world.normalize(sent)
        found = index.get(stored)
        if found is None:
            return Code(sent, stored, None, None, None)
        campaign, definition = found
        return Code(sent, stored, campaign, definition, self.plan.by_id.get(campaign.id))

    def check(self, code: Code) -> CodeCheck | None:
        """Step 1 for one code: why it is rejected, or None when it is valid."""
        assert code.plan is not None
        check = check_coupon if isinstance(code.definition, Coupon) else check_referral
        return check(
            code.plan,
            code.definition,  # type: ignore[arg-type]
            now=self.now,
            evaluable=self.world.evaluable,
            profile_id=self.profile_id,
            identifiers=self.identifiers,
            counters=self.world.counters,
        )

    def emit(self, effect: Effect) -> int:
        self.effects.append(effect)
        return len(self.effects) - 1


def evaluate(session: AnySession, world: World) -> Evaluation:
    """Evaluate one session against the world; pure (see the module docstring).

    All arithmetic runs in :data:`sandbox.models.ARITHMETIC`, whose precision holds
    every value within the wire format's bounds exactly.
    """
    plan = world.plan if world.plan is not None else compile_plan(world.campaigns)
    with decimal.localcontext(ARITHMETIC):
        return _evaluate(Run(session, world, plan))


def _check_codes(run: Run) -> None:
    """Step 1: each submitted code, on its own; a campaign takes the first valid one."""
    for code in run.coupons:
        if code.campaign is None or code.plan is None:
            apply.reject(run, _REJECT_COUPON, code.sent, None, CodeCheck(CouponRejection.NOT_FOUND))
            continue
        check = run.check(code)
        if check is not None:
            apply.reject(run, _REJECT_COUPON, code.sent, code.plan, check)
        elif code.campaign.id not in run.campaign_coupon:
            run.campaign_coupon[code.campaign.id] = code
        # A second valid code of a campaign that already has one is rejected after
        # the campaign's own code is decided (apply.extra_codes).
    referral = run.referral
    if referral is None:
        return
    if referral.campaign is None or referral.plan is None:
        apply.reject(
            run, _REJECT_REFERRAL, referral.sent, None, CodeCheck(ReferralRejection.NOT_FOUND)
        )
        return
    found = run.check(referral)
    if found is not None:
        apply.reject(run, _REJECT_REFERRAL, referral.sent, referral.plan, found)
    else:
        run.campaign_referral[referral.campaign.id] = referral


def _evaluate(run: Run) -> Evaluation:
    world = run.world
    now = world.now
    evaluable = world.evaluable

    # 1. Codes
    _check_codes(run)

    # 2. Rules of running campaigns
    skipped: list[tuple[int, str, str]] = []
    outcomes: list[CampaignOutcome] = []
    base_ctx: Context | None = None
    for plan in run.plan.campaigns:
        campaign = plan.campaign
        if campaign.state is _ARCHIVED:
            skipped.append((plan.id, plan.name, "archived"))
            continue
        if evaluable is not None and plan.id not in evaluable:
            skipped.append((plan.id, plan.name, "not in evaluableCampaignIds"))
            continue
        if not is_running(campaign, now, evaluable):
            skipped.append((plan.id, plan.name, not_running(campaign, now)))
            continue
        if base_ctx is None:
            base_ctx = Context(run.session, now, world.profile, world.event)
            if run.campaign_referral:
                # The session's one valid referral: every campaign's rules see its advocate.
                (valid,) = run.campaign_referral.values()
                base_ctx.advocate_id = valid.definition.advocate  # type: ignore[union-attr]
        # One context for the run; only the campaign's own fields change from campaign to
        # campaign (conditions and amounts use it while their campaign runs, never later).
        ctx = base_ctx
        ctx.campaign = plan.name
        coupon = run.campaign_coupon.get(plan.id)
        ctx.coupon_valid, ctx.coupon = (True, coupon.stored) if coupon else (False, None)
        referral = run.campaign_referral.get(plan.id)
        ctx.referral_valid, ctx.referral = (True, referral.stored) if referral else (False, None)
        outcomes.append(_run_rules(run, plan, ctx))

    # 3. Evaluation groups
    apply.arbitrate(outcomes)

    # 4. Application, in campaign order
    applied_groups: set[int] = set()  # listOrder groups whose first campaign applied
    for outcome in outcomes:
        apply.apply_campaign(run, outcome, applied_groups)

    # Charges point into run.effects, which keeps None for overwritten discounts; the
    # ledger and returns index the emitted effects, so renumber when there are gaps.
    effects = run.effects
    if None in effects:
        renumber = dict(zip((i for i, e in enumerate(effects) if e is not None), itertools.count()))
        charges = tuple(
            c if c.effect_ref is None else Charge(c.key, c.amount, renumber[c.effect_ref])
            for c in run.charges
        )
        emitted = tuple(e for e in effects if e is not None)
    else:
        charges = tuple(run.charges)
        emitted = tuple(effects)  # type: ignore[arg-type]
    explainer = Explainer(skipped, run.records)
    return Evaluation(emitted, explainer.failures, explainer.trace, charges, tuple(run.created))


def _run_rules(run: Run, plan: CampaignPlan, ctx: Context) -> CampaignOutcome:
    fates: list[Any] = []
    fired: list[FiredRule] = []
    view: CampaignView | None = None
    coupon_valid, referral_valid = ctx.coupon_valid, ctx.referral_valid
    for rule in plan.rules:
        gate = rule.gate
        if (gate == "coupon" and not coupon_valid) or (gate == "referral" and not referral_valid):
            # The rule's first condition is a code check that fails: nothing to call.
            view = view or CampaignView(ctx)
            fates.append((CONDITION, 0, view))
            continue
        failed_at = -1
        for index, fn in enumerate(rule.fns):
            try:
                ok = fn(ctx)
            except Exception as exc:
                condition = rule.conditions[index]
                raise RuleError(
                    plan.name, rule.title, f"condition {index} ({condition.description})", exc
                ) from exc
            if ok is not True and ok is not False:
                try:
                    ok = as_bool(ok)
                except NotABoolError as exc:
                    condition = rule.conditions[index]
                    raise RuleError(
                        plan.name,
                        rule.title,
                        f"condition {index} ({condition.description})",
                        problem=f"{exc}: a condition must return True or False",
                    ) from None
            if not ok:
                failed_at = index
                break
        if failed_at >= 0:
            view = view or CampaignView(ctx)
            fates.append((CONDITION, failed_at, view))
            continue
        fates.append(None)
        fired.append(FiredRule(rule, list(desire(run, plan, rule, ctx))))
    return CampaignOutcome(plan, fates, fired)
