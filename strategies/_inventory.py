"""What the strategies read from a Sandbox: codes, profiles, rule hints, counters.

A sandbox changes while a test runs (sessions close and use codes up, the clock
moves), so strategies read it when they draw, not when they are made. Reading
is cached per sandbox until its inventory, clock or counters change.

Counters are read through the sandbox's public views (``sb.get_coupon(code)``,
``sb.get_referral(code)``, ``sb.limit_counters()``), never through the engine,
so the validity checks in ``_flaws`` are an independent second opinion.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
from hypothesis.errors import InvalidArgument

from sandbox.conditions import Hint
from sandbox.core import Sandbox
from sandbox.models import SessionState, json_value
from sandbox.rules import Campaign, Coupon, Referral
from sandbox.talon import EffectType

__all__ = ["CodeEntry", "CounterId", "Inventory", "check_sandbox", "inventory"]

CENT = Decimal("0.01")
_BASE_PROFILES = ("p1", "p2")
_MAX_STRINGS = 8

CounterId = tuple[int, str, frozenset[tuple[str, str]], str | None, str | None]
"""(campaign id, action, scope items, period, bucket): one limit counter."""


@attrs.frozen
class CodeEntry:
    """A coupon or referral of the inventory, with its usage counter."""

    kind: str  # "coupon" or "referral"
    code: str  # as stored (normalized)
    campaign: Campaign
    definition: Coupon | Referral
    used: int


@attrs.frozen(eq=False)
class Inventory:
    """One reading of a sandbox; ``memo`` holds strategies built from it."""

    now: datetime
    normalize: Callable[[str], str]
    case_insensitive: bool
    codes: tuple[CodeEntry, ...]
    counters: Mapping[CounterId, Decimal]
    profiles: tuple[str, ...]
    identifiers: tuple[str, ...]
    fresh_profile: str
    fresh_identifier: str
    amounts: tuple[Decimal, ...]
    attribute_pairs: tuple[tuple[str, Any], ...]
    profile_pairs: tuple[tuple[str, Any], ...]
    strings: tuple[str, ...]
    skus: tuple[str, ...]
    categories: tuple[str, ...]
    cost_names: tuple[str, ...]
    referred: Mapping[int, frozenset[str]]
    """Campaign id -> the profiles whose closed sessions redeemed one of its referrals."""
    memo: dict[str, Any] = attrs.field(factory=dict)

    def of_kind(self, kind: str) -> tuple[CodeEntry, ...]:
        found: tuple[CodeEntry, ...] | None = self.memo.get(f"of_kind:{kind}")
        if found is None:
            found = self.memo[f"of_kind:{kind}"] = tuple(e for e in self.codes if e.kind == kind)
        return found

    def is_known(self, code: str) -> bool:
        known: frozenset[str] | None = self.memo.get("known")
        if known is None:
            known = self.memo["known"] = frozenset(entry.code for entry in self.codes)
        return self.normalize(code) in known

    def variants(self, code: str) -> tuple[str, ...]:
        """The code as stored, then other letter cases the sandbox maps to it."""
        forms = [code]
        if self.case_insensitive:
            forms += [code.lower(), code.upper(), code.swapcase(), code.title()]
        return tuple(f for f in dict.fromkeys(forms) if self.normalize(f) == code)

    def identifiers_key(self, identifiers: Sequence[str] | None) -> Hashable:
        """What of a session's identifiers the code checks can see: whether there are
        any, and which of them the sandbox knows (only those have counters)."""
        known: frozenset[str] | None = self.memo.get("identifier_set")
        if known is None:
            known = self.memo["identifier_set"] = frozenset(self.identifiers)
        ids = identifiers or ()
        return bool(ids), frozenset(i for i in ids if i in known)


def check_sandbox(caller: str, sb: Any, *, optional: bool) -> None:
    if sb is None and optional:
        return
    if not isinstance(sb, Sandbox):
        allowed = "a sandbox.Sandbox or None" if optional else "a sandbox.Sandbox"
        raise InvalidArgument(
            f"{caller}(sb=...) must be {allowed}, got {type(sb).__name__} {sb!r}. "
            f"Pass the Sandbox whose campaigns, codes and rules the sessions should exercise."
        )


_CACHE: weakref.WeakKeyDictionary[Sandbox, tuple[Hashable, Inventory]] = weakref.WeakKeyDictionary()


def inventory(sb: Sandbox) -> Inventory:
    """The sandbox as the strategies see it now (cached until it changes)."""
    key = _fingerprint(sb)
    hit = _CACHE.get(sb)
    if hit is not None and hit[0] == key:
        return hit[1]
    found = _read(sb)
    _CACHE[sb] = (key, found)
    return found


def _fingerprint(sb: Sandbox) -> Hashable:
    campaigns = tuple(
        (
            c.id,
            c.state,
            c.start,
            c.end,
            c.limits,
            len(c.rules),
            tuple(c.coupons),
            tuple(c.referrals),
        )
        for c in sb.campaigns
    )
    # A tuple, not a frozenset: comparing it with the last one meets the same key objects
    # and compares by identity, where a frozenset would hash every counter key each draw.
    return (sb.now, sb.case_sensitivity, campaigns, tuple(sb.ledger.counters.items()))


def _read(sb: Sandbox) -> Inventory:
    codes: list[CodeEntry] = []
    for campaign in sb.campaigns:
        for code, coupon in campaign.coupons.items():
            used = sb.get_coupon(code).usage_counter
            codes.append(CodeEntry("coupon", code, campaign, coupon, used))
        for code, referral in campaign.referrals.items():
            used = sb.get_referral(code).usage_counter
            codes.append(CodeEntry("referral", code, campaign, referral, used))

    counters: dict[CounterId, Decimal] = {}
    counted_profiles: list[str] = []
    counted_identifiers: list[str] = []
    for counter in sb.limit_counters():
        scope = frozenset(counter.scope.items())
        key = (counter.campaign_id, counter.action, scope, counter.period, counter.bucket)
        counters[key] = counter.counter
        if "Profile" in counter.scope:
            counted_profiles.append(counter.scope["Profile"])
        if "Identifier" in counter.scope:
            counted_identifiers.append(counter.scope["Identifier"])

    referred: dict[int, set[str]] = {}
    for stored in sb.sessions.values():
        if stored.state not in (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED):
            continue
        profile = stored.submitted.profile_id
        for effect in stored.effects:
            if profile and effect.effect_type is EffectType.ACCEPT_REFERRAL:
                referred.setdefault(effect.campaign_id, set()).add(profile)

    hints = [h for c in sb.campaigns for r in c.rules for cond in r.conditions for h in cond.hints]
    strings = _unique(h.value for h in hints if h.kind == "string")[:_MAX_STRINGS]
    numbers = [h.value for h in hints if h.kind in ("total", "number")]
    pairs: list[tuple[str, Any]] = []
    for condition in (cond for c in sb.campaigns for r in c.rules for cond in r.conditions):
        pairs += _loose_pairs(condition.hints)
    for hint in hints:
        if hint.kind != "attribute" or not isinstance(hint.key, str):
            continue
        if _is_number(hint.value):
            pairs += [(hint.key, v) for v in _around(hint.value)]
        elif _is_json(hint.value):
            pairs.append((hint.key, hint.value))

    profile_pairs: list[tuple[str, Any]] = []
    for hint in hints:
        if hint.kind != "profile_attribute" or not isinstance(hint.key, str):
            continue
        if _is_number(hint.value):
            profile_pairs += [(hint.key, v) for v in _around(hint.value)]
        elif _is_json(hint.value):
            profile_pairs.append((hint.key, hint.value))
    costs = [getattr(e, "cost", None) for c in sb.campaigns for r in c.rules for e in r.effects]

    people = [
        p
        for entry in codes
        for p in (
            getattr(entry.definition, "recipient", None),
            getattr(entry.definition, "advocate", None),
            getattr(entry.definition, "friend", None),
        )
        if p
    ]
    profile_hints = [h.value for h in hints if h.kind == "profile" and isinstance(h.value, str)]
    referred_profiles = [p for found in referred.values() for p in sorted(found)]
    profiles = _unique(
        [*_BASE_PROFILES, *people, *counted_profiles, *referred_profiles, *profile_hints]
    )
    identifier_hints = [h.value for h in hints if h.kind == "identifier"]
    identifiers = _unique([*counted_identifiers, *identifier_hints])

    return Inventory(
        now=sb.now,
        normalize=sb.normalize_code,
        case_insensitive=sb.case_sensitivity != "sensitive",
        codes=tuple(codes),
        counters=counters,
        profiles=profiles,
        identifiers=identifiers,
        fresh_profile=_fresh("p-new-{}", {*profiles, *strings}),
        fresh_identifier=_fresh("192.0.2.{}", set(identifiers)),
        amounts=tuple(sorted({a for n in numbers for a in _around(n) if a >= 0})),
        attribute_pairs=tuple(dict.fromkeys((k, v) for k, v in pairs if _hashable(v))),
        profile_pairs=tuple(dict.fromkeys((k, v) for k, v in profile_pairs if _hashable(v))),
        strings=strings,
        skus=_unique(h.value for h in hints if h.kind == "sku"),
        categories=_unique(h.value for h in hints if h.kind == "category"),
        cost_names=_unique(costs),
        referred={campaign: frozenset(found) for campaign, found in referred.items()},
    )


def _loose_pairs(hints: Sequence[Hint]) -> list[tuple[str, Any]]:
    """Guess key/value pairs from one callable's constants, in source order.

    ``ctx.attributes.get("tier") == "vip"`` holds "tier" then "vip": two strings
    in a row are a key and its value; a string left over is a key compared
    with the numbers of the same condition (``.get("age") >= 18``).
    """
    strings = [h.value for h in hints if h.kind == "string" and isinstance(h.value, str)]
    numbers = [a for h in hints if h.kind == "number" for a in _around(h.value)]
    pairs: list[tuple[str, Any]] = []
    while len(strings) >= 2:
        key, value, *strings = strings
        pairs.append((key, value))
    pairs += [(key, number) for key in strings for number in numbers]
    return pairs


def _around(value: Any) -> list[Decimal]:
    """A threshold and the values a cent either side of it."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return []
    if not number.is_finite():
        return []
    found = [number - CENT, number, number + CENT]
    # Two places when that is exact, so 200 reads as 200.00 like every other amount.
    return [n.quantize(CENT) if n == n.quantize(CENT) else n for n in found]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _is_json(value: Any) -> bool:
    return not list(json_value(None, value))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _unique(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _fresh(pattern: str, taken: set[str]) -> str:
    n = 1
    while pattern.format(n) in taken:
        n += 1
    return pattern.format(n)
