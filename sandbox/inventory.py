"""The inventory of a sandbox: its campaigns, groups and codes (defined, and made by
create effects), the ids Talon.One gives them, and the plan the engine walks.

Codes are unique per sandbox, compared under its case sensitivity. Every change of a
definition moves ``version``, and the plan is compiled again before the next
evaluation.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from sandbox.checks import check_code_shape
from sandbox.engine import CreatedCode, Plan, compile_plan
from sandbox.errors import DefinitionError, UnknownEntityError
from sandbox.ledger import CounterKey, Ledger, profile_usage_key, usage_key
from sandbox.models import describe, hint_candidate
from sandbox.profiles import CustomerProfile
from sandbox.rules import Campaign, Coupon, Group, Limit, Referral
from sandbox.state import wire_time
from sandbox.talon import CampaignState

__all__ = [
    "CouponView",
    "CustomerInventory",
    "Inventory",
    "ReferralView",
    "close_hint",
    "coupon_state",
]

CASE_SENSITIVITY = ("insensitive-uppercase", "insensitive-lowercase", "sensitive")
_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "insensitive-uppercase": str.upper,
    "insensitive-lowercase": str.lower,
    "sensitive": str,
}


@attrs.frozen
class CouponView:
    """A coupon with its live usage counter and state.

    ``state`` is Talon.One's ``InventoryCoupon.state``: ``disabled`` (its campaign is
    not enabled), ``pending`` (not started yet), ``used`` (its limit reached, or
    redeemed by the profile asked about), ``expired`` or ``active``.
    ``profile_redemption_count`` counts the redemptions of that profile (0 without one).
    """

    code: str
    campaign_id: int
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    recipient: str | None
    id: int
    state: str = "active"
    profile_redemption_count: int = 0
    created: datetime | None = attrs.field(default=None, eq=False)

    def to_wire(self) -> dict[str, Any]:
        """Talon.One's ``InventoryCoupon``."""
        return _drop_none(
            {
                "id": self.id,
                "created": _time(self.created),
                "campaignId": self.campaign_id,
                "value": self.code,
                "usageLimit": self.usage_limit,
                "startDate": _time(self.start_date),
                "expiryDate": _time(self.expiry_date),
                "usageCounter": self.usage_counter,
                "recipientIntegrationId": self.recipient,
                "profileRedemptionCount": self.profile_redemption_count,
                "state": self.state,
            }
        )


@attrs.frozen
class ReferralView:
    """A referral code with its live usage counter and the friends it brought in
    (``referred_customers``: profiles whose closed sessions redeemed it)."""

    code: str
    campaign_id: int
    advocate: str
    friend: str | None
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    id: int
    referred_customers: tuple[str, ...] = ()
    created: datetime | None = attrs.field(default=None, eq=False)

    def to_wire(self) -> dict[str, Any]:
        """Talon.One's ``InventoryReferral``."""
        return _drop_none(
            {
                "id": self.id,
                "created": _time(self.created),
                "startDate": _time(self.start_date),
                "expiryDate": _time(self.expiry_date),
                "usageLimit": self.usage_limit,
                "campaignId": self.campaign_id,
                "advocateProfileIntegrationId": self.advocate,
                "friendProfileIntegrationId": self.friend,
                "code": self.code,
                "usageCounter": self.usage_counter,
                "referredCustomers": list(self.referred_customers),
            }
        )


@attrs.frozen
class CustomerInventory:
    """What ``sb.get_inventory(profile_id)`` answers (Talon.One's ``CustomerInventory``):
    the profile, the coupons whose recipient it is (created ones included) and the
    referral codes it advocates, each with its usage."""

    profile: CustomerProfile | None
    coupons: tuple[CouponView, ...]
    referrals: tuple[ReferralView, ...]

    def to_wire(
        self, *, profile: bool = True, coupons: bool = True, referrals: bool = True
    ) -> dict[str, Any]:
        """``CustomerInventory`` with the parts asked for (Talon.One's query flags)."""
        parts: dict[str, Any] = {}
        if profile and self.profile is not None:
            parts["profile"] = self.profile.to_wire()
        if referrals:
            parts["referrals"] = [r.to_wire() for r in self.referrals]
        if coupons:
            parts["coupons"] = [c.to_wire() for c in self.coupons]
        return parts


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else wire_time(moment)


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def coupon_state(
    campaign: Campaign, coupon: Coupon, used: int, by_profile: int, now: datetime
) -> str:
    """Talon.One's ``InventoryCoupon.state`` of a coupon at ``now``."""
    if campaign.state is not CampaignState.ENABLED:
        return "disabled"
    if coupon.start_date is not None and now < coupon.start_date:
        return "pending"
    if (coupon.usage_limit and used >= coupon.usage_limit) or by_profile:
        return "used"
    if coupon.expiry_date is not None and now > coupon.expiry_date:
        return "expired"
    return "active"


class Inventory:
    """Campaigns (in evaluation order), groups, coupons and referrals, and their ids."""

    def __init__(self, case_sensitivity: str) -> None:
        self.case_sensitivity = case_sensitivity
        self.normalize = _NORMALIZERS[case_sensitivity]
        # The last id given of each kind (groups start at 2: 1 is the base group).
        self.ids = {"campaign": 0, "coupon": 0, "referral": 0, "group": 1, "profile": 0}
        self.campaigns: list[Campaign] = []
        self.groups: list[Group] = []
        self.coupons: dict[str, tuple[Campaign, Coupon]] = {}
        self.referrals: dict[str, tuple[Campaign, Referral]] = {}
        self.cost_ids: dict[str, int] = {}  # additional cost name -> additionalCostId
        self.version = 0  # of the definitions: each change makes the plan again
        self._plan: Plan | None = None

    # -- ids and the plan ----------------------------------------------------------

    def next_id(self, kind: str) -> int:
        self.ids[kind] += 1
        return self.ids[kind]

    def peek_id(self, kind: str, ahead: int = 1) -> int:
        """The id the ``ahead``-th next entity of ``kind`` will get."""
        return self.ids[kind] + ahead

    def changed(self) -> None:
        """A definition changed: the plan is compiled again before the next evaluation."""
        self.version += 1

    def plan(self) -> Plan:
        """The rule set compiled, made again when a definition changed since."""
        plan = self._plan
        if plan is None or plan.version != self.version:
            plan = self._plan = compile_plan(self.campaigns, self.version)
        return plan

    def cost_id(self, name: str) -> int:
        """The ``additionalCostId`` of an additional cost, given when a rule first names it."""
        return self.cost_ids.setdefault(name, len(self.cost_ids) + 1)

    # -- definitions -----------------------------------------------------------------

    def check_new_code(self, code: Any, kind: str, where: str) -> str:
        """A code's stored form, or a DefinitionError (shape, or already taken)."""
        stored = self.normalize(check_code_shape(code, kind, where))
        self.check_free(stored, where)
        return stored

    def check_free(self, stored: str, where: str) -> None:
        if stored in self.coupons or stored in self.referrals:
            owner = (self.coupons.get(stored) or self.referrals[stored])[0]
            raise DefinitionError(
                f"{where}: the code {stored!r} already exists in campaign {owner.name!r} "
                f"(codes are unique per sandbox, compared {self.case_sensitivity})"
            )

    def register_code(
        self, code: str, campaign: Campaign, definition: Coupon | Referral, where: str
    ) -> None:
        """Add a code (checked again: another thread may have added it since)."""
        self.check_free(code, where)
        if isinstance(definition, Coupon):
            self.coupons[code] = (campaign, definition)
            campaign.coupons[code] = definition
        else:
            self.referrals[code] = (campaign, definition)
            campaign.referrals[code] = definition

    def add_group(self, group: Group) -> None:
        if any(g.name == group.name for g in self.groups):
            raise DefinitionError(f"group {group.name!r} already exists")
        self.groups.append(group)

    def add_campaign(self, campaign: Campaign) -> None:
        if any(c.name == campaign.name for c in self.campaigns):
            raise DefinitionError(f"campaign {campaign.name!r} already exists")
        self.campaigns.append(campaign)

    def check_limits(self, limits: Iterable[Limit], where: str) -> tuple[Limit, ...]:
        if isinstance(limits, Limit):
            limits = [limits]
        found = tuple(limits)
        seen: dict[Any, int] = {}
        for i, limit in enumerate(found):
            if not isinstance(limit, Limit):
                raise DefinitionError(
                    f"{where}: limits[{i}] must be a sandbox.Limit, got {limit!r}"
                )
            scope = (limit.action, frozenset(limit.entities), limit.period)
            if scope in seen:
                raise DefinitionError(
                    f"{where}: limits[{i}] ({limit.describe()}) counts the same thing as "
                    f"limits[{seen[scope]}]; keep one of them"
                )
            seen[scope] = i
        return found

    # -- reads -------------------------------------------------------------------------

    def campaign(self, name_or_id: str | int) -> Campaign:
        for campaign in self.campaigns:
            if name_or_id in (campaign.name, campaign.id):
                return campaign
        raise UnknownEntityError(
            f"no campaign {describe(name_or_id)}"
            f"{close_hint(str(name_or_id), [c.name for c in self.campaigns])}"
        )

    def campaign_by_id(self) -> dict[int, Campaign]:
        return {c.id: c for c in self.campaigns}

    def lookup(self, index: Mapping[str, Any], code: str, kind: str) -> Any:
        if not isinstance(code, str) or self.normalize(code) not in index:
            raise UnknownEntityError(f"no {kind} {describe(code)}{close_hint(str(code), index)}")
        return index[self.normalize(code)]

    def coupon_view(
        self, code: str, ledger: Ledger, now: datetime, profile_id: str | None = None
    ) -> CouponView:
        """A coupon with its usage counter (the number of closed sessions that redeemed
        it) and its state at ``now`` (for ``profile_id``, when given)."""
        campaign, coupon = self.lookup(self.coupons, code, "coupon")
        return self._coupon_view(campaign, coupon, ledger, now, profile_id)

    def _coupon_view(
        self,
        campaign: Campaign,
        coupon: Coupon,
        ledger: Ledger,
        now: datetime,
        profile_id: str | None,
    ) -> CouponView:
        used = int(ledger.counter(usage_key(campaign.id, "coupon", coupon.code)))
        mine = (
            int(ledger.counter(profile_usage_key(campaign.id, coupon.code, profile_id)))
            if profile_id
            else 0
        )
        return CouponView(
            coupon.code,
            campaign.id,
            coupon.usage_limit,
            used,
            coupon.start_date,
            coupon.expiry_date,
            coupon.recipient,
            coupon.id,
            coupon_state(campaign, coupon, used, mine, now),
            mine,
            coupon.created or campaign.created,
        )

    def referral_view(
        self, code: str, ledger: Ledger, referred: Sequence[str] = ()
    ) -> ReferralView:
        campaign, referral = self.lookup(self.referrals, code, "referral")
        return self._referral_view(campaign, referral, ledger, referred)

    def _referral_view(
        self, campaign: Campaign, referral: Referral, ledger: Ledger, referred: Sequence[str]
    ) -> ReferralView:
        used = ledger.counter(usage_key(campaign.id, "referral", referral.code))
        return ReferralView(
            referral.code,
            campaign.id,
            referral.advocate,
            referral.friend,
            referral.usage_limit,
            int(used),
            referral.start_date,
            referral.expiry_date,
            referral.id,
            tuple(referred),
            referral.created or campaign.created,
        )

    def customer_inventory(
        self,
        profile: CustomerProfile | None,
        profile_id: str,
        ledger: Ledger,
        now: datetime,
        referred: Callable[[str], Sequence[str]],
    ) -> CustomerInventory:
        """The coupons whose recipient is ``profile_id`` and the referrals it advocates."""
        coupons = tuple(
            self._coupon_view(campaign, coupon, ledger, now, profile_id)
            for campaign, coupon in self.coupons.values()
            if coupon.recipient == profile_id
        )
        referrals = tuple(
            self._referral_view(campaign, referral, ledger, referred(referral.code))
            for campaign, referral in self.referrals.values()
            if referral.advocate == profile_id
        )
        return CustomerInventory(profile, coupons, referrals)

    def limit_for(self, campaign: Campaign, key: CounterKey) -> Limit | None:
        """The limit of a campaign that a counter counts against (None: not a limit's)."""
        for limit in campaign.limits:
            if (
                limit.action.value == key.action
                and limit.period == key.period
                and tuple(e.value for e in limit.entities) == tuple(k for k, _ in key.scope)
            ):
                return limit
        return None

    # -- codes made by create effects ------------------------------------------------------

    def new_codes(
        self, created: Sequence[CreatedCode], now: datetime
    ) -> list[tuple[Campaign, Coupon | Referral]]:
        """The definitions a close's create effects make; stored by :meth:`add_created`."""
        by_id = self.campaign_by_id()
        counts = {"coupon": 0, "referral": 0}
        made: list[tuple[Campaign, Coupon | Referral]] = []
        for code in created:
            counts[code.kind] += 1
            new_id = self.peek_id(code.kind, counts[code.kind])
            definition: Coupon | Referral
            if code.kind == "coupon":
                definition = Coupon(
                    new_id,
                    code.code,
                    code.campaign_id,
                    code.usage_limit,
                    code.start_date,
                    code.expiry_date,
                    code.profile_id,
                    created=now,
                )
            else:
                definition = Referral(
                    new_id,
                    code.code,
                    code.campaign_id,
                    code.profile_id,
                    code.friend,
                    code.usage_limit,
                    code.start_date,
                    code.expiry_date,
                    created=now,
                )
            made.append((by_id[code.campaign_id], definition))
        return made

    def add_created(self, made: Sequence[tuple[Campaign, Coupon | Referral]]) -> None:
        for campaign, definition in made:
            kind = "coupon" if isinstance(definition, Coupon) else "referral"
            self.next_id(kind)
            self.register_code(definition.code, campaign, definition, "a created code")


_HINT_POOL = 10_000  # beyond this many names, difflib over all of them costs more than it helps


def close_hint(name: Any, known: Iterable[str]) -> str:
    """``; did you mean 'X'?`` for the closest of ``known`` names, or why there is none."""
    names = list(itertools.islice(known, _HINT_POOL + 1))
    if not names:
        return " (there are none yet)"
    candidate = hint_candidate(str(name))
    if candidate is None or len(names) > _HINT_POOL:
        return ""
    match = difflib.get_close_matches(candidate, names, n=1, cutoff=0.6)
    if not match:
        match = [k for k in names if k.lower() == candidate.lower()]
    return f"; did you mean {match[0]!r}?" if match else ""
