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
from sandbox.ledger import CounterKey, Ledger, usage_key
from sandbox.models import describe, hint_candidate
from sandbox.rules import Campaign, Coupon, Group, Limit, Referral

__all__ = ["CouponView", "Inventory", "ReferralView", "close_hint"]

CASE_SENSITIVITY = ("insensitive-uppercase", "insensitive-lowercase", "sensitive")
_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "insensitive-uppercase": str.upper,
    "insensitive-lowercase": str.lower,
    "sensitive": str,
}


@attrs.frozen
class CouponView:
    """A coupon with its live usage counter."""

    code: str
    campaign_id: int
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    recipient: str | None
    id: int


@attrs.frozen
class ReferralView:
    code: str
    campaign_id: int
    advocate: str
    friend: str | None
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    id: int


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

    def coupon_view(self, code: str, ledger: Ledger) -> CouponView:
        """A coupon with its usage counter (the number of closed sessions that redeemed it)."""
        campaign, coupon = self.lookup(self.coupons, code, "coupon")
        used = ledger.counter(usage_key(campaign.id, "coupon", coupon.code))
        return CouponView(
            coupon.code,
            campaign.id,
            coupon.usage_limit,
            int(used),
            coupon.start_date,
            coupon.expiry_date,
            coupon.recipient,
            coupon.id,
        )

    def referral_view(self, code: str, ledger: Ledger) -> ReferralView:
        campaign, referral = self.lookup(self.referrals, code, "referral")
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
        )

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
