"""The answer builder: the parts of an answer the sandbox's state gives, beside the
evaluation's effects (Talon.One's ``IntegrationStateV2``).

``createdCoupons``/``createdReferrals`` with the ids the codes will get, and the
optional parts a request's ``responseContent`` names (``customerProfile``,
``coupons``, ``referral``, ``triggeredCampaigns``, ``event``, ...), as wire data taken
at the moment of the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sandbox.engine import CreatedCode, Evaluation, Event
from sandbox.inventory import Inventory
from sandbox.ledger import Ledger
from sandbox.models import AnySession, ResponseContent
from sandbox.profiles import ProfileStore
from sandbox.responses import (
    campaign_wire,
    coupon_wire,
    created_coupon_wire,
    created_referral_wire,
    event_type,
    event_wire,
    referral_wire,
    returns_wire,
    triggered_campaign_ids,
)
from sandbox.sessions import COMMITTED, SessionStore, StoredSession
from sandbox.state import Effect, SessionMeta
from sandbox.talon import EffectType

__all__ = ["Answers"]


class Answers:
    """Builds what an answer holds beyond the evaluation, from the sandbox's parts."""

    def __init__(
        self,
        inventory: Inventory,
        sessions: SessionStore,
        profiles: ProfileStore,
        ledger: Ledger,
        application_id: int,
    ) -> None:
        self.inventory = inventory
        self.sessions = sessions
        self.profiles = profiles
        self.ledger = ledger
        self.application_id = application_id

    def created(
        self, created: Sequence[CreatedCode], at: datetime
    ) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
        """``createdCoupons`` / ``createdReferrals``: the SDK's ``Coupon`` and ``Referral``,
        with the ids the codes get when the session closes."""
        coupons: list[dict[str, Any]] = []
        referrals: list[dict[str, Any]] = []
        peek = self.inventory.peek_id
        for made in created:
            if made.kind == "coupon":
                coupons.append(created_coupon_wire(made, peek("coupon", len(coupons) + 1), at))
            else:
                referrals.append(
                    created_referral_wire(made, peek("referral", len(referrals) + 1), at)
                )
        return tuple(coupons), tuple(referrals)

    def extras(
        self,
        asked: Sequence[ResponseContent] | None,
        session_id: str,
        session: AnySession,
        effects: Sequence[Effect],
        meta: SessionMeta,
        stored: StoredSession | None,
        now: datetime,
    ) -> dict[str, Any]:
        """The parts of the answer that ``responseContent`` asked for, as of now."""
        if not asked:
            return {}
        inventory = self.inventory
        parts: dict[str, Any] = {}
        if ResponseContent.CUSTOMER_PROFILE in asked and session.profile_id:
            # The profile as this update leaves it (a dry run: as the real one would).
            profile = self.profiles.profile(
                session.profile_id, self.profiles.touched(session.profile_id, meta.updated)
            )
            assert profile is not None
            parts["customerProfile"] = profile.to_wire()
        if ResponseContent.COUPONS in asked:
            entries = (
                inventory.coupons.get(inventory.normalize(c)) for c in session.coupon_codes or ()
            )
            parts["coupons"] = [
                coupon_wire(campaign, coupon, self.ledger, session.profile_id, now)
                for campaign, coupon in filter(None, entries)
            ]
        if ResponseContent.REFERRAL in asked and session.referral_code:
            entry = inventory.referrals.get(inventory.normalize(session.referral_code))
            if entry is not None:
                parts["referral"] = referral_wire(
                    *entry, self.ledger, self.referred(entry[1].code), now
                )
        if ResponseContent.TRIGGERED_CAMPAIGNS in asked:
            by_id = inventory.campaign_by_id()
            parts["triggeredCampaigns"] = [
                campaign_wire(by_id[i], self.application_id, now)
                for i in triggered_campaign_ids(effects)
            ]
        if ResponseContent.EVENT in asked:
            assert session.state is not None
            kind = event_type(stored.state if stored else None, session.state)
            parts["event"] = event_wire(
                self.sessions.events + 1,
                kind,
                self.application_id,
                session_id,
                session.profile_id,
                effects,
                meta.updated,
            )
        if ResponseContent.LOYALTY in asked:
            parts["loyalty"] = {"programs": {}}  # the sandbox has no loyalty programs
        if ResponseContent.AWARDED_GIVEAWAYS in asked:
            parts["awardedGiveaways"] = []
        if ResponseContent.PREVIOUS_RETURNS in asked:
            parts["previousReturns"] = returns_wire(stored, self.application_id, meta.id)
        return parts

    def event_extras(
        self,
        asked: Sequence[Any] | None,
        number: int,
        event: Event,
        profile_id: str | None,
        session_id: str | None,
        evaluation: Evaluation,
        now: datetime,
    ) -> dict[str, Any]:
        """The parts of a ``TrackEventV2Response`` that ``responseContent`` asked for."""
        if not asked:
            return {}
        wanted = {str(part) for part in asked}
        parts: dict[str, Any] = {}
        if "customerProfile" in wanted and profile_id:
            profile = self.profiles.profile(profile_id, self.profiles.touched(profile_id, now))
            assert profile is not None
            parts["customerProfile"] = profile.to_wire()
        if "triggeredCampaigns" in wanted:
            by_id = self.inventory.campaign_by_id()
            parts["triggeredCampaigns"] = [
                campaign_wire(by_id[i], self.application_id, now)
                for i in triggered_campaign_ids(evaluation.effects)
            ]
        if "event" in wanted:
            parts["event"] = event_wire(
                number,
                event.type,
                self.application_id,
                session_id,
                profile_id,
                evaluation.effects,
                now,
                event.attributes,
            )
        if "loyalty" in wanted:
            parts["loyalty"] = {"programs": {}}
        if "awardedGiveaways" in wanted:
            parts["awardedGiveaways"] = []
        return parts

    def referred(self, code: str) -> list[str]:
        """The friends whose closed sessions redeemed a referral code."""
        normalize = self.inventory.normalize
        friends: dict[str, None] = {}
        for stored in self.sessions.sessions.values():
            if stored.state in COMMITTED:
                for effect in stored.effects:
                    if (
                        effect.effect_type is EffectType.ACCEPT_REFERRAL
                        and normalize(str(effect.value)) == code
                        and stored.submitted.profile_id
                    ):
                        friends.setdefault(stored.submitted.profile_id)
        return list(friends)
