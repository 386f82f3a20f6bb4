"""What an update answers: effects, rule failure reasons, and the evaluated session.

Shapes follow Talon.One's ``Effect``, ``RuleFailureReason`` and
``IntegrationStateV2``; ``to_wire()`` gives
camelCase JSON-ready dicts, money as numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from sandbox._html import html_of
from sandbox.codec import to_plain, to_wire
from sandbox.models import AnySession, ResponseContent, SessionState
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.profiles import CustomerProfile

__all__ = [
    "EXCLUSION_REASONS",
    "CampaignTrace",
    "Effect",
    "Explanation",
    "IntegrationState",
    "ProfileState",
    "RuleFailureReason",
    "RuleTrace",
    "SessionMeta",
    "effect_phrase",
    "wire_time",
]


def wire_time(moment: datetime) -> str:
    """RFC 3339 in UTC, as Talon.One writes it: ``2026-12-01T10:00:00Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@attrs.frozen
class SessionMeta:
    """The fields of a ``CustomerSessionV2`` that the sandbox computes.

    ``id`` is the sandbox's own counter; ``created``/``updated`` come from its
    clock; ``update_count`` is 1 on creation and +1 per update; ``first_session``
    is true for a profile's first session and for every anonymous one.
    """

    id: int
    created: datetime
    updated: datetime
    application_id: int
    first_session: bool
    update_count: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_META = SessionMeta(0, _EPOCH, _EPOCH, 0, True, 1)
_REQUIRED_PARTS = ("effects", "createdCoupons", "createdReferrals")


def _resolved(value: Any) -> Any:
    """A value that may be given as a callable working it out, worked out (for ``==``)."""
    return value() if callable(value) else value


class Resolving:
    """Pickling for a frozen attrs class some of whose fields may be callables working
    the value out when first read: they are worked out before the instance is pickled."""

    __slots__ = ()

    _lazy: ClassVar[frozenset[str]] = frozenset()

    def __getstate__(self) -> dict[str, Any]:
        names = [f.name for f in attrs.fields(type(self))]  # type: ignore[arg-type]
        return {
            name: _resolved(getattr(self, name)) if name in self._lazy else getattr(self, name)
            for name in names
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


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
    """Why a rule did not fire (Talon.One's ``RuleFailureReason``).

    ``details`` may be given as a callable: what a failing condition read is
    worked out only when someone reads it (explain(), the wire form, equality),
    not on every evaluation.
    """

    campaign_id: int
    campaign_name: str
    ruleset_id: int
    rule_index: int
    rule_name: str
    condition_index: int | None = None
    effect_index: int | None = None
    _details: str | Callable[[], str] = attrs.field(
        default="", alias="details", eq=lambda d: d() if callable(d) else d, repr=False
    )
    coupon_id: int | None = None
    coupon_value: str | None = None
    referral_id: int | None = None
    referral_value: str | None = None
    evaluation_group_id: int | None = None
    evaluation_group_mode: str | None = None

    @property
    def details(self) -> str:
        found = self._details
        if callable(found):
            found = found()
            object.__setattr__(self, "_details", found)  # worked out once
        return found

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


@attrs.frozen(getstate_setstate=False)  # Resolving's: lazy fields worked out first
class IntegrationState(Resolving):
    """The answer to an update, shaped like Talon.One's ``IntegrationStateV2``.

    ``session`` is the evaluated session model (V1 or V2, as sent; a V2
    update's is the merged session); ``meta`` the fields of its
    ``CustomerSessionV2`` the sandbox computes; ``extras`` the optional parts a
    request's ``responseContent`` asked for (``coupons``, ``triggeredCampaigns``,
    ...), as wire data taken at the moment of the answer.
    """

    session_id: str
    session: AnySession
    effects: tuple[Effect, ...]
    _rule_failure_reasons: (
        tuple[RuleFailureReason, ...] | Callable[[], tuple[RuleFailureReason, ...]]
    ) = attrs.field(default=(), alias="rule_failure_reasons", eq=_resolved)
    created_coupons: tuple[Any, ...] = ()
    created_referrals: tuple[Any, ...] = ()
    _trace: tuple[CampaignTrace, ...] | Callable[[], tuple[CampaignTrace, ...]] = attrs.field(
        default=(), alias="trace", eq=False, repr=False
    )
    dry: bool = attrs.field(default=False, eq=False)
    action: str = "update"
    """What answered: ``update`` (an evaluation), ``event`` (``sb.track_event``: no
    session in the answer), ``cancel``, ``reopen`` or ``return``."""
    meta: SessionMeta = attrs.field(default=_NO_META, repr=False)
    response_content: tuple[ResponseContent, ...] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    """What the request's ``responseContent`` asked for (None: not a V2 request)."""
    extras: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    event: Any = attrs.field(default=None, eq=False, repr=False)
    """The event ``sb.track_event`` evaluated (its ``type`` and ``attributes``), else None."""

    _lazy: ClassVar[frozenset[str]] = frozenset({"_rule_failure_reasons", "_trace"})

    @property
    def rule_failure_reasons(self) -> tuple[RuleFailureReason, ...]:
        """Why each rule did not fire (built when first read)."""
        found = self._rule_failure_reasons
        if callable(found):
            found = found()
            object.__setattr__(self, "_rule_failure_reasons", found)
        return found

    @property
    def trace(self) -> tuple[CampaignTrace, ...]:
        """Each campaign's fate, for ``explain()`` (built when first read)."""
        found = self._trace
        if callable(found):
            found = found()
            object.__setattr__(self, "_trace", found)
        return found

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
        """Discount name -> value, for every discount effect (``setDiscount``,
        ``setDiscountPerItem``, ``setDiscountPerAdditionalCost[PerItem]``); the
        units of a flattened item's discount add up under its one name."""
        found: dict[str, Decimal] = {}
        for e in self.effects:
            if e.effect_type.is_discount:
                name = e.props["name"]
                found[name] = found[name] + e.props["value"] if name in found else e.props["value"]
        return found

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

    def to_wire(
        self, response_content: Iterable[ResponseContent | str] | None = None
    ) -> dict[str, Any]:
        """Talon.One ``IntegrationStateV2``: camelCase, plain JSON types.

        Without arguments, every part this answer holds. With
        ``response_content`` (the request's list), the required parts
        (``effects``, ``createdCoupons``, ``createdReferrals``) plus exactly
        those named, as Talon.One answers an ``IntegrationRequest``.
        """
        wanted = None if response_content is None else {str(p) for p in response_content}
        parts: dict[str, Any] = {}
        if self.action != "event" and (
            wanted is None or ResponseContent.CUSTOMER_SESSION in wanted
        ):
            parts["customerSession"] = self.customer_session_wire()
        parts["effects"] = [e.to_wire() for e in self.effects]
        if wanted is None or ResponseContent.RULE_FAILURE_REASONS in wanted:
            parts["ruleFailureReasons"] = [r.to_wire() for r in self.rule_failure_reasons]
        parts["createdCoupons"] = [to_plain(c) for c in self.created_coupons]
        parts["createdReferrals"] = [to_plain(r) for r in self.created_referrals]
        for key, value in self.extras.items():
            if wanted is None or key in wanted:
                parts[key] = to_plain(value)
        return parts

    def customer_session_wire(self) -> dict[str, Any]:
        """The session as Talon.One's ``CustomerSessionV2``, whichever dialect it came in.

        A V1 session answers with ``couponCodes = [coupon]``, ``referralCode =
        referral`` and its client ``total``.
        """
        s, meta = self.session, self.meta
        sent = to_wire(s)
        for v1_key in ("coupon", "referral", "total"):
            sent.pop(v1_key, None)
        wire: dict[str, Any] = {
            "id": meta.id,
            "created": wire_time(meta.created),
            "integrationId": self.session_id,
            "applicationId": meta.application_id,
            "profileId": s.profile_id or "",
            **sent,
            "couponCodes": list(s.coupon_codes or ()),
            "state": s.state.value if s.state is not None else SessionState.OPEN.value,
            "cartItems": sent.get("cartItems", []),
            "attributes": sent.get("attributes", {}),
            "firstSession": meta.first_session,
            "updateCount": meta.update_count,
            "total": to_plain(s.effective_total),
            "cartItemTotal": to_plain(s.cart_item_total),
            "additionalCostTotal": to_plain(s.additional_cost_total),
            "cartItemAdditionalCostTotal": to_plain(s.cart_item_additional_cost_total),
            "updated": wire_time(meta.updated),
        }
        if s.referral_code:
            wire["referralCode"] = s.referral_code
        return wire

    def explain(self) -> Explanation:
        """Why each rule fired or not, campaign by campaign, as readable text.

        An answer to a cancel, reopen or return lists what was rolled back.
        The result is a ``str``; Jupyter renders it as tables.
        """
        return Explanation("\n".join(self._explain_lines()), self)

    def _explain_lines(self) -> Iterator[str]:
        s = self.session
        codes = ", ".join(
            [f"coupon {code!r}" for code in s.coupon_codes or ()]
            + ([f"referral {s.referral_code!r}"] if s.referral_code else [])
        )
        if self.action == "event":
            yield (
                f"event {self.session_id!r} of profile {s.profile_id or '(anonymous)'}"
                + (" [dry run]" if self.dry else "")
            )
        else:
            yield (
                f"session {self.session_id!r} ({(s.state or SessionState.OPEN).value}), "
                f"total {s.effective_total}"
                + (f", {codes}" if codes else "")
                + (" [dry run]" if self.dry else "")
            )
        for effect in self.effects:
            if effect.effect_type in _CODE_OUTCOMES:
                yield "  " + _code_outcome(effect)
        if self.action not in ("update", "event"):
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
                why = EXCLUSION_REASONS.get(campaign.excluded, "")
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
            yield f"  {effect.effect_type.value}: {effect_phrase(effect)}{_origin(effect)}"
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
                effect_phrase(e)
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
        return html_of(self)


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
EXCLUSION_REASONS = {
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


def effect_phrase(effect: Effect) -> str:
    """One effect in a few words: ``discount '10% off' 8.00 (wanted 9.00) on item 1``."""
    props = effect.props
    kind = effect.effect_type
    if kind.is_discount or kind is EffectType.ROLLBACK_DISCOUNT:
        phrase = f"discount {props.get('name')!r} {props.get('value')}"
        if props.get("desiredValue") is not None:
            phrase += f" (wanted {props['desiredValue']})"
        cost = props.get("additionalCost")
        if cost is not None:
            phrase += f" off {cost!r}"
        position = props.get("position", props.get("cartItemPosition"))
        if position is None:
            return phrase
        unit = props.get("subPosition", props.get("cartItemSubPosition"))
        return phrase + f" on item {position}" + (f" unit {unit}" if unit is not None else "")
    if kind is EffectType.ROLLBACK_COUPON:
        return f"coupon {effect.value!r}"
    if kind is EffectType.ROLLBACK_REFERRAL:
        return f"referral {effect.value!r}"
    return f"{kind.value}(" + ", ".join(f"{k}={v!r}" for k, v in props.items()) + ")"


def _origin(effect: Effect) -> str:
    return f" (campaign {effect.campaign_id}, rule {effect.rule_name!r})"


@attrs.frozen
class ProfileState:
    """The answer to ``update_profile`` (Talon.One's ``CustomerProfileIntegrationResponseV2``).

    ``evaluation`` is what the profile-triggered rules answered when they ran
    (``run_rule_engine=True``), else None: then ``effects`` is always empty, as
    Talon.One documents.
    """

    profile: CustomerProfile
    evaluation: IntegrationState | None = None
    dry: bool = attrs.field(default=False, eq=False)
    response_content: tuple[Any, ...] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def effects(self) -> tuple[Effect, ...]:
        return self.evaluation.effects if self.evaluation is not None else ()

    @property
    def rule_failure_reasons(self) -> tuple[RuleFailureReason, ...]:
        return self.evaluation.rule_failure_reasons if self.evaluation is not None else ()

    @property
    def created_coupons(self) -> tuple[Any, ...]:
        return self.evaluation.created_coupons if self.evaluation is not None else ()

    @property
    def created_referrals(self) -> tuple[Any, ...]:
        return self.evaluation.created_referrals if self.evaluation is not None else ()

    @property
    def discounts(self) -> dict[str, Decimal]:
        return self.evaluation.discounts if self.evaluation is not None else {}

    def to_wire(self, response_content: Iterable[Any] | None = None) -> dict[str, Any]:
        """``CustomerProfileIntegrationResponseV2``: the required ``effects``,
        ``createdCoupons``, ``createdReferrals``, plus what ``response_content`` names
        (everything this answer holds when called without it)."""
        wanted = None if response_content is None else {str(p) for p in response_content}
        parts: dict[str, Any] = {}
        if wanted is None or "customerProfile" in wanted:
            parts["customerProfile"] = self.profile.to_wire()
        parts["effects"] = [e.to_wire() for e in self.effects]
        if self.evaluation is not None and (wanted is None or "ruleFailureReasons" in wanted):
            parts["ruleFailureReasons"] = [r.to_wire() for r in self.rule_failure_reasons]
        parts["createdCoupons"] = [to_plain(c) for c in self.created_coupons]
        parts["createdReferrals"] = [to_plain(r) for r in self.created_referrals]
        if self.evaluation is not None:
            for key, value in self.evaluation.extras.items():
                if wanted is None or key in wanted:
                    parts[key] = to_plain(value)
        return parts

    def explain(self) -> str:
        """The profile as updated, then why each profile-triggered rule fired or not."""
        p = self.profile
        shown = ", ".join(f"{k}={v!r}" for k, v in p.attributes.items()) or "no attributes"
        lines = [
            f"profile {p.integration_id!r}: {shown}; {p.closed_sessions} closed session(s), "
            f"total sales {p.total_sales}" + (" [dry run]" if self.dry else "")
        ]
        if self.evaluation is None:
            lines.append("  rules not run (run_rule_engine=False)")
        else:
            lines.extend(self.evaluation.explain().splitlines()[1:])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def _repr_html_(self) -> str:
        return html_of(self)


class Explanation(str):
    """What ``IntegrationState.explain()`` returns: the explanation as text.

    It is a ``str`` (``str(x)``, ``print(x)``, ``in`` and ``==`` behave as
    before); Jupyter shows it as tables of rules fired and not fired, with the
    failing condition and the values it saw, and IPython's plain display
    prints the text instead of a quoted string full of ``\\n``.
    """

    state: IntegrationState | None

    def __new__(cls, text: str, state: IntegrationState | None = None) -> Explanation:
        made = super().__new__(cls, text)
        made.state = state
        return made

    def _repr_html_(self) -> str:
        return html_of(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
