"""What an evaluation returns, and the why of each rule, built only when read.

An evaluation keeps its effects, the charges closing would commit and the codes its
create effects made. Why each rule fired or not (Talon.One's ``ruleFailureReasons``
and the traces ``explain()`` reads) is kept as the run recorded it, a few tuples per
campaign, and turned into :class:`~sandbox.state.RuleFailureReason` and trace objects
the first time someone reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import attrs

from sandbox.engine.context import CampaignView, condition_details
from sandbox.engine.plan import CampaignPlan
from sandbox.ledger import Charge
from sandbox.rules import Coupon, Referral
from sandbox.state import CampaignTrace, Effect, Resolving, RuleFailureReason, RuleTrace

__all__ = ["CampaignRecord", "CreatedCode", "Evaluation", "Explainer"]


def _resolved(value: Any) -> Any:
    return value() if callable(value) else value


@attrs.frozen(getstate_setstate=False)  # Resolving's: lazy fields worked out first
class Evaluation(Resolving):
    """The pure result of evaluating one session.

    ``failures`` and ``trace`` may be given as a callable: they are worked out when
    first read (``explain()``, the wire form's ``ruleFailureReasons``, equality).
    """

    effects: tuple[Effect, ...]
    _failures: tuple[RuleFailureReason, ...] | Callable[[], tuple[RuleFailureReason, ...]] = (
        attrs.field(alias="failures", eq=_resolved, repr=False)
    )
    _trace: tuple[CampaignTrace, ...] | Callable[[], tuple[CampaignTrace, ...]] = attrs.field(
        alias="trace", eq=_resolved, repr=False
    )
    charges: tuple[Charge, ...]
    """What closing the session would commit to the ledger."""
    created: tuple[CreatedCode, ...] = ()
    """The codes create effects made: they exist once the session closes."""

    _lazy: ClassVar[frozenset[str]] = frozenset({"_failures", "_trace"})

    @property
    def failures(self) -> tuple[RuleFailureReason, ...]:
        found = self._failures
        if callable(found):
            found = found()
            object.__setattr__(self, "_failures", found)
        return found

    @property
    def trace(self) -> tuple[CampaignTrace, ...]:
        found = self._trace
        if callable(found):
            found = found()
            object.__setattr__(self, "_trace", found)
        return found


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


# A rule's fate, as the run records it:
#   FIRED                                      it fired and applied
#   (CONDITION, index, view)                   condition ``index`` failed (view: what it saw)
#   (EFFECT, index, details)                   effect ``index`` could not be applied
#   (EXCLUDED, details)                        its campaign lost its group's arbitration
FIRED = "fired"
CONDITION = "condition"
EFFECT = "effect"
EXCLUDED = "excluded"


class CampaignRecord:
    """One evaluated campaign: each rule's fate, its group verdict, the codes it saw."""

    __slots__ = ("coupon", "excluded", "fates", "plan", "referral")

    def __init__(
        self,
        plan: CampaignPlan,
        fates: list[Any],
        excluded: str | None,
        coupon: Coupon | None,
        referral: Referral | None,
    ) -> None:
        self.plan = plan
        self.fates = fates
        self.excluded = excluded
        self.coupon = coupon
        self.referral = referral


class Explainer:
    """Builds an evaluation's failures and traces, once, from what its run recorded.

    ``skipped`` are the campaigns not evaluated (archived, not running, not in a dry
    run's evaluableCampaignIds) with why; the trace lists them first, then the
    evaluated campaigns in order, as the engine always has.
    """

    __slots__ = ("_built", "records", "skipped")

    def __init__(self, skipped: list[tuple[int, str, str]], records: list[CampaignRecord]) -> None:
        self.skipped = skipped
        self.records = records
        self._built: tuple[tuple[RuleFailureReason, ...], tuple[CampaignTrace, ...]] | None = None

    def failures(self) -> tuple[RuleFailureReason, ...]:
        return self._build()[0]

    def trace(self) -> tuple[CampaignTrace, ...]:
        return self._build()[1]

    def _build(self) -> tuple[tuple[RuleFailureReason, ...], tuple[CampaignTrace, ...]]:
        if self._built is not None:
            return self._built
        failures: list[RuleFailureReason] = []
        traces = [CampaignTrace(cid, name, why) for cid, name, why in self.skipped]
        for record in self.records:
            plan = record.plan
            rules = []
            for rule, fate in zip(plan.rules, record.fates, strict=True):
                if fate is FIRED:
                    rules.append(RuleTrace(rule.index, rule.title, fired=True))
                    continue
                failure = self._failure(record, rule.index, rule.title, fate)
                failures.append(failure)
                rules.append(RuleTrace(rule.index, rule.title, fired=False, failure=failure))
            traces.append(
                CampaignTrace(plan.id, plan.name, None, tuple(rules), excluded=record.excluded)
            )
        self._built = (tuple(failures), tuple(traces))
        self.records = []  # what was recorded is no longer needed (it holds contexts)
        return self._built

    @staticmethod
    def _failure(
        record: CampaignRecord, index: int, title: str, fate: tuple[Any, ...]
    ) -> RuleFailureReason:
        plan, coupon, referral = record.plan, record.coupon, record.referral
        fields: dict[str, Any]
        if fate[0] is CONDITION:
            condition_index, view = fate[1], fate[2]
            condition = plan.rules[index].conditions[condition_index]
            fields = {
                "condition_index": condition_index,
                "details": _details_of(condition, view),
            }
        elif fate[0] is EFFECT:
            fields = {"effect_index": fate[1], "details": fate[2]}
        else:
            fields = {"details": fate[1]}
        return RuleFailureReason(
            campaign_id=plan.id,
            campaign_name=plan.name,
            ruleset_id=plan.id,
            rule_index=index,
            rule_name=title,
            coupon_id=coupon.id if coupon else None,
            coupon_value=coupon.code if coupon else None,
            referral_id=referral.id if referral else None,
            referral_value=referral.code if referral else None,
            evaluation_group_id=plan.group_id,
            evaluation_group_mode=plan.group_mode,
            **fields,
        )


def _details_of(condition: Any, view: CampaignView) -> Callable[[], str]:
    """Details worked out when read: the condition run again on what it saw."""
    return lambda: condition_details(condition, view.context())
