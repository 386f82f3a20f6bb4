"""The ledger: every counter change in one place.

Counters are keyed by (campaign, action, entity values, period bucket). They
move only when a session closes (commit) and move back on cancel, reopen and
return (release). Evaluations read them and never write them.
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs

from sandbox.models import ARITHMETIC
from sandbox.talon import Period

__all__ = [
    "Charge",
    "CounterKey",
    "Ledger",
    "LockedView",
    "ProfileStats",
    "period_bucket",
    "profile_usage_key",
    "referred_key",
    "usage_key",
]

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


def profile_usage_key(campaign_id: int, code: str, profile_id: str) -> CounterKey:
    """How often one profile redeemed one coupon (``IntegrationCoupon.profileRedemptionCount``);
    counted for every redemption, not a limit."""
    return CounterKey(
        campaign_id, "couponProfileUsage", (("Coupon", code), ("Profile", profile_id))
    )


def referred_key(campaign_id: int, profile_id: str) -> CounterKey:
    """Whether a friend has redeemed a referral of a campaign (ReferralCustomerAlreadyReferred)."""
    return CounterKey(campaign_id, "referredProfile", (("Profile", profile_id),))


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


class LockedView(Mapping[Any, Any]):
    """A read-only view of a dict that other threads may be changing.

    Lookups are live; iterating (and ``keys``/``items``/``values``) works on a
    copy taken under the sandbox's lock, so a reader never sees "dictionary
    changed size during iteration" and each listing is one consistent moment.
    """

    __slots__ = ("_data", "_lock")

    def __init__(self, data: dict[Any, Any], lock: threading.RLock) -> None:
        self._data = data
        self._lock = lock

    def __getitem__(self, key: Any) -> Any:
        with self._lock:
            return self._data[key]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.copy())

    def copy(self) -> dict[Any, Any]:
        """A plain dict of this moment's contents."""
        with self._lock:
            return dict(self._data)

    def keys(self) -> KeysView[Any]:
        return self.copy().keys()

    def items(self) -> ItemsView[Any, Any]:
        return self.copy().items()

    def values(self) -> ValuesView[Any]:
        return self.copy().values()

    def __repr__(self) -> str:
        return f"LockedView({self.copy()!r})"


class Ledger:
    """Committed counters and profile statistics.

    The :class:`~sandbox.Sandbox` serialises every change behind its lock and
    passes that lock in, so the read views below are safe from any thread.
    """

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self._lock = lock if lock is not None else threading.RLock()
        self._counters: dict[CounterKey, Decimal] = {}
        self._profiles: dict[str, ProfileStats] = {}

    @property
    def counters(self) -> Mapping[CounterKey, Decimal]:
        return LockedView(self._counters, self._lock)

    @property
    def live_counters(self) -> Mapping[CounterKey, Decimal]:
        """The counters themselves, read-only, for evaluations made under the lock."""
        return MappingProxyType(self._counters)

    def counter(self, key: CounterKey) -> Decimal:
        return self._counters.get(key, ZERO)

    def profile(self, profile_id: str) -> ProfileStats | None:
        return self._profiles.get(profile_id)

    @property
    def profiles(self) -> Mapping[str, ProfileStats]:
        return LockedView(self._profiles, self._lock)

    # -- the only places counters change ------------------------------------

    def commit(
        self, charges: Iterable[Charge], *, profile: str | None = None, sales: Decimal = ZERO
    ) -> None:
        """Add a closing session's consumption; its profile gets a closed session and sales."""
        self._move(charges, 1, profile, 1, sales)

    def release(
        self,
        charges: Iterable[Charge],
        *,
        profile: str | None = None,
        sessions: int = 0,
        sales: Decimal = ZERO,
    ) -> None:
        """Take back consumption (cancel, reopen, return) and, for ``profile``,
        ``sessions`` closed sessions and ``sales`` of its total sales."""
        self._move(charges, -1, profile, -sessions, -sales)

    def restore(
        self, counters: Mapping[CounterKey, Decimal], profiles: Mapping[str, ProfileStats]
    ) -> None:
        """Put back saved counters and profile statistics (:mod:`sandbox.persist`),
        replacing these."""
        self._counters.clear()
        self._counters.update((k, v) for k, v in counters.items() if v)
        self._profiles.clear()
        self._profiles.update(profiles)

    def touch_profile(self, profile_id: str) -> None:
        """Talon.One creates an unknown profile on its first session."""
        self._profiles.setdefault(profile_id, ProfileStats(profile_id))

    def _move(
        self,
        charges: Iterable[Charge],
        sign: int,
        profile: str | None,
        sessions: int,
        sales: Decimal,
    ) -> None:
        # Everything that can fail happens before the first write, so a failure leaves
        # every counter as it was. Only the touched counters are visited: a close
        # costs O(its own charges), however many counters the ledger holds.
        with decimal.localcontext(ARITHMETIC):
            changed: dict[CounterKey, Decimal] = {}
            for charge in charges:
                # A zero charge (a discount capped to nothing) moves nothing: it must
                # neither create a counter at 0 nor fail on one already dropped.
                if not charge.amount:
                    continue
                before = changed.get(charge.key)
                if before is None:
                    before = self._counters.get(charge.key, ZERO)
                value = before + sign * charge.amount
                if value < 0:
                    raise AssertionError(
                        f"ledger: releasing {charge.amount} from {charge.key} would leave {value}"
                    )
                changed[charge.key] = value
            stats = None
            if profile:
                old = self._profiles.get(profile, ProfileStats(profile))
                stats = ProfileStats(
                    profile, old.closed_sessions + sessions, old.total_sales + sales
                )
        for key, value in changed.items():
            if value:
                self._counters[key] = value
            else:
                self._counters.pop(key, None)
        if stats is not None:
            self._profiles[stats.profile_id] = stats

    # -- snapshots, for dry runs and invariants ------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        with self._lock:
            return (dict(self._counters), dict(self._profiles))
