"""A rule set compiled once into flat lists: what evaluating a session walks.

:func:`compile_plan` resolves, per campaign, what every evaluation would otherwise work
out again: its group and arbitration, its limits by action and by tier of rejection
reason, its budgets, and per rule the condition functions to call, whether a code
check gates it, and the code the rule accepts. A sandbox recompiles when a campaign,
rule, code definition or group changes (its definitions' version moves); a campaign's
state and window are read live, as users may change them between evaluations.

The users' callables are called as they are: the plan only decides what to call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sandbox.conditions import Condition
from sandbox.effects import EffectSpec
from sandbox.rules import Campaign, Group, Limit, Rule
from sandbox.talon import GroupMode, LimitAction, LimitEntity

__all__ = ["BASE_GROUP_ID", "CampaignPlan", "Plan", "RulePlan", "compile_plan"]

BASE_GROUP_ID = 1  # Talon.One's base group of every Application is stackable

# The tiers of the limit checks, in the order of rejection reasons: per code or
# identifier, then per profile, then campaign-wide.
TIER_CODE, TIER_PROFILE, TIER_CAMPAIGN = 0, 1, 2


class RulePlan:
    """One rule, ready to run.

    ``gate`` is ``"coupon"`` or ``"referral"`` when the rule's first condition is
    ``couponValid`` / ``referralValid``: without a valid code of its campaign the rule
    fails there, and nothing of it needs to be called.
    """

    __slots__ = (
        "conditions",
        "effects",
        "fns",
        "gate",
        "index",
        "rule",
        "title",
        "uses_coupon",
        "uses_referral",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.index = rule.index
        self.title = rule.title
        self.conditions: tuple[Condition, ...] = rule.conditions
        self.fns: tuple[Callable[[Any], Any], ...] = tuple(c.fn for c in rule.conditions)
        self.effects: tuple[EffectSpec, ...] = rule.effects
        self.uses_coupon = rule.uses_coupon_valid
        self.uses_referral = rule.uses_referral_valid
        first = rule.conditions[0].kind if rule.conditions else None
        self.gate = {"couponValid": "coupon", "referralValid": "referral"}.get(first or "")


class CampaignPlan:
    """One campaign, ready to run: its rules, group and limits resolved."""

    __slots__ = (
        "campaign",
        "coupon_tiers",
        "discount_limits",
        "effect_limits",
        "group",
        "group_id",
        "group_mode",
        "id",
        "identifier_limited",
        "list_group",
        "name",
        "profile_limited",
        "redeem_coupon_limits",
        "redeem_referral_limits",
        "referral_tiers",
        "rules",
    )

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.id = campaign.id
        self.name = campaign.name
        group: Group | None = campaign.group
        self.group = group
        self.group_id = group.id if group is not None else BASE_GROUP_ID
        self.group_mode: str = (group.mode if group is not None else GroupMode.STACKABLE).value
        self.list_group = (
            group.id if group is not None and group.mode is GroupMode.LIST_ORDER else None
        )
        self.rules: tuple[RulePlan, ...] = tuple(RulePlan(rule) for rule in campaign.rules)
        limits = campaign.limits
        self.profile_limited = any(LimitEntity.PROFILE in lim.entities for lim in limits)
        self.identifier_limited = any(LimitEntity.IDENTIFIER in lim.entities for lim in limits)
        self.redeem_coupon_limits = campaign.limits_for(LimitAction.REDEEM_COUPON)
        self.redeem_referral_limits = campaign.limits_for(LimitAction.REDEEM_REFERRAL)
        self.discount_limits = campaign.limits_for(LimitAction.SET_DISCOUNT)
        self.effect_limits = campaign.limits_for(LimitAction.SET_DISCOUNT_EFFECT)
        self.coupon_tiers = _tiers(self.redeem_coupon_limits)
        self.referral_tiers = _tiers(self.redeem_referral_limits)


def _tiers(limits: Sequence[Limit]) -> tuple[tuple[int, Limit], ...]:
    """Limits in the order their rejection reasons are checked, each with its tier."""

    def tier(limit: Limit) -> int:
        if not limit.entities:
            return TIER_CAMPAIGN
        return TIER_PROFILE if LimitEntity.PROFILE in limit.entities else TIER_CODE

    return tuple(sorted(((tier(lim), lim) for lim in limits), key=lambda pair: pair[0]))


class Plan:
    """A rule set compiled for evaluation: its campaigns in evaluation order."""

    __slots__ = ("by_id", "by_name", "campaigns", "version")

    def __init__(self, campaigns: Sequence[Campaign], version: int) -> None:
        self.version = version
        self.campaigns: tuple[CampaignPlan, ...] = tuple(CampaignPlan(c) for c in campaigns)
        self.by_id: dict[int, CampaignPlan] = {p.id: p for p in self.campaigns}
        self.by_name: dict[str, Campaign] = {c.name: c for c in campaigns}


def compile_plan(campaigns: Sequence[Campaign], version: int = 0) -> Plan:
    """The plan of a rule set (its campaigns in evaluation order)."""
    return Plan(campaigns, version)
