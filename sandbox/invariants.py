"""Named invariants of the sandbox, for tests, state machines and ``fuzz``.

Each check raises :class:`InvariantViolation` (an ``AssertionError`` too, so
pytest reports it as a failed assertion) naming the invariant, the session and
the values involved. ``check_state`` and ``check_sandbox`` run the default
ones; ``INVARIANTS`` maps every name to its function.

When two answers to the same session from the same sandbox state differ
(:func:`deterministic`, or a dry run against the real update), the first rule
whose outcome differs is to blame: it keeps state outside the sandbox (a
module-level set, a counter, the wall clock). That is reported as
:class:`OutsideStateError`, naming the rule and its campaign, not as a
confusing mismatch of two answers.

>>> from sandbox import Sandbox
>>> sb = Sandbox(now="2026-12-01T10:00:00Z")
>>> check_state(sb.update("s1", {"profileId": "p1", "total": 10}))
>>> check_sandbox(sb)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from sandbox.errors import RuleError, SandboxError
from sandbox.models import AnySession, NewCustomerSession, SessionState
from sandbox.state import CampaignTrace, IntegrationState, RuleTrace
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.core import Sandbox

__all__ = [
    "DEFAULT_SANDBOX_INVARIANTS",
    "DEFAULT_STATE_INVARIANTS",
    "INVARIANTS",
    "OUTSIDE_STATE",
    "InvariantViolation",
    "OutsideStateError",
    "answers_agree",
    "cart_order_irrelevant",
    "check_sandbox",
    "check_state",
    "deterministic",
    "discounts_within_base",
    "dry_run_changes_nothing",
    "is_evaluation",
    "limits_hold",
    "one_outcome_per_code",
    "rejected_code_triggers_nothing",
    "usage_reconciles",
]

ZERO = Decimal(0)
_ROLLBACKS = (
    EffectType.ROLLBACK_COUPON,
    EffectType.ROLLBACK_REFERRAL,
    EffectType.ROLLBACK_DISCOUNT,
)
_PROBE_ID = "invariant-probe"
_CODE_OUTCOMES = (
    EffectType.ACCEPT_COUPON,
    EffectType.REJECT_COUPON,
    EffectType.ACCEPT_REFERRAL,
    EffectType.REJECT_REFERRAL,
)
OUTSIDE_STATE = "rules_keep_no_outside_state"
"""The name under which :class:`OutsideStateError` is reported."""


class InvariantViolation(SandboxError, AssertionError):  # noqa: N818 - reads as "an invariant violation"
    """An invariant does not hold: ``invariant`` names it, ``values`` shows why."""

    def __init__(
        self,
        invariant: str,
        detail: str,
        *,
        session_id: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        self.invariant = invariant
        self.session_id = session_id
        self.detail = detail
        self.values: dict[str, Any] = dict(values or {})
        where = f" in session {session_id!r}" if session_id is not None else ""
        shown = "".join(f"\n  {k} = {v!r}" for k, v in self.values.items())
        super().__init__(f"invariant {invariant!r} violated{where}: {detail}{shown}")


class OutsideStateError(InvariantViolation):
    """A rule answered differently for the same session and sandbox state.

    Its answer depends on something besides the session and the sandbox: a
    bug in the rules, not in the sandbox. ``campaign`` and ``rule`` name it;
    the first line of the message is the plain sentence, the next ones show
    the two outcomes. ``OutsideStateError.latest`` is the last one made, so a test
    runner can name the rule when Hypothesis ends a run as flaky.
    """

    latest: ClassVar[OutsideStateError | None] = None

    def __init__(
        self,
        campaign: str,
        rule: str,
        *,
        first: str,
        then: str,
        session_id: str | None = None,
    ) -> None:
        sentence = (
            f"rule {rule!r} in campaign {campaign!r} answered differently for the same "
            "session and sandbox state: it keeps state outside the sandbox"
        )
        super().__init__(
            OUTSIDE_STATE, sentence, session_id=session_id, values={"first": first, "then": then}
        )
        self.campaign = campaign
        self.rule = rule
        self.sentence = sentence
        OutsideStateError.latest = self
        where = f" in session {session_id!r}" if session_id is not None else ""
        self.args = (
            f"{sentence}\n  first{where}: {first}\n  then: {then}\n"
            "  a rule may depend only on its context (session, profile, clock); keep counts "
            "in the sandbox's limits and budgets, not in module-level variables",
        )


def answers_agree(
    first: IntegrationState,
    second: IntegrationState,
    *,
    invariant: str,
    detail: str,
    session_id: str | None = None,
) -> None:
    """Two answers to the same session from the same sandbox state are the same.

    Raises :class:`OutsideStateError` naming the first rule (in evaluation
    order) whose outcome differs, since everything before it saw the same
    inputs; or ``InvariantViolation(invariant, detail)`` when the answers
    differ although every rule answered alike (then the sandbox is to blame).
    Whether the answers were dry runs is not compared.
    """
    if first == second and first.trace == second.trace:
        return
    culprit = _first_differing_rule(first, second)
    if culprit is not None:
        campaign, one, other = culprit
        raise OutsideStateError(
            campaign.name,
            one.title,
            first=_rule_outcome(first, campaign, one),
            then=_rule_outcome(second, campaign, other),
            session_id=session_id,
        )
    raise InvariantViolation(
        invariant,
        detail,
        session_id=session_id,
        values={"first": first.to_wire(), "second": second.to_wire()},
    )


def _first_differing_rule(
    first: IntegrationState, second: IntegrationState
) -> tuple[CampaignTrace, RuleTrace, RuleTrace] | None:
    for one_campaign, other_campaign in zip(first.trace, second.trace, strict=False):
        if one_campaign.campaign_id != other_campaign.campaign_id:
            return None  # not the same rules: nothing to compare rule by rule
        for one, other in zip(one_campaign.rules, other_campaign.rules, strict=False):
            if (one.fired, one.failure) != (other.fired, other.failure) or _rule_effects(
                first, one_campaign, one
            ) != _rule_effects(second, other_campaign, other):
                return one_campaign, one, other
    return None


def _rule_effects(state: IntegrationState, campaign: CampaignTrace, rule: RuleTrace) -> list[Any]:
    return [
        e
        for e in state.effects
        if e.campaign_id == campaign.campaign_id
        and e.rule_index == rule.index
        and e.effect_type not in _CODE_OUTCOMES
    ]


def _rule_outcome(state: IntegrationState, campaign: CampaignTrace, rule: RuleTrace) -> str:
    # explain()'s own words for one rule, without its "rule N 'title': " head.
    line = state._explain_rule(campaign, rule)
    return line.removeprefix(f"rule {rule.index} {rule.title!r}: ")


def is_evaluation(state: IntegrationState) -> bool:
    """Whether ``state`` answers an evaluation (not a cancel, reopen or return).

    Rollback answers carry no accept or reject effects, so the per-code
    invariants do not apply to them.
    """
    return state.action == "update"


# ---------------------------------------------------------------------------
# One answer


def discounts_within_base(state: IntegrationState) -> None:
    """Discounts never exceed what they discount, and the total never goes below zero."""
    name = "discounts_within_base"
    sid = state.session_id
    total = state.session.effective_total
    items = state.session.cart_items or ()
    given = ZERO
    for effect in state.effects:
        if not effect.effect_type.is_discount:
            continue
        value = effect.props["value"]
        given += value
        if value < 0:
            raise InvariantViolation(
                name, "a discount is negative", session_id=sid, values={"effect": str(effect)}
            )
        if effect.effect_type is EffectType.SET_DISCOUNT and value > total:
            raise InvariantViolation(
                name,
                "a setDiscount exceeds the session total",
                session_id=sid,
                values={"effect": str(effect), "value": value, "total": total},
            )
        if effect.effect_type is EffectType.SET_DISCOUNT_PER_ITEM:
            position = effect.props.get("position")
            if not isinstance(position, int) or not 0 <= position < len(items):
                raise InvariantViolation(
                    name,
                    "a setDiscountPerItem names no cart item",
                    session_id=sid,
                    values={"effect": str(effect), "cart lines": len(items)},
                )
            line = items[position].line_total
            if value > line:
                raise InvariantViolation(
                    name,
                    f"a setDiscountPerItem exceeds the line total of cart item {position}",
                    session_id=sid,
                    values={"effect": str(effect), "value": value, "line total": line},
                )
    if given > total:
        raise InvariantViolation(
            name,
            "the discounts add up to more than the session total",
            session_id=sid,
            values={"total discount": given, "total": total},
        )
    if total - given < 0:
        raise InvariantViolation(
            name,
            "the discounted total is negative",
            session_id=sid,
            values={"discounted total": total - given},
        )


def one_outcome_per_code(state: IntegrationState) -> None:
    """Exactly one accept or reject per submitted coupon and referral, none for absent ones."""
    if not is_evaluation(state):
        return
    session = state.session
    kinds = (
        ("coupon", session.coupon_codes or (), EffectType.ACCEPT_COUPON, EffectType.REJECT_COUPON),
        (
            "referral",
            (session.referral_code,) if session.referral_code else (),
            EffectType.ACCEPT_REFERRAL,
            EffectType.REJECT_REFERRAL,
        ),
    )
    for kind, codes, accept, reject in kinds:
        outcomes = [e for e in state.effects if e.effect_type in (accept, reject)]
        for code in codes:
            mine = [e for e in outcomes if e.value == code]
            if len(mine) != 1:
                raise InvariantViolation(
                    "one_outcome_per_code",
                    f"{kind} {code!r} got {len(mine)} accept/reject effects, expected 1",
                    session_id=state.session_id,
                    values={"outcomes": [str(e) for e in outcomes]},
                )
        if len(outcomes) != len(codes):
            raise InvariantViolation(
                "one_outcome_per_code",
                f"{len(codes)} {kind} code(s) sent, {len(outcomes)} accept/reject effects given",
                session_id=state.session_id,
                values={"sent": list(codes), "outcomes": [str(e) for e in outcomes]},
            )


def rejected_code_triggers_nothing(state: IntegrationState) -> None:
    """A rejected coupon is not accepted, and no effect is triggered by a coupon that was
    not accepted (``triggeredByCoupon`` names accepted coupons only)."""
    if not is_evaluation(state):
        return  # rollbacks keep the triggeredByCoupon of what they roll back
    name = "rejected_code_triggers_nothing"
    rejected = state.rejected_coupons
    both = [code for code in state.accepted_coupons if code in rejected]
    if both:
        raise InvariantViolation(
            name,
            "a coupon is both rejected and accepted",
            session_id=state.session_id,
            values={"rejected": rejected, "accepted": state.accepted_coupons},
        )
    accepted_ids = {
        e.triggered_by_coupon
        for e in state.effects_of(EffectType.ACCEPT_COUPON)
        if e.triggered_by_coupon is not None
    }
    triggered = [
        str(e)
        for e in state.effects
        if e.triggered_by_coupon is not None and e.triggered_by_coupon not in accepted_ids
    ]
    if triggered:
        raise InvariantViolation(
            name,
            "effects carry triggeredByCoupon of a coupon that was not accepted",
            session_id=state.session_id,
            values={"rejected": rejected, "triggered": triggered},
        )


# ---------------------------------------------------------------------------
# The whole sandbox


def limits_hold(sb: Sandbox) -> None:
    """No limit counter is above its limit; no code is used more than its usage limit."""
    name = "limits_hold"
    for counter in sb.limit_counters():
        if counter.counter > counter.limit:
            raise InvariantViolation(
                name,
                f"campaign {counter.campaign_name!r}: {counter.action} counter is above its limit",
                values={
                    "scope": dict(counter.scope),
                    "bucket": counter.bucket,
                    "counter": counter.counter,
                    "limit": counter.limit,
                },
            )
    for kind, code, used, limit in _code_usage(sb):
        if limit > 0 and used > limit:
            raise InvariantViolation(
                name,
                f"{kind} {code!r} is used more often than its usage limit",
                values={"usage_counter": used, "usage_limit": limit},
            )


def usage_reconciles(sb: Sandbox) -> None:
    """Each code's usage counter equals the stored closed (or partially returned)
    sessions whose committed effects accepted it."""
    counted: dict[tuple[str, str], list[str]] = {}
    accepts = {EffectType.ACCEPT_COUPON: "coupon", EffectType.ACCEPT_REFERRAL: "referral"}
    for session_id, stored in sb.sessions.items():
        if stored.state not in (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED):
            continue
        for effect in stored.effects:
            kind = accepts.get(effect.effect_type)
            if kind is not None:
                key = (kind, sb.normalize_code(str(effect.value)))
                counted.setdefault(key, []).append(session_id)
    for kind, code, used, _ in _code_usage(sb):
        sessions = counted.pop((kind, code), [])
        if used != len(sessions):
            raise InvariantViolation(
                "usage_reconciles",
                f"{kind} {code!r}: the usage counter disagrees with the closed sessions that accepted it",
                values={"usage_counter": used, "accepting sessions": sorted(sessions)},
            )
    for (kind, code), sessions in counted.items():
        raise InvariantViolation(
            "usage_reconciles",
            f"closed sessions accepted the unknown {kind} {code!r}",
            values={"accepting sessions": sorted(sessions)},
        )


def _code_usage(sb: Sandbox) -> list[tuple[str, str, int, int]]:
    """(kind, code, usage counter, usage limit) of every coupon and referral."""
    found: list[tuple[str, str, int, int]] = []
    for campaign in sb.campaigns:
        for code in campaign.coupons:
            view = sb.get_coupon(code)
            found.append(("coupon", code, view.usage_counter, view.usage_limit))
        for code in campaign.referrals:
            ref = sb.get_referral(code)
            found.append(("referral", code, ref.usage_counter, ref.usage_limit))
    return found


# ---------------------------------------------------------------------------
# Probes: they evaluate, dry, and compare


def dry_run_changes_nothing(
    sb: Sandbox, session_id: str, session: AnySession | Mapping[str, Any]
) -> IntegrationState | None:
    """A dry update leaves the sandbox exactly as it was, even when it raises.

    Returns the dry answer, or ``None`` when the update was refused with a
    :class:`~sandbox.SandboxError`.
    """
    before = sb.snapshot()
    now = sb.now
    raised: RuleError | None = None
    try:
        state: IntegrationState | None = sb.update(session_id, session, dry=True)
    except RuleError as exc:  # not a refusal: a broken rule, reported as such below
        state, raised = None, exc
    except SandboxError:
        state = None
    after = sb.snapshot()
    if after != before or sb.now != now:
        raise InvariantViolation(
            "dry_run_changes_nothing",
            "a dry update changed the sandbox",
            session_id=session_id,
            values={"before": before, "after": after},
        )
    if raised is not None:
        raise raised
    return state


def deterministic(
    sb: Sandbox, session: AnySession | Mapping[str, Any], *, session_id: str = _PROBE_ID
) -> IntegrationState:
    """Two dry evaluations of the same session give the same answer.

    When a rule answered differently, raises :class:`OutsideStateError` naming it.
    """
    first = sb.update(session_id, session, dry=True)
    second = sb.update(session_id, session, dry=True)
    answers_agree(
        first,
        second,
        invariant="deterministic",
        detail="two dry evaluations of the same session differ",
        session_id=session_id,
    )
    return first


def cart_order_irrelevant(
    sb: Sandbox, session: NewCustomerSession, *, session_id: str = _PROBE_ID
) -> None:
    """Reversing the cart does not change the total discount (opt-in: rules may look at order)."""
    items = session.cart_items or ()
    if len(items) < 2:
        return
    reversed_session = attrs.evolve(session, cart_items=tuple(reversed(items)))
    forward = sb.update(session_id, session, dry=True).total_discount
    backward = sb.update(session_id, reversed_session, dry=True).total_discount
    if forward != backward:
        raise InvariantViolation(
            "cart_order_irrelevant",
            "reversing the cart items changed the total discount",
            session_id=session_id,
            values={"forward": forward, "reversed": backward},
        )


# ---------------------------------------------------------------------------
# Registry and runners

DEFAULT_STATE_INVARIANTS: tuple[Callable[[IntegrationState], None], ...] = (
    discounts_within_base,
    one_outcome_per_code,
    rejected_code_triggers_nothing,
)
DEFAULT_SANDBOX_INVARIANTS: tuple[Callable[[Sandbox], None], ...] = (
    limits_hold,
    usage_reconciles,
)

_ALL: tuple[Callable[..., Any], ...] = (
    *DEFAULT_STATE_INVARIANTS,
    *DEFAULT_SANDBOX_INVARIANTS,
    dry_run_changes_nothing,
    deterministic,
    cart_order_irrelevant,
)
INVARIANTS: Mapping[str, Callable[..., Any]] = {f.__name__: f for f in _ALL}


def check_state(state: IntegrationState) -> None:
    """Run every default invariant of one answer."""
    for invariant in DEFAULT_STATE_INVARIANTS:
        invariant(state)


def check_sandbox(sb: Sandbox) -> None:
    """Run every default invariant of the sandbox's counters and store."""
    for invariant in DEFAULT_SANDBOX_INVARIANTS:
        invariant(sb)
