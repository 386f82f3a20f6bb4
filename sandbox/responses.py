"""The optional parts of an ``IntegrationStateV2`` that a request's
``responseContent`` asks for, as Talon.One's wire shapes.

Each builder takes the sandbox's read-only state at the moment of the answer and
returns plain JSON-ready data (Decimals stay; ``to_plain`` writes them). They
are called under the sandbox's lock, only for the parts asked for, so an answer
that asks for nothing extra costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.ledger import Ledger, profile_usage_key, usage_key
from sandbox.models import SessionState
from sandbox.rules import Campaign, Coupon, Referral
from sandbox.state import Effect, wire_time
from sandbox.talon import CampaignState, EffectType

if TYPE_CHECKING:
    from sandbox.engine import CreatedCode
    from sandbox.sessions import StoredSession

__all__ = [
    "campaign_wire",
    "coupon_wire",
    "created_coupon_wire",
    "created_referral_wire",
    "event_type",
    "event_wire",
    "referral_wire",
    "returns_wire",
    "triggered_campaign_ids",
]

_USER_ID = 1  # the one "user" of a sandbox's Application, for Campaign.userId
_ACCOUNT_ID = 1


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else wire_time(moment)


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def coupon_wire(
    campaign: Campaign, coupon: Coupon, ledger: Ledger, profile_id: str | None, at: datetime
) -> dict[str, Any]:
    """Talon.One's ``IntegrationCoupon``: the coupon with its counters."""
    used = ledger.counter(usage_key(campaign.id, "coupon", coupon.code))
    by_profile = (
        ledger.counter(profile_usage_key(campaign.id, coupon.code, profile_id))
        if profile_id
        else Decimal(0)
    )
    return _drop_none(
        {
            "id": coupon.id,
            "created": wire_time(coupon.created or at),
            "campaignId": campaign.id,
            "value": coupon.code,
            "usageLimit": coupon.usage_limit,
            "startDate": _time(coupon.start_date),
            "expiryDate": _time(coupon.expiry_date),
            "usageCounter": int(used),
            "recipientIntegrationId": coupon.recipient,
            "profileRedemptionCount": int(by_profile),
        }
    )


def referral_wire(
    campaign: Campaign,
    referral: Referral,
    ledger: Ledger,
    referred: Sequence[str],
    at: datetime,
) -> dict[str, Any]:
    """Talon.One's ``InventoryReferral``: the referral with its counter and friends."""
    used = ledger.counter(usage_key(campaign.id, "referral", referral.code))
    return _drop_none(
        {
            "id": referral.id,
            "created": wire_time(referral.created or at),
            "startDate": _time(referral.start_date),
            "expiryDate": _time(referral.expiry_date),
            "usageLimit": referral.usage_limit,
            "campaignId": campaign.id,
            "advocateProfileIntegrationId": referral.advocate,
            "friendProfileIntegrationId": referral.friend,
            "code": referral.code,
            "usageCounter": int(used),
            "referredCustomers": list(referred),
        }
    )


def created_coupon_wire(made: CreatedCode, coupon_id: int, at: datetime) -> dict[str, Any]:
    """A created coupon as the SDK's ``Coupon`` (``createdCoupons``)."""
    return _drop_none(
        {
            "id": coupon_id,
            "created": wire_time(at),
            "campaignId": made.campaign_id,
            "value": made.code,
            "usageLimit": made.usage_limit,
            "startDate": _time(made.start_date),
            "expiryDate": _time(made.expiry_date),
            "usageCounter": 0,
            "recipientIntegrationId": made.profile_id,
        }
    )


def created_referral_wire(made: CreatedCode, referral_id: int, at: datetime) -> dict[str, Any]:
    """A created referral as the SDK's ``Referral`` (``createdReferrals``)."""
    return _drop_none(
        {
            "id": referral_id,
            "created": wire_time(at),
            "startDate": _time(made.start_date),
            "expiryDate": _time(made.expiry_date),
            "usageLimit": made.usage_limit,
            "campaignId": made.campaign_id,
            "advocateProfileIntegrationId": made.profile_id,
            "friendProfileIntegrationId": made.friend,
            "code": made.code,
            "usageCounter": 0,
        }
    )


def _frontend_state(campaign: Campaign, at: datetime) -> str:
    if campaign.state is CampaignState.ARCHIVED:
        return "archived"
    if campaign.state is CampaignState.DISABLED:
        return "disabled"
    if campaign.start is not None and at < campaign.start:
        return "scheduled"
    if campaign.end is not None and at > campaign.end:
        return "expired"
    return "running"


def campaign_wire(campaign: Campaign, application_id: int, at: datetime) -> dict[str, Any]:
    """Talon.One's ``Campaign``, with what a sandbox campaign has."""
    features = []
    if campaign.coupons:
        features.append("coupons")
    if campaign.referrals:
        features.append("referrals")
    return _drop_none(
        {
            "id": campaign.id,
            "created": wire_time(campaign.created),
            "applicationId": application_id,
            "userId": _USER_ID,
            "name": campaign.name,
            "description": "",
            "startTime": _time(campaign.start),
            "endTime": _time(campaign.end),
            "attributes": {},
            "state": campaign.state.value,
            "activeRulesetId": campaign.id,
            "tags": [],
            "features": features,
            "limits": [
                _drop_none(
                    {
                        "action": limit.action.value,
                        "limit": limit.limit,
                        "period": limit.period.value if limit.period else None,
                        "entities": [e.value for e in limit.entities],
                    }
                )
                for limit in campaign.limits
            ],
            "campaignGroups": [],
            "frontendState": _frontend_state(campaign, at),
            "storesImported": False,
            "type": "advanced",  # effects on sessions and items alike
            "reevaluateOnReturn": campaign.reevaluate_on_return,
        }
    )


def triggered_campaign_ids(effects: Iterable[Effect]) -> list[int]:
    """The campaigns whose rules gave effects (a code's rejection does not trigger one)."""
    rejections = (EffectType.REJECT_COUPON, EffectType.REJECT_REFERRAL)
    found: dict[int, None] = {}
    for effect in effects:
        if effect.campaign_id >= 0 and effect.effect_type not in rejections:
            found.setdefault(effect.campaign_id)
    return list(found)


def event_type(before: SessionState | None, after: SessionState) -> str:
    """The built-in event an update logs."""
    if before is None:
        return "talon_session_created"
    if after is SessionState.CLOSED:
        return "talon_session_closed"
    if after is SessionState.CANCELLED:
        return "talon_session_cancelled" if before is SessionState.OPEN else "talon_session_revoked"
    return "talon_session_updated"


def event_wire(
    event_id: int,
    kind: str,
    application_id: int,
    session_id: str | None,
    profile_id: str | None,
    effects: Sequence[Effect],
    at: datetime,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Talon.One's ``Event`` of one update or tracked event, with its effects."""
    return _drop_none(
        {
            "id": event_id,
            "created": wire_time(at),
            "applicationId": application_id,
            "profileId": profile_id or None,
            "type": kind,
            "attributes": dict(attributes or {}),
            "sessionId": session_id,
            "effects": [e.to_wire() for e in effects],
        }
    )


def returns_wire(
    stored: StoredSession | None, application_id: int, session_number: int
) -> list[dict[str, Any]]:
    """Talon.One's ``previousReturns``: every return made on the session so far."""
    if stored is None:
        return []
    profile = stored.submitted.profile_id
    found = []
    for return_id, moment, items in stored.returns:
        returned: list[Mapping[str, Any]] = [
            _drop_none({"position": i.position, "quantity": i.quantity, "sku": i.sku})
            for i in items
        ]
        found.append(
            _drop_none(
                {
                    "id": return_id,
                    "created": wire_time(moment),
                    "applicationId": application_id,
                    "accountId": _ACCOUNT_ID,
                    "returnedCartItems": returned,
                    "eventId": return_id,
                    "sessionId": session_number,
                    "sessionIntegrationId": stored.session_id,
                    "profileIntegrationId": profile or None,
                }
            )
        )
    return found
