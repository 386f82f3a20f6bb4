"""Arbitration by evaluation group, then application: caps, budgets, emitted effects,
and exactly one accept or reject per submitted code."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from sandbox.effects import (
    SetDiscount,
    SetDiscountPerAdditionalCost,
    SetDiscountPerAdditionalCostPerItem,
    SetDiscountPerItem,
)
from sandbox.engine.codes import CodeCheck, limit_keys, scope_of
from sandbox.engine.context import condition_details
from sandbox.engine.desire import Desired
from sandbox.engine.plan import CampaignPlan, RulePlan
from sandbox.engine.results import (
    CONDITION,
    EFFECT,
    EXCLUDED,
    FIRED,
    CampaignRecord,
    CreatedCode,
)
from sandbox.ledger import Charge, CounterKey, profile_usage_key, referred_key, usage_key
from sandbox.rules import Limit
from sandbox.state import Effect
from sandbox.talon import (
    CouponRejection,
    EffectType,
    ExclusionReason,
    GroupMode,
    LimitEntity,
    ReferralRejection,
)

if TYPE_CHECKING:
    from sandbox.engine.run import CampaignOutcome, Code, FiredRule, Run

__all__ = ["apply_campaign", "arbitrate", "reject"]

ZERO = Decimal(0)
ONE = Decimal(1)
_ACCEPT_COUPON = EffectType.ACCEPT_COUPON
_ACCEPT_REFERRAL = EffectType.ACCEPT_REFERRAL
_REJECT_COUPON = EffectType.REJECT_COUPON
_SET_DISCOUNT = EffectType.SET_DISCOUNT
_STACKABLE = GroupMode.STACKABLE.value


# ---------------------------------------------------------------------------
# Arbitration by evaluation group


def arbitrate(outcomes: list[CampaignOutcome]) -> None:
    """highestDiscount and lowestDiscount groups: one triggered campaign wins each."""
    groups: dict[int, list[CampaignOutcome]] = {}
    for outcome in outcomes:
        if outcome.plan.group is not None and outcome.fired:
            groups.setdefault(outcome.plan.group.id, []).append(outcome)
    for members in groups.values():
        mode = members[0].plan.group.mode  # type: ignore[union-attr]
        # listOrder is decided while applying (see apply_campaign): the first campaign
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
# Rejections


def reject(
    run: Run,
    effect_type: EffectType,
    code: str,
    plan: CampaignPlan | None,
    check: CodeCheck,
    *,
    rule: RulePlan | None = None,
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
    run.emit(
        Effect(
            effect_type=effect_type,
            campaign_id=plan.id if plan else -1,
            ruleset_id=plan.id if plan else -1,
            rule_index=rule.index if rule else -1,
            rule_name=rule.title if rule else "",
            props=props,
            condition_index=condition_index,
            evaluation_group_id=plan.group_id if plan else None,
            evaluation_group_mode=plan.group_mode if plan else None,
        )
    )


def extra_codes(run: Run, plan: CampaignPlan) -> list[Code]:
    """Valid codes of the campaign beyond the one its rules see."""
    used = run.campaign_coupon.get(plan.id)
    if used is None:
        return []
    return [
        code
        for code in run.coupons
        if code.plan is plan
        and code is not used
        and code.stored != used.stored
        and run.check(code) is None
    ]


def _reject_unaccepted(
    run: Run,
    effect_type: EffectType,
    code: str,
    outcome: CampaignOutcome,
    budget_failures: Mapping[int, tuple[int, str]],
    reasons: Any,
    uses_code: Callable[[RulePlan], bool],
    fates: Sequence[Any],
) -> None:
    """A valid code no applied rule accepted: why (budgets, then group arbitration)."""
    plan = outcome.plan
    code_rules = [r for r in plan.rules if uses_code(r)]
    passed = [f.rule for f in outcome.fired if uses_code(f.rule)]
    # An excluded campaign's code is rejected for its group, unless every rule that
    # would have accepted it fails on a budget too: budgets come first.
    excluded_only = any(r.index not in budget_failures for r in passed)
    if passed and outcome.excluded is not None and excluded_only:
        reject(
            run,
            effect_type,
            code,
            plan,
            CodeCheck(
                reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
                f"campaign {plan.name!r} was excluded by its evaluation group",
                outcome.excluded,
            ),
            rule=passed[0],
        )
        return
    for rule in passed:
        if rule.index in budget_failures:
            effect_index, details = budget_failures[rule.index]
            reject(
                run,
                effect_type,
                code,
                plan,
                CodeCheck(reasons.EFFECT_COULD_NOT_BE_APPLIED, details),
                rule=rule,
                effect_index=effect_index,
            )
            return
    deciding = next((r for r in code_rules if fates[r.index] is not FIRED), None)
    if deciding is None:
        what = "coupon" if effect_type is _REJECT_COUPON else "referral"
        reject(
            run,
            effect_type,
            code,
            plan,
            CodeCheck(
                reasons.REJECTED_BY_CONDITION,
                f"no rule of campaign {plan.name!r} checks that the {what} code is valid",
            ),
        )
        return
    condition_index, details = _why_failed(deciding, fates[deciding.index])
    reject(
        run,
        effect_type,
        code,
        plan,
        CodeCheck(reasons.REJECTED_BY_CONDITION, details),
        rule=deciding,
        condition_index=condition_index,
    )


# ---------------------------------------------------------------------------
# Budgets and caps


def _budget_keys(
    run: Run,
    plan: CampaignPlan,
    limits: Sequence[Limit],
    scope: Mapping[LimitEntity, Sequence[str]],
) -> tuple[list[tuple[CounterKey, Limit]], str | None]:
    """The budget counters an effect charges, or why it cannot be charged."""
    found: list[tuple[CounterKey, Limit]] = []
    for limit in limits:
        keys = limit_keys(limit, plan.id, scope, run.now)
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


def _discount_props(run: Run, desired: Desired, value: Decimal) -> dict[str, Any]:
    spec = desired.spec
    if isinstance(spec, SetDiscount):
        return {"name": spec.name, "value": value}
    props: dict[str, Any]
    if isinstance(spec, SetDiscountPerItem):
        props = {"name": f"{spec.name}#{desired.position}", "value": value}
        props["position"] = desired.position
        if desired.sub_position is not None:
            props["subPosition"] = desired.sub_position
        return props
    assert isinstance(spec, SetDiscountPerAdditionalCost | SetDiscountPerAdditionalCostPerItem)
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
    return props


def _apply_rule(
    run: Run,
    plan: CampaignPlan,
    fired: FiredRule,
    scope: Mapping[LimitEntity, Sequence[str]],
    triggered_by: int | None,
    *,
    trial: bool = False,
) -> tuple[list[Effect | None], list[Charge], tuple[int, str] | None]:
    """Caps and budgets for one fired rule; all of it applies, or none of it.

    What the rule uses is written to overlays of the run's counters and slots, and
    merged into the run only when every effect applied. A ``trial`` only says whether
    the rule would fail on a budget; the run is left as is.
    """
    effects: list[Effect | None] = []
    charges: list[Charge] = []
    run_pending, run_left = run.pending, run.left
    pending: dict[CounterKey, Decimal] = {}  # this rule's overlay of run.pending
    left: dict[Any, Decimal] = {}  # and of run.left
    session_left = run.session_left
    counters = run.world.counters
    overwritten: list[int] = []
    own_names: dict[str, int] = {}  # setDiscount name -> index in effects, this rule only
    budgets: tuple[Any, Any] | None = None  # computed at the first discount, once per rule
    created: list[CreatedCode] = []
    quantum = run.quantum
    partial = run.settings.partial_discounts
    rule = fired.rule
    campaign_id, group_id, group_mode = plan.id, plan.group_id, plan.group_mode
    rule_index, rule_title = rule.index, rule.title

    def used(key: CounterKey) -> Decimal:
        found = pending.get(key)
        return run_pending.get(key, ZERO) if found is None else found

    for desired in fired.desired:
        spec = desired.spec
        if desired.missing is not None:
            return [], [], (desired.effect_index, desired.missing)
        if desired.created is not None:
            code = desired.created.code
            if any(c.code == code for c in (*run.created, *created)):
                return [], [], (desired.effect_index, f"the code {code!r} is already created")
            created.append(desired.created)
        want = desired.value
        if want is None:
            props = dict(desired.props) if desired.props else {}
        else:
            value = want
            named = spec.name if isinstance(spec, SetDiscount) else None
            if named is not None and named in own_names:
                # The same name twice in one rule: the later one overwrites too.
                mine = own_names.pop(named)
                replaced = effects[mine]
                assert replaced is not None
                effects[mine] = None
                session_left += replaced.props["value"]
                for charge in charges:
                    if charge.effect_ref == mine:
                        pending[charge.key] = used(charge.key) - charge.amount
                charges = [c for c in charges if c.effect_ref != mine]
            elif named is not None and named in run.discount_by_name:
                # Same name overwrites: the earlier discount's room comes back first.
                earlier_index = run.discount_by_name[named]
                earlier = run.effects[earlier_index]
                if earlier is not None and earlier_index not in overwritten:
                    overwritten.append(earlier_index)
                    session_left += earlier.props["value"]
                    for charge in run.charges:
                        if charge.effect_ref == earlier_index:
                            pending[charge.key] = used(charge.key) - charge.amount
            cap = session_left
            slot = desired.slot
            slot_left = ZERO
            if slot is not None:
                found = left.get(slot)
                if found is None:
                    found = run_left.get(slot)
                slot_left = desired.base if found is None else found
                if slot_left < cap:
                    cap = slot_left
            # A capped value is in currency precision too; rounded down so the cap holds
            # (a line of 3 x 0.333 gives 0.99 off, not 1.00).
            if value > cap:
                value = max(cap, ZERO).quantize(quantum, ROUND_DOWN)
            if budgets is None:
                budgets = run.budgets.get(campaign_id)
                if budgets is None:
                    budgets = run.budgets[campaign_id] = (
                        _budget_keys(run, plan, plan.discount_limits, scope),
                        _budget_keys(run, plan, plan.effect_limits, scope),
                    )
            (budget_keys, missing), (count_keys, missing_count) = budgets
            if missing or missing_count:
                return [], [], (desired.effect_index, missing or missing_count or "")
            if count_keys:
                for key, limit in count_keys:
                    if limit.limit - counters.get(key, ZERO) - used(key) < 1:
                        return [], [], (desired.effect_index, f"limit {limit.describe()} reached")
            if budget_keys:
                room = min(
                    limit.limit - counters.get(key, ZERO) - used(key) for key, limit in budget_keys
                )
                if value > room:
                    # What is left is given in currency precision, rounded down so the
                    # budget holds; less than one unit of it is as good as nothing.
                    room = max(room, ZERO).quantize(quantum, ROUND_DOWN)
                    if not partial or not room:
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
                    pending[key] = used(key) + value
                    charges.append(Charge(key, value, effect_ref=len(effects)))
            if count_keys:
                for key, _ in count_keys:
                    pending[key] = used(key) + 1
                    charges.append(Charge(key, ONE, effect_ref=len(effects)))
            session_left -= value
            if slot is not None:
                left[slot] = slot_left - value
            props = _discount_props(run, desired, value)
            if named is not None:
                own_names[named] = len(effects)
            if value != want:
                props["desiredValue"] = want
        effects.append(
            Effect(
                spec.effect_type,
                campaign_id,
                campaign_id,
                rule_index,
                rule_title,
                props,
                triggered_by,
                None,
                group_id,
                group_mode,
            )
        )
    if trial:
        return effects, charges, None
    # The rule applies: merge its overlays into the run.
    for index in overwritten:
        assert run.effects[index] is not None
        run.effects[index] = None
        run.charges = [c for c in run.charges if c.effect_ref != index]
    run_pending.update(pending)
    run.session_left = session_left
    run_left.update(left)
    run.created.extend(created)
    return effects, charges, None


def _redeem_charges(
    run: Run,
    plan: CampaignPlan,
    limits: Sequence[Limit],
    scope: Mapping[LimitEntity, Sequence[str]],
    usage: CounterKey,
) -> list[Charge]:
    charges = [Charge(usage, ONE)]
    for limit in limits:
        for key in limit_keys(limit, plan.id, scope, run.now) or ():
            charges.append(Charge(key, ONE))
    return charges


# ---------------------------------------------------------------------------
# One campaign


def apply_campaign(run: Run, outcome: CampaignOutcome, applied_groups: set[int]) -> None:
    plan = outcome.plan
    fates = outcome.fates
    coupon = run.campaign_coupon.get(plan.id)
    referral = run.campaign_referral.get(plan.id)
    coupon_def = coupon.definition if coupon else None
    referral_def = referral.definition if referral else None
    if not outcome.fired and coupon is None and referral is None:
        # Nothing fired and no code to decide: only the why of each rule.
        run.records.append(CampaignRecord(plan, fates, None, coupon_def, referral_def))  # type: ignore[arg-type]
        return
    list_group = plan.list_group
    if list_group is not None and list_group in applied_groups and outcome.fired:
        outcome.excluded = ExclusionReason.IS_NOT_FIRST
    scope = scope_of(
        coupon.stored if coupon else None,
        referral.stored if referral else None,
        run.profile_id,
        run.identifiers,
    )
    coupon_accepted = referral_accepted = False
    fates = list(fates)
    budget_failures: dict[int, tuple[int, str]] = {}
    excluded = outcome.excluded
    for fired in outcome.fired:
        rule = fired.rule
        coupon_rule = coupon is not None and rule.uses_coupon
        referral_rule = referral is not None and rule.uses_referral
        triggered_by = coupon_def.id if coupon_rule and coupon_def else None
        if excluded is not None:
            fates[rule.index] = (
                EXCLUDED,
                f"campaign excluded by its evaluation group: {excluded.value}",
            )
            if coupon_rule or referral_rule:
                # Budgets outrank group arbitration as a code's rejection reason
                # (Talon.One's order of reasons): would this rule have failed on one?
                failed = _apply_rule(run, plan, fired, scope, triggered_by, trial=True)[2]
                if failed is not None:
                    budget_failures[rule.index] = failed
            continue
        effects, charges, failed = _apply_rule(run, plan, fired, scope, triggered_by)
        if failed is not None:
            budget_failures[rule.index] = failed
            fates[rule.index] = (EFFECT, failed[0], failed[1])
            continue
        envelope: dict[str, Any] = {
            "campaign_id": plan.id,
            "ruleset_id": plan.id,
            "rule_index": rule.index,
            "rule_name": rule.title,
            "evaluation_group_id": plan.group_id,
            "evaluation_group_mode": plan.group_mode,
        }
        if coupon_rule and not coupon_accepted and coupon is not None:
            coupon_accepted = True
            run.emit(
                Effect(
                    _ACCEPT_COUPON,
                    props={"value": coupon.sent},
                    triggered_by_coupon=coupon_def.id,  # type: ignore[union-attr]
                    **envelope,
                )
            )
            run.charges.extend(
                _redeem_charges(
                    run,
                    plan,
                    plan.redeem_coupon_limits,
                    scope,
                    usage_key(plan.id, "coupon", coupon.stored),
                )
            )
            if run.profile_id:
                # Not a limit: what IntegrationCoupon.profileRedemptionCount reports.
                run.charges.append(
                    Charge(profile_usage_key(plan.id, coupon.stored, run.profile_id), ONE)
                )
        if referral_rule and not referral_accepted and referral is not None:
            referral_accepted = True
            run.emit(Effect(_ACCEPT_REFERRAL, props={"value": referral.sent}, **envelope))
            run.charges.extend(
                _redeem_charges(
                    run,
                    plan,
                    plan.redeem_referral_limits,
                    scope,
                    usage_key(plan.id, "referral", referral.stored),
                )
            )
            if run.profile_id:
                # Not a limit: a friend is referred once per campaign (AlreadyReferred).
                run.charges.append(Charge(referred_key(plan.id, run.profile_id), ONE))
        offset = len(run.effects)
        for effect in effects:
            # A None keeps the place of a discount overwritten within the rule,
            # so the charges' effect_ref offsets stay right.
            run.effects.append(effect)
            if effect is not None and effect.effect_type is _SET_DISCOUNT:
                run.discount_by_name[effect.props["name"]] = len(run.effects) - 1
        run.charges.extend(Charge(c.key, c.amount, offset + (c.effect_ref or 0)) for c in charges)
        fates[rule.index] = FIRED
        if list_group is not None:
            applied_groups.add(list_group)
    run.records.append(
        CampaignRecord(
            plan,
            fates,
            excluded.value if excluded else None,
            coupon_def,  # type: ignore[arg-type]
            referral_def,  # type: ignore[arg-type]
        )
    )
    if coupon is not None and not coupon_accepted:
        _reject_unaccepted(
            run,
            _REJECT_COUPON,
            coupon.sent,
            outcome,
            budget_failures,
            CouponRejection,
            lambda r: r.uses_coupon,
            fates,
        )
    for extra in extra_codes(run, plan):
        reject(
            run,
            _REJECT_COUPON,
            extra.sent,
            plan,
            CodeCheck(
                CouponRejection.REJECTED_BY_CONDITION,
                f"campaign {plan.name!r} already uses coupon {coupon.sent!r} from this "  # type: ignore[union-attr]
                "session: a campaign takes one coupon code per session",
            ),
        )
    if referral is not None and not referral_accepted:
        _reject_unaccepted(
            run,
            EffectType.REJECT_REFERRAL,
            referral.sent,
            outcome,
            budget_failures,
            ReferralRejection,
            lambda r: r.uses_referral,
            fates,
        )


def _why_failed(rule: RulePlan, fate: Any) -> tuple[int | None, str]:
    """A failed rule's condition index (None when not a condition) and details, as a
    code rejection states them."""
    if fate[0] is CONDITION:
        condition_index, view = fate[1], fate[2]
        return condition_index, condition_details(rule.conditions[condition_index], view.context())
    if fate[0] is EFFECT:
        return None, fate[2]
    return None, fate[1]
