"""The ledger: every counter change in one place.

Counters are keyed by (campaign, action, entity values, period bucket). They
move only when a session closes (commit) and move back on cancel, reopen and
return (release). Evaluations read them and never write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs

from sandbox.talon import Period

__all__ = ["Charge", "CounterKey", "Ledger", "ProfileStats", "period_bucket", "usage_key"]

ZERO = Decimal(0)


@attrs.frozen
class CounterKey:
    """One counter: ``scope`` pairs entity names with values, e.g. (("Profile", "p1"),)."""

    campaign_id: int
    action: str
    scope: tuple[tuple[str, str], ...] = ()
    bucket: str | None = None
    period: Period | None = None


def usage_key(campaign_id: int, kind: str, code: str) -> CounterKey:
    """A coupon's or referral's own usage counter."""
    return CounterKey(
        campaign_id, f"{kind}Usage", (("Coupon" if kind == "coupon" else "Referral", code),)
    )


def period_bucket(period: Period | None, now: datetime) -> str | None:
    """The UTC bucket a limit period counts in: a day, an ISO week, a month or a year."""
    if period is None:
        return None
    utc = now.astimezone(UTC)
    if period is Period.DAILY:
        return utc.strftime("%Y-%m-%d")
    if period is Period.WEEKLY:
        year, week, _ = utc.isocalendar()
        return f"{year}-W{week:02d}"
    if period is Period.MONTHLY:
        return utc.strftime("%Y-%m")
    return utc.strftime("%Y")


@attrs.frozen
class Charge:
    """An amount a closed session adds to one counter.

    ``effect_ref`` is the index of the discount effect that caused it, so a
    return can release that effect's share.
    """

    key: CounterKey
    amount: Decimal
    effect_ref: int | None = None


@attrs.frozen
class ProfileStats:
    """Talon.One's ``closedSessions`` and ``totalSales`` (before discounts)."""

    profile_id: str
    closed_sessions: int = 0
    total_sales: Decimal = ZERO


class Ledger:
    """Committed counters and profile statistics. Not thread-safe on its own:
    the :class:`~sandbox.Sandbox` serialises every change behind its lock."""

    def __init__(self) -> None:
        self._counters: dict[CounterKey, Decimal] = {}
        self._profiles: dict[str, ProfileStats] = {}

    @property
    def counters(self) -> Mapping[CounterKey, Decimal]:
        return self._counters

    def counter(self, key: CounterKey) -> Decimal:
        return self._counters.get(key, ZERO)

    def profile(self, profile_id: str) -> ProfileStats | None:
        return self._profiles.get(profile_id)

    @property
    def profiles(self) -> Mapping[str, ProfileStats]:
        return self._profiles

    # -- the only places counters change ------------------------------------

    def commit(self, charges: Iterable[Charge]) -> None:
        """Add a closing session's consumption."""
        self._move(charges, 1)

    def release(self, charges: Iterable[Charge]) -> None:
        """Take back consumption (cancel, reopen, return)."""
        self._move(charges, -1)

    def _move(self, charges: Iterable[Charge], sign: int) -> None:
        # Work on a copy and swap it in, so a failure leaves every counter as it was.
        counters = dict(self._counters)
        for charge in charges:
            # A zero charge (a discount capped to nothing) moves nothing: it must
            # neither create a counter at 0 nor fail on one already dropped.
            if not charge.amount:
                continue
            value = counters.get(charge.key, ZERO) + sign * charge.amount
            if value < 0:
                raise AssertionError(
                    f"ledger: releasing {charge.amount} from {charge.key} would leave {value}"
                )
            if value:
                counters[charge.key] = value
            else:
                counters.pop(charge.key, None)
        self._counters = counters

    def touch_profile(self, profile_id: str) -> None:
        """Talon.One creates an unknown profile on its first session."""
        self._profiles.setdefault(profile_id, ProfileStats(profile_id))

    def add_sale(self, profile_id: str, sessions: int, sales: Decimal) -> None:
        stats = self._profiles.get(profile_id, ProfileStats(profile_id))
        self._profiles[profile_id] = ProfileStats(
            profile_id, stats.closed_sessions + sessions, stats.total_sales + sales
        )

    # -- snapshots, for dry runs and invariants ------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        return (dict(self._counters), dict(self._profiles))
