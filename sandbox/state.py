"""What an update answers: effects, rule failure reasons, and the evaluated session.

Shapes follow Talon.One's ``Effect``, ``RuleFailureReason`` and
``IntegrationStateV2`` (reference sections 3.1, 9.1, 9.2); ``to_wire()`` gives
camelCase JSON-ready dicts, money as numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox.codec import to_plain, to_wire
from sandbox.models import NewCustomerSession, SessionState
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.display import Explanation

__all__ = ["CampaignTrace", "Effect", "IntegrationState", "RuleFailureReason", "RuleTrace"]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@attrs.frozen
class Effect:
    """One effect, in Talon.One's envelope; ``props`` uses wire names."""

    effect_type: EffectType
    campaign_id: int
    ruleset_id: int
    rule_index: int
    rule_name: str
    props: Mapping[str, Any] = attrs.field(hash=False)
    triggered_by_coupon: int | None = None
    condition_index: int | None = None
    evaluation_group_id: int | None = None
    evaluation_group_mode: str | None = None

    @property
    def value(self) -> Any:
        """``props.value``: the code for accept/reject, the amount for discounts."""
        return self.props.get("value")

    @property
    def name(self) -> str | None:
        return self.props.get("name")

    @property
    def rejection_reason(self) -> str | None:
        return self.props.get("rejectionReason")

    def to_wire(self) -> dict[str, Any]:
        envelope = {
            "campaignId": self.campaign_id,
            "rulesetId": self.ruleset_id,
            "ruleIndex": self.rule_index,
            "ruleName": self.rule_name,
            "effectType": self.effect_type.value,
            "triggeredByCoupon": self.triggered_by_coupon,
            "conditionIndex": self.condition_index,
            "evaluationGroupID": self.evaluation_group_id,
            "evaluationGroupMode": self.evaluation_group_mode,
        }
        return {**_drop_none(envelope), "props": to_plain(dict(self.props))}

    def __str__(self) -> str:
        props = ", ".join(f"{k}={v}" for k, v in self.props.items())
        # A code no campaign knows (CouponNotFound) has campaign -1 and no rule: say nothing.
        where = [f"campaign {self.campaign_id}"] if self.campaign_id >= 0 else []
        if self.rule_name:
            where.append(f"rule {self.rule_name!r}")
        return f"{self.effect_type.value}({props})" + (f" [{', '.join(where)}]" if where else "")


@attrs.frozen
class RuleFailureReason:
    """Why a rule did not fire (Talon.One's ``RuleFailureReason``)."""

    campaign_id: int
    campaign_name: str
    ruleset_id: int
    rule_index: int
    rule_name: str
    condition_index: int | None = None
    effect_index: int | None = None
    details: str = ""
    coupon_id: int | None = None
    coupon_value: str | None = None
    referral_id: int | None = None
    referral_value: str | None = None
    evaluation_group_id: int | None = None
    evaluation_group_mode: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return _drop_none(
            {
                "campaignID": self.campaign_id,
                "campaignName": self.campaign_name,
                "rulesetID": self.ruleset_id,
                "couponID": self.coupon_id,
                "couponValue": self.coupon_value,
                "referralID": self.referral_id,
                "referralValue": self.referral_value,
                "ruleIndex": self.rule_index,
                "ruleName": self.rule_name,
                "conditionIndex": self.condition_index,
                "effectIndex": self.effect_index,
                "details": self.details or None,
                "evaluationGroupID": self.evaluation_group_id,
                "evaluationGroupMode": self.evaluation_group_mode,
            }
        )


@attrs.frozen
class RuleTrace:
    """One rule's fate in one evaluation, for ``explain()``."""

    index: int
    title: str
    fired: bool
    failure: RuleFailureReason | None = None
    conditions: tuple[str, ...] = ()


@attrs.frozen
class CampaignTrace:
    """One campaign's fate: skipped (with why), or its rules' traces."""

    campaign_id: int
    name: str
    skipped: str | None
    rules: tuple[RuleTrace, ...] = ()
    excluded: str | None = None


@attrs.frozen
class IntegrationState:
    """The answer to an update, shaped like Talon.One's ``IntegrationStateV2``."""

    session_id: str
    session: NewCustomerSession
    effects: tuple[Effect, ...]
    rule_failure_reasons: tuple[RuleFailureReason, ...] = ()
    created_coupons: tuple[Any, ...] = ()
    created_referrals: tuple[Any, ...] = ()
    trace: tuple[CampaignTrace, ...] = attrs.field(default=(), eq=False, repr=False)
    dry: bool = attrs.field(default=False, eq=False)
    action: str = "update"
    """What answered: ``update`` (an evaluation), ``cancel``, ``reopen`` or ``return``."""

    # -- convenience for tests and notebooks --------------------------------

    def effects_of(self, effect_type: EffectType | str) -> list[Effect]:
        kind = EffectType(effect_type)
        return [e for e in self.effects if e.effect_type is kind]

    @property
    def accepted_coupons(self) -> list[str]:
        return [e.value for e in self.effects_of(EffectType.ACCEPT_COUPON)]

    @property
    def rejected_coupons(self) -> dict[str, str]:
        """Rejected coupon code -> Talon.One rejection reason."""
        return {e.value: str(e.rejection_reason) for e in self.effects_of(EffectType.REJECT_COUPON)}

    @property
    def accepted_referrals(self) -> list[str]:
        return [e.value for e in self.effects_of(EffectType.ACCEPT_REFERRAL)]

    @property
    def rejected_referrals(self) -> dict[str, str]:
        return {
            e.value: str(e.rejection_reason) for e in self.effects_of(EffectType.REJECT_REFERRAL)
        }

    @property
    def discounts(self) -> dict[str, Decimal]:
        """Discount name -> value, for ``setDiscount`` and ``setDiscountPerItem``."""
        return {
            e.props["name"]: e.props["value"] for e in self.effects if e.effect_type.is_discount
        }

    @property
    def rollbacks(self) -> list[Effect]:
        """The ``rollbackCoupon``/``rollbackReferral``/``rollbackDiscount`` effects of a
        cancel, reopen or return answer (empty for an evaluation)."""
        return [e for e in self.effects if e.effect_type in _ROLLBACKS]

    @property
    def total_discount(self) -> Decimal:
        return sum(self.discounts.values(), Decimal(0))

    @property
    def discounted_total(self) -> Decimal:
        return self.session.effective_total - self.total_discount

    # -- output -------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """Talon.One ``IntegrationStateV2``: camelCase, plain JSON types."""
        session = {"integrationId": self.session_id, **to_wire(self.session)}
        return {
            "customerSession": session,
            "effects": [e.to_wire() for e in self.effects],
            "ruleFailureReasons": [r.to_wire() for r in self.rule_failure_reasons],
            "createdCoupons": list(self.created_coupons),
            "createdReferrals": list(self.created_referrals),
        }

    def explain(self) -> Explanation:
        """Why each rule fired or not, campaign by campaign, as readable text.

        An answer to a cancel, reopen or return lists what was rolled back.
        The result is a ``str``; Jupyter renders it as tables.
        """
        from sandbox.display import Explanation

        return Explanation("\n".join(self._explain_lines()), self)

    def _explain_lines(self) -> Iterator[str]:
        s = self.session
        codes = ", ".join(
            f"{kind} {code!r}"
            for kind, code in (("coupon", s.coupon), ("referral", s.referral))
            if code
        )
        yield (
            f"session {self.session_id!r} ({s.state.value}), total {s.effective_total}"
            + (f", {codes}" if codes else "")
            + (" [dry run]" if self.dry else "")
        )
        for effect in self.effects:
            if effect.effect_type in _CODE_OUTCOMES:
                yield "  " + _code_outcome(effect)
        if self.action != "update":
            yield from self._lifecycle_lines()
            return
        if not self.trace:
            yield "  no campaigns to evaluate"
        for campaign in self.trace:
            head = f"campaign {campaign.campaign_id} {campaign.name!r}"
            if campaign.skipped:
                yield f"{head}: not evaluated ({campaign.skipped})"
                continue
            if campaign.excluded:
                why = _EXCLUSIONS.get(campaign.excluded, "")
                yield f"{head}: excluded by its evaluation group: {campaign.excluded}" + (
                    f" ({why})" if why else ""
                )
            else:
                yield f"{head}:"
            for rule in campaign.rules:
                yield "  " + self._explain_rule(campaign, rule)
        if self.total_discount:
            yield f"total discount {self.total_discount}, total after discounts {self.discounted_total}"
        if self.dry:
            yield "dry run: nothing was stored and no counter moved"
        elif s.state is SessionState.CLOSED:
            if self.accepted_coupons or self.accepted_referrals or self.discounts:
                yield "closed: the accepted codes and discounts above are committed to the counters"
            else:
                yield "closed: no code accepted and no discount given, so no limit counter moved"

    def _lifecycle_lines(self) -> Iterator[str]:
        """A cancel, reopen or return answer: what it rolled back."""
        state = self.session.state
        rollbacks = self.rollbacks
        if not rollbacks:
            if state is SessionState.CANCELLED:
                yield "  nothing to roll back: no code or discount was committed"
            elif state is SessionState.PARTIALLY_RETURNED:
                yield "  nothing to roll back: no discount applied to the returned items"
            else:
                yield "  nothing to roll back: the close committed no code and no discount"
            return
        if state is SessionState.PARTIALLY_RETURNED:
            head = "rolled back for the returned items:"
        elif state is SessionState.OPEN:
            head = "rolled back what the close committed (the session is open again):"
        else:
            head = "rolled back what the close committed:"
        yield head + (" [dry run: nothing changed]" if self.dry else "")
        for effect in rollbacks:
            yield f"  {effect.effect_type.value}: {_effect_phrase(effect)}{_origin(effect)}"
        total = sum(
            (e.props["value"] for e in rollbacks if e.effect_type is EffectType.ROLLBACK_DISCOUNT),
            Decimal(0),
        )
        if total:
            yield f"total discount rolled back {total}"

    def _explain_rule(self, campaign: CampaignTrace, rule: RuleTrace) -> str:
        head = f"rule {rule.index} {rule.title!r}"
        if rule.fired:
            gave = [
                _effect_phrase(e)
                for e in self.effects
                if e.campaign_id == campaign.campaign_id
                and e.rule_index == rule.index
                and e.effect_type not in _CODE_OUTCOMES
            ]
            return f"{head}: fired" + (f": {', '.join(gave)}" if gave else "")
        failure = rule.failure
        if failure is None:
            return f"{head}: did not fire"
        if campaign.excluded and failure.condition_index is None and failure.effect_index is None:
            return f"{head}: conditions held, effects dropped (campaign excluded)"
        if failure.condition_index is not None:
            return f"{head}: did not fire: condition {failure.condition_index} failed: {failure.details}"
        if failure.effect_index is not None:
            return (
                f"{head}: did not fire: effect {failure.effect_index} could not be applied: "
                f"{failure.details}"
            )
        return f"{head}: did not fire: {failure.details}"

    def __str__(self) -> str:
        return self.explain()

    def _repr_html_(self) -> str:
        from sandbox.display import integration_state_html

        return integration_state_html(self)


_CODE_OUTCOMES = frozenset(
    {
        EffectType.ACCEPT_COUPON,
        EffectType.REJECT_COUPON,
        EffectType.ACCEPT_REFERRAL,
        EffectType.REJECT_REFERRAL,
    }
)
_ROLLBACKS = frozenset(
    {EffectType.ROLLBACK_COUPON, EffectType.ROLLBACK_REFERRAL, EffectType.ROLLBACK_DISCOUNT}
)
_EXCLUSIONS = {
    "CampaignGaveLowerDiscount": "another campaign of the group won the discount comparison",
    "CampaignIsNotFirst": "an earlier campaign of its listOrder group applied",
    "CampaignNotInEvaluationSet": "the campaign is not in the group's evaluation set",
}


def _code_outcome(effect: Effect) -> str:
    kind = (
        "coupon"
        if effect.effect_type in (EffectType.ACCEPT_COUPON, EffectType.REJECT_COUPON)
        else "referral"
    )
    if effect.rejection_reason is None:
        return f"{kind} {effect.value!r} accepted"
    details = effect.props.get("details")
    return f"{kind} {effect.value!r} rejected: {effect.rejection_reason}" + (
        f" ({details})" if details else ""
    )


def _effect_phrase(effect: Effect) -> str:
    """One effect in a few words: ``discount '10% off' 8.00 (wanted 9.00) on item 1``."""
    props = effect.props
    kind = effect.effect_type
    if kind.is_discount or kind is EffectType.ROLLBACK_DISCOUNT:
        phrase = f"discount {props.get('name')!r} {props.get('value')}"
        if props.get("desiredValue") is not None:
            phrase += f" (wanted {props['desiredValue']})"
        position = props.get("position", props.get("cartItemPosition"))
        return phrase + (f" on item {position}" if position is not None else "")
    if kind is EffectType.ROLLBACK_COUPON:
        return f"coupon {effect.value!r}"
    if kind is EffectType.ROLLBACK_REFERRAL:
        return f"referral {effect.value!r}"
    return f"{kind.value}(" + ", ".join(f"{k}={v!r}" for k, v in props.items()) + ")"


def _origin(effect: Effect) -> str:
    return f" (campaign {effect.campaign_id}, rule {effect.rule_name!r})"
