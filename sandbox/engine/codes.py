"""Code checks: each submitted coupon and referral, in Talon.One's order of reasons.

The first failure wins: not found; campaign not running or archived; start date in
the future; expired; profile required; recipient mismatch (same as advocate first,
for referrals); the code's own usage limit; per code or identifier limits; per
profile limits; campaign-wide limits. Counters are the committed ones: a code is
checked on its own, before any rule runs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from sandbox.engine.plan import TIER_CAMPAIGN, TIER_CODE, CampaignPlan
from sandbox.ledger import CounterKey, period_bucket, referred_key, usage_key
from sandbox.rules import Campaign, Coupon, Limit, Referral
from sandbox.talon import (
    CampaignState,
    CouponRejection,
    ExclusionReason,
    LimitEntity,
    ReferralRejection,
)

__all__ = ["CodeCheck", "check_coupon", "check_referral", "limit_keys", "not_running"]

ZERO = Decimal(0)
_ARCHIVED = CampaignState.ARCHIVED
_ENABLED = CampaignState.ENABLED


@attrs.frozen
class CodeCheck:
    """Why a code is rejected: Talon.One's reason, details, and a group exclusion."""

    reason: str | None
    details: str = ""
    exclusion: ExclusionReason | None = None


def limit_keys(
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


def not_running(campaign: Campaign, now: datetime) -> str:
    """Why a campaign is not running at ``now``."""
    if campaign.state is not _ENABLED:
        return f"campaign {campaign.name!r} is {campaign.state.value}"
    if campaign.start is not None and now < campaign.start:
        return f"campaign {campaign.name!r} starts at {campaign.start.isoformat()}"
    assert campaign.end is not None
    return f"campaign {campaign.name!r} ended at {campaign.end.isoformat()}"


def is_running(campaign: Campaign, now: datetime, evaluable: frozenset[int] | None) -> bool:
    """Running at ``now``; a dry run's evaluableCampaignIds evaluates disabled ones too."""
    start, end = campaign.start, campaign.end
    live = (start is None or start <= now) and (end is None or now <= end)
    if evaluable is not None:
        return campaign.id in evaluable and campaign.state is not _ARCHIVED and live
    return campaign.state is _ENABLED and live


def _common_checks(
    plan: CampaignPlan,
    start: datetime | None,
    expiry: datetime | None,
    reasons: Any,
    now: datetime,
    evaluable: frozenset[int] | None,
    profile_id: str | None,
) -> CodeCheck | None:
    campaign = plan.campaign
    if campaign.state is _ARCHIVED:
        return CodeCheck(
            reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
            f"campaign {campaign.name!r} is archived",
            ExclusionReason.NOT_IN_EVALUATION_SET,
        )
    if evaluable is not None and campaign.id not in evaluable:
        return CodeCheck(
            reasons.PART_OF_NOT_TRIGGERED_CAMPAIGN,
            f"campaign {campaign.name!r} is not in the dry run's evaluableCampaignIds",
            ExclusionReason.NOT_IN_EVALUATION_SET,
        )
    if not is_running(campaign, now, evaluable):
        return CodeCheck(reasons.PART_OF_NOT_RUNNING_CAMPAIGN, not_running(campaign, now))
    if start is not None and now < start:
        return CodeCheck(reasons.START_DATE_IN_FUTURE, f"valid from {start.isoformat()}")
    if expiry is not None and now > expiry:
        return CodeCheck(reasons.EXPIRED, f"expired at {expiry.isoformat()}")
    if profile_id is None and plan.profile_limited:
        # Coupons: ProfileRequired. Referrals have no such documented reason; the sandbox
        # answers ProfileLimitReached, its details saying a profile is required.
        reason = (
            reasons.PROFILE_REQUIRED
            if reasons is CouponRejection
            else reasons.PROFILE_LIMIT_REACHED
        )
        return CodeCheck(
            reason,
            f"a profile is required: campaign {campaign.name!r} has a per-profile limit",
        )
    return None


def _limit_checks(
    plan: CampaignPlan,
    tiers: Sequence[tuple[int, Limit]],
    own_usage: tuple[CounterKey, int],
    scope: Mapping[LimitEntity, Sequence[str]],
    reasons: Any,
    counters: Mapping[CounterKey, Decimal],
    now: datetime,
    identifiers: Sequence[str],
) -> CodeCheck | None:
    key, usage_limit = own_usage
    if usage_limit and counters.get(key, ZERO) >= usage_limit:
        return CodeCheck(reasons.LIMIT_REACHED, f"usage limit {usage_limit} reached")
    if not identifiers and plan.identifier_limited:
        return CodeCheck(
            reasons.LIMIT_REACHED,
            "an identifier is required: the campaign limits use per identifier",
        )
    for tier, limit in tiers:
        for counter in limit_keys(limit, plan.id, scope, now) or ():
            used = counters.get(counter, ZERO)
            if used + 1 > limit.limit:
                reason = (
                    reasons.LIMIT_REACHED
                    if tier == TIER_CODE
                    else reasons.CAMPAIGN_LIMIT_REACHED
                    if tier == TIER_CAMPAIGN
                    else reasons.PROFILE_LIMIT_REACHED
                )
                return CodeCheck(reason, f"limit {limit.describe()} reached: {used} used")
    return None


def scope_of(
    coupon: str | None, referral: str | None, profile_id: str | None, identifiers: Sequence[str]
) -> dict[LimitEntity, Sequence[str]]:
    """The entity values a session's limits count against."""
    return {
        LimitEntity.COUPON: (coupon,) if coupon else (),
        LimitEntity.REFERRAL: (referral,) if referral else (),
        LimitEntity.PROFILE: (profile_id,) if profile_id else (),
        LimitEntity.IDENTIFIER: identifiers,
    }


def check_coupon(
    plan: CampaignPlan,
    coupon: Coupon,
    *,
    now: datetime,
    evaluable: frozenset[int] | None,
    profile_id: str | None,
    identifiers: Sequence[str],
    counters: Mapping[CounterKey, Decimal],
) -> CodeCheck | None:
    reasons = CouponRejection
    found = _common_checks(
        plan, coupon.start_date, coupon.expiry_date, reasons, now, evaluable, profile_id
    )
    if found:
        return found
    if coupon.recipient is not None and coupon.recipient != profile_id:
        return CodeCheck(
            reasons.RECIPIENT_DOES_NOT_MATCH,
            f"the coupon is for profile {coupon.recipient!r}, the session has {profile_id!r}",
        )
    return _limit_checks(
        plan,
        plan.coupon_tiers,
        (usage_key(plan.id, "coupon", coupon.code), coupon.usage_limit),
        scope_of(coupon.code, None, profile_id, identifiers),
        reasons,
        counters,
        now,
        identifiers,
    )


def check_referral(
    plan: CampaignPlan,
    referral: Referral,
    *,
    now: datetime,
    evaluable: frozenset[int] | None,
    profile_id: str | None,
    identifiers: Sequence[str],
    counters: Mapping[CounterKey, Decimal],
) -> CodeCheck | None:
    reasons = ReferralRejection
    found = _common_checks(
        plan, referral.start_date, referral.expiry_date, reasons, now, evaluable, profile_id
    )
    if found:
        return found
    if profile_id is not None and profile_id == referral.advocate:
        return CodeCheck(
            reasons.RECIPIENT_ID_SAME_AS_ADVOCATE,
            f"profile {profile_id!r} is the advocate of this referral",
        )
    if referral.friend is not None and referral.friend != profile_id:
        return CodeCheck(
            reasons.RECIPIENT_DOES_NOT_MATCH,
            f"the referral is for friend {referral.friend!r}, the session has {profile_id!r}",
        )
    if profile_id is not None and counters.get(referred_key(plan.id, profile_id), ZERO):
        return CodeCheck(
            reasons.CUSTOMER_ALREADY_REFERRED,
            f"profile {profile_id!r} has already redeemed a referral of campaign {plan.name!r}",
        )
    return _limit_checks(
        plan,
        plan.referral_tiers,
        (usage_key(plan.id, "referral", referral.code), referral.usage_limit),
        scope_of(None, referral.code, profile_id, identifiers),
        reasons,
        counters,
        now,
        identifiers,
    )
