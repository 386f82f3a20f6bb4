"""Customer profiles: what ``updateCustomerProfileV2`` sends, and what a profile is.

A profile is created empty by the first session or profile update that names it
(as Talon.One does). Its counters (closed sessions, total sales) live in the
ledger; its attributes, creation time and last activity in the sandbox's profile
store. :class:`CustomerProfile` is the two together, shaped as the SDK's
``CustomerProfile``.

>>> from sandbox import Sandbox
>>> sb = Sandbox(now="2026-12-01T10:00:00Z")
>>> sb.update_profile("p1", {"attributes": {"tier": "gold"}}).profile.attributes["tier"]
'gold'
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs

from sandbox._html import html_of
from sandbox.ledger import Ledger, ProfileStats
from sandbox.models import ProfileResponseContent, ProfileUpdate
from sandbox.state import wire_time

__all__ = [
    "CustomerProfile",
    "ProfileRecord",
    "ProfileResponseContent",
    "ProfileStore",
    "ProfileUpdate",
]

ACCOUNT_ID = 1  # the one account a sandbox's Application belongs to


@attrs.frozen
class ProfileRecord:
    """What the sandbox stores of a profile beside the ledger's counters."""

    id: int
    created: datetime
    attributes: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    last_activity: datetime | None = None


@attrs.frozen
class CustomerProfile:
    """A customer profile as Talon.One answers it (the SDK's ``CustomerProfile``).

    ``closed_sessions`` does not count cancelled or reopened sessions;
    ``total_sales`` is before discounts and without returned items.
    """

    integration_id: str
    id: int
    created: datetime
    attributes: Mapping[str, Any] = attrs.field(hash=False)
    closed_sessions: int = 0
    total_sales: Decimal = Decimal(0)
    last_activity: datetime | None = None

    @property
    def profile_id(self) -> str:
        """The integration id, under the name sessions give it."""
        return self.integration_id

    @classmethod
    def anonymous(cls, now: datetime) -> CustomerProfile:
        """What a session without a profile sees: no id, no attributes."""
        return cls("", 0, now, MappingProxyType({}), 0, Decimal(0), now)

    def to_wire(self) -> dict[str, Any]:
        from sandbox.codec import to_plain

        last = self.last_activity or self.created
        return {
            "id": self.id,
            "created": wire_time(self.created),
            "integrationId": self.integration_id,
            "attributes": to_plain(dict(self.attributes)),
            "accountId": ACCOUNT_ID,
            "closedSessions": self.closed_sessions,
            "totalSales": to_plain(self.total_sales),
            "audienceMemberships": [],
            "lastActivity": wire_time(last),
            "sandbox": True,
        }

    def _repr_html_(self) -> str:
        return html_of(self)


class ProfileStore:
    """Each profile's record (id, creation, attributes, last activity), by integration id.

    Its counters live in the ledger; :meth:`profile` puts the two together.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.records: dict[str, ProfileRecord] = {}
        self.last_id = 0

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self.records

    def ids(self) -> list[str]:
        """Every stored profile's integration id, oldest first."""
        return list(self.records)

    def profile(
        self, profile_id: str | None, record: ProfileRecord | None = None
    ) -> CustomerProfile | None:
        """The stored profile (or ``record`` in its place), with the ledger's counters."""
        if not profile_id:
            return None
        record = record or self.records.get(profile_id)
        if record is None:
            return None
        stats = self.ledger.profile(profile_id) or ProfileStats(profile_id)
        return CustomerProfile(
            profile_id,
            record.id,
            record.created,
            MappingProxyType(dict(record.attributes)),
            stats.closed_sessions,
            stats.total_sales,
            record.last_activity,
        )

    def touched(self, profile_id: str | None, at: datetime) -> ProfileRecord | None:
        """The profile's record after an activity at ``at`` (created if new); not stored."""
        if not profile_id:
            return None
        old = self.records.get(profile_id)
        if old is None:
            return ProfileRecord(self.last_id + 1, at, {}, at)
        return ProfileRecord(old.id, old.created, old.attributes, at)

    def keep(self, profile_id: str | None, record: ProfileRecord | None) -> None:
        """Store a profile's record (a new profile takes the next id)."""
        if profile_id and record is not None:
            if profile_id not in self.records:
                self.last_id += 1
            self.records[profile_id] = record
            self.ledger.touch_profile(profile_id)
