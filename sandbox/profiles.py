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

from sandbox.models import (
    JSONValue,
    ProfileResponseContent,
    _to_json,
    _to_tuple,
    _Validated,
    array_of,
    integer,
    json_value,
    object_of,
    one_of,
    wire_field,
)
from sandbox.state import wire_time

__all__ = ["CustomerProfile", "ProfileRecord", "ProfileResponseContent", "ProfileUpdate"]

ACCOUNT_ID = 1  # the one account a sandbox's Application belongs to


def _to_profile_content(value: Any) -> Any:
    if isinstance(value, list | tuple):
        known = ProfileResponseContent._value2member_map_
        return tuple(
            ProfileResponseContent(v) if isinstance(v, str) and v in known else v for v in value
        )
    return value


@attrs.frozen
class ProfileUpdate(_Validated):
    """The body of ``PUT /v2/customer_profiles/{integrationId}`` (``CustomerProfileIntegrationRequestV2``).

    ``attributes`` merge onto the profile's: a key sent replaces the stored
    value, keys left out stay. ``audiences_changes`` is accepted and ignored
    (the sandbox has no audiences).
    """

    attributes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=_to_json, hash=False
    )
    evaluable_campaign_ids: tuple[int, ...] | None = wire_field(
        array_of(integer(minimum=1)), default=None, converter=_to_tuple
    )
    audiences_changes: dict[str, JSONValue] | None = wire_field(
        object_of(json_value), default=None, converter=_to_json, hash=False
    )
    response_content: tuple[ProfileResponseContent, ...] | None = wire_field(
        array_of(one_of(ProfileResponseContent)), default=None, converter=_to_profile_content
    )


attrs.resolve_types(ProfileUpdate)  # the codec reads real types, not this module's strings


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
        from sandbox.display import profile_html

        return profile_html(self)
