"""Sessions whose codes pass every check, and sessions with exactly one planted flaw.

Both are computed from the sandbox's inventory, clock and counters
(``_inventory``), never by asking the engine: :func:`_problems` restates
Talon.One's code checks, in its order of reasons, and names every problem a
code would have for a given profile and identifiers. A code is valid when it
has none; a flaw is planted when it has exactly one. Which flaws a sandbox can
show follows from the same function, so nothing is hard-coded per inventory.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from sandbox.core import Sandbox
from sandbox.ledger import period_bucket
from sandbox.models import AnySession
from sandbox.rules import Coupon
from sandbox.talon import CampaignState, LimitAction, LimitEntity
from strategies._inventory import CodeEntry, Inventory, check_sandbox, inventory
from strategies._sessions import (
    _CODE_ALPHABET,
    _MAX_COUPON_CODES,
    _shown_as,
    check_version,
    draw_session,
)

__all__ = [
    "FLAWS",
    "Flawed",
    "invalid_sessions",
    "reachable_flaws",
    "unreachable_flaws",
    "valid_sessions",
]

Identifiers = tuple[str, ...] | None
_T = TypeVar("_T")


@attrs.frozen
class Flawed:
    """An open, schema-valid session with exactly one planted flaw.

    ``flaw`` names it (``"expired_coupon"``); ``expected`` is the rejection
    reason Talon.One gives for it (``"CouponExpired"``); ``code`` is the flawed
    code as sent (in a V2 session, one of its ``coupon_codes`` or its
    ``referral_code``).
    """

    session: AnySession
    flaw: str
    expected: str
    code: str | None = None


# name -> (expected reason, what the sandbox needs for it to be reachable)
FLAWS: dict[str, tuple[str, str]] = {
    "unknown_coupon": ("CouponNotFound", "nothing: any code not in the inventory"),
    "unknown_referral": ("ReferralNotFound", "nothing: any code not in the inventory"),
    "archived_coupon_campaign": (
        "CouponPartOfNotTriggeredCampaign",
        "a coupon of an archived campaign",
    ),
    "archived_referral_campaign": (
        "ReferralPartOfNotTriggeredCampaign",
        "a referral of an archived campaign",
    ),
    "coupon_campaign_not_running": (
        "CouponPartOfNotRunningCampaign",
        "a coupon of a disabled campaign, or one outside its start/end at sb.now",
    ),
    "referral_campaign_not_running": (
        "ReferralPartOfNotRunningCampaign",
        "a referral of a disabled campaign, or one outside its start/end at sb.now",
    ),
    "future_coupon": ("CouponStartDateInFuture", "a coupon whose start_date is after sb.now"),
    "future_referral": (
        "ReferralStartDateInFuture",
        "a referral whose start_date is after sb.now",
    ),
    "expired_coupon": ("CouponExpired", "a coupon whose expiry_date is before sb.now"),
    "expired_referral": ("ReferralExpired", "a referral whose expiry_date is before sb.now"),
    "coupon_profile_required": (
        "ProfileRequired",
        "a coupon (without recipient) of a campaign with a per-Profile limit",
    ),
    "referral_profile_required": (
        # Referrals have no ProfileRequired: the sandbox answers ProfileLimitReached.
        "ProfileLimitReached",
        "a referral (without friend) of a campaign with a per-Profile limit, sent without a profile",
    ),
    "recipient_mismatch": ("CouponRecipientDoesNotMatch", "a coupon with a recipient"),
    "self_referral": (
        "ReferralRecipientIdSameAsAdvocate",
        "a referral without a friend (its advocate uses it)",
    ),
    "friend_mismatch": ("ReferralRecipientDoesNotMatch", "a referral with a friend"),
    "friend_already_referred": (
        "ReferralCustomerAlreadyReferred",
        "a profile whose closed session redeemed a referral of the same campaign",
    ),
    "coupon_limit_reached": (
        "CouponLimitReached",
        "a coupon at its usage_limit (or a per-Coupon redeemCoupon limit)",
    ),
    "referral_limit_reached": (
        "ReferralLimitReached",
        "a referral at its usage_limit (or a per-Referral redeemReferral limit)",
    ),
    "coupon_identifier_missing": (
        "CouponLimitReached",
        "a coupon of a campaign with a per-Identifier limit",
    ),
    "referral_identifier_missing": (
        "ReferralLimitReached",
        "a referral of a campaign with a per-Identifier limit",
    ),
    "coupon_identifier_limit_reached": (
        "CouponLimitReached",
        "an identifier at a per-Identifier redeemCoupon limit",
    ),
    "referral_identifier_limit_reached": (
        "ReferralLimitReached",
        "an identifier at a per-Identifier redeemReferral limit",
    ),
    "coupon_profile_limit_reached": (
        "ProfileLimitReached",
        "a profile at a per-Profile redeemCoupon limit",
    ),
    "referral_profile_limit_reached": (
        "ProfileLimitReached",
        "a profile at a per-Profile redeemReferral limit",
    ),
    "coupon_campaign_limit_reached": (
        "CampaignLimitReached",
        "a campaign-wide redeemCoupon limit used up",
    ),
    "referral_campaign_limit_reached": (
        "CampaignLimitReached",
        "a campaign-wide redeemReferral limit used up",
    ),
}


# ---------------------------------------------------------------------------
# The checks, restated: every problem a code has for a profile and identifiers


def _problems(
    inv: Inventory, entry: CodeEntry, profile: str | None, identifiers: Identifiers
) -> list[str]:
    """Flaw names, in Talon.One's check order; [] when the code is valid."""
    kind, campaign, definition = entry.kind, entry.campaign, entry.definition
    profile = profile or None
    ids = tuple(dict.fromkeys(identifiers or ()))
    found: list[str] = []
    if campaign.state is CampaignState.ARCHIVED:
        found.append(f"archived_{kind}_campaign")
    elif not campaign.is_running(inv.now):
        found.append(f"{kind}_campaign_not_running")
    if definition.start_date is not None and inv.now < definition.start_date:
        found.append(f"future_{kind}")
    if definition.expiry_date is not None and inv.now > definition.expiry_date:
        found.append(f"expired_{kind}")
    if profile is None and any(LimitEntity.PROFILE in lim.entities for lim in campaign.limits):
        found.append(f"{kind}_profile_required")
    if isinstance(definition, Coupon):
        if definition.recipient is not None and definition.recipient != profile:
            found.append("recipient_mismatch")
    else:
        if profile is not None and profile == definition.advocate:
            found.append("self_referral")
        if definition.friend is not None and definition.friend != profile:
            found.append("friend_mismatch")
        if profile is not None and profile in inv.referred.get(campaign.id, ()):
            found.append("friend_already_referred")
    if definition.usage_limit and entry.used >= definition.usage_limit:
        found.append(f"{kind}_limit_reached")
    if not ids and any(LimitEntity.IDENTIFIER in lim.entities for lim in campaign.limits):
        found.append(f"{kind}_identifier_missing")
    action = LimitAction.REDEEM_COUPON if kind == "coupon" else LimitAction.REDEEM_REFERRAL
    scope: dict[LimitEntity, Sequence[str]] = {
        LimitEntity.COUPON: (entry.code,) if kind == "coupon" else (),
        LimitEntity.REFERRAL: (entry.code,) if kind == "referral" else (),
        LimitEntity.PROFILE: (profile,) if profile else (),
        LimitEntity.IDENTIFIER: ids,
    }
    for limit in campaign.limits_for(action):
        if any(not scope[e] for e in limit.entities):
            continue  # an entity the session lacks: nothing to count (ProfileRequired covers it)
        period = limit.period.value if limit.period else None
        bucket = period_bucket(limit.period, inv.now)
        combos = itertools.product(*([(e.value, v) for v in scope[e]] for e in limit.entities))
        full = any(
            inv.counters.get(
                (campaign.id, action.value, frozenset(combo), period, bucket), Decimal(0)
            )
            + 1
            > limit.limit
            for combo in combos
        )
        if full:
            if LimitEntity.PROFILE in limit.entities:
                found.append(f"{kind}_profile_limit_reached")
            elif LimitEntity.IDENTIFIER in limit.entities:
                found.append(f"{kind}_identifier_limit_reached")
            elif limit.entities:
                found.append(f"{kind}_limit_reached")
            else:
                found.append(f"{kind}_campaign_limit_reached")
    return found


def _problems_of(
    inv: Inventory, entry: CodeEntry, profile: str | None, identifiers: Identifiers
) -> tuple[str, ...]:
    """:func:`_problems`, remembered per inventory (drawing asks the same again and again)."""
    cache: dict[Any, tuple[str, ...]] = inv.memo.setdefault("problems", {})
    key = (entry.kind, entry.code, profile or None, inv.identifiers_key(identifiers))
    found = cache.get(key)
    if found is None:
        found = cache[key] = tuple(_problems(inv, entry, profile, identifiers))
    return found


def _valid_codes(
    inv: Inventory, kind: str, profile: str | None, identifiers: Identifiers
) -> tuple[CodeEntry, ...]:
    """The codes of ``kind`` with no problem for this profile and these identifiers."""
    cache: dict[Any, tuple[CodeEntry, ...]] = inv.memo.setdefault("valid", {})
    key = (kind, profile or None, inv.identifiers_key(identifiers))
    found = cache.get(key)
    if found is None:
        found = cache[key] = tuple(
            e for e in inv.of_kind(kind) if not _problems_of(inv, e, profile, identifiers)
        )
    return found


@functools.lru_cache(maxsize=1024)
def _up_to(n: int) -> SearchStrategy[int]:
    # One strategy per bound, kept: a new one per draw is validated again each time.
    return st.integers(min_value=0, max_value=n)


def _index(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    """One of ``items``, shrinking to the first. Drawn as an index: ``sampled_from``
    over hundreds of plans hashes every one of them on every draw."""
    return items[draw(_up_to(len(items) - 1))]


def _maybe(draw: st.DrawFn, items: Sequence[_T]) -> _T | None:
    """None or one of ``items``, in one choice that shrinks to None."""
    if not items:
        return None
    picked = draw(_up_to(len(items)))
    return None if picked == 0 else items[picked - 1]


@attrs.frozen
class _Plan:
    """A code and a profile and identifiers that give it the wanted problems."""

    entry: CodeEntry
    profile: str | None
    identifiers: Identifiers


def _profiles(inv: Inventory) -> tuple[str | None, ...]:
    return (None, *inv.profiles, inv.fresh_profile)


def _identifier_sets(inv: Inventory) -> tuple[Identifiers, ...]:
    return (None, (inv.fresh_identifier,), *((i,) for i in inv.identifiers))


def _plans(inv: Inventory) -> dict[str, list[_Plan]]:
    """Every (code, profile, identifiers) with no problem ("valid") or exactly one."""
    cached: dict[str, list[_Plan]] | None = inv.memo.get("plans")
    if cached is not None:
        return cached
    plans: dict[str, list[_Plan]] = {}
    for entry in inv.codes:
        for profile in _profiles(inv):
            for ids in _identifier_sets(inv):
                found = _problems_of(inv, entry, profile, ids)
                if len(found) <= 1:
                    key = found[0] if found else f"valid_{entry.kind}"
                    plans.setdefault(key, []).append(_Plan(entry, profile, ids))
    inv.memo["plans"] = plans
    return plans


def reachable_flaws(sb: Sandbox) -> dict[str, str]:
    """Flaw name -> the rejection reason it gives, for the flaws ``sb`` can show now.

    >>> from sandbox import Sandbox
    >>> reachable_flaws(Sandbox(now="2026-12-01T10:00:00Z"))
    {'unknown_coupon': 'CouponNotFound', 'unknown_referral': 'ReferralNotFound'}
    """
    check_sandbox("reachable_flaws", sb, optional=False)
    return _reachable(inventory(sb))


def unreachable_flaws(sb: Sandbox) -> dict[str, str]:
    """Flaw name -> what ``sb`` would need for :func:`invalid_sessions` to plant it."""
    check_sandbox("unreachable_flaws", sb, optional=False)
    reachable = _reachable(inventory(sb))
    return {name: f"needs {need}" for name, (_, need) in FLAWS.items() if name not in reachable}


def _reachable(inv: Inventory) -> dict[str, str]:
    found: dict[str, str] | None = inv.memo.get("reachable")
    if found is None:
        plans = _plans(inv)
        names = ["unknown_coupon", "unknown_referral", *(n for n in FLAWS if n in plans)]
        found = inv.memo["reachable"] = {name: FLAWS[name][0] for name in names}
    return dict(found)


# ---------------------------------------------------------------------------
# Drawing


_IDENTIFIER_LISTS: SearchStrategy[Identifiers] = st.none() | st.lists(
    st.ip_addresses().map(str), min_size=1, max_size=3
).map(tuple)


def _settle(
    draw: st.DrawFn, inv: Inventory, plan: _Plan, wanted: list[str]
) -> tuple[str | None, Identifiers]:
    """The plan's profile, and random identifiers when they keep the wanted problems."""
    ids = draw(_IDENTIFIER_LISTS)
    if list(_problems_of(inv, plan.entry, plan.profile, ids)) == wanted:
        return plan.profile, ids
    return plan.profile, plan.identifiers


def _variant(draw: st.DrawFn, inv: Inventory, entry: CodeEntry) -> str:
    """The entry's code as stored, or in another letter case the sandbox maps to it."""
    cache: dict[str, SearchStrategy[str]] = inv.memo.setdefault("variants", {})
    found = cache.get(entry.code)
    if found is None:
        found = cache[entry.code] = st.sampled_from(inv.variants(entry.code))
    return draw(found)


def _other_code(
    draw: st.DrawFn, inv: Inventory, kind: str, profile: str | None, ids: Identifiers
) -> str | None:
    """Maybe a code of ``kind`` that is valid with this profile and these identifiers."""
    entry = _maybe(draw, _valid_codes(inv, kind, profile, ids))
    return None if entry is None else _variant(draw, inv, entry)


def _other_coupons(
    draw: st.DrawFn,
    inv: Inventory,
    profile: str | None,
    ids: Identifiers,
    *,
    besides: CodeEntry | None,
) -> list[str]:
    """Valid coupons of other campaigns than ``besides``', one per campaign, for a V2
    session: each is checked on its own, and one campaign uses only one code."""
    taken = {besides.campaign.id} if besides is not None else set()
    fits = [e for e in _valid_codes(inv, "coupon", profile, ids) if e.campaign.id not in taken]
    picked: list[str] = []
    while fits and len(picked) + len(taken) < _MAX_COUPON_CODES:
        entry = _maybe(draw, fits)  # None ends the list, and is what it shrinks to
        if entry is None:
            break
        picked.append(_variant(draw, inv, entry))
        fits = [e for e in fits if e.campaign.id != entry.campaign.id]
    return picked


def _codes(
    draw: st.DrawFn,
    inv: Inventory,
    version: int,
    *,
    kind: str,
    code: str | None,
    entry: CodeEntry | None,
    profile: str | None,
    ids: Identifiers,
) -> dict[str, Any]:
    """The session's code fields: ``code`` (of ``kind``, maybe None) and valid others."""
    other = "referral" if kind == "coupon" else "coupon"
    if version == 1:
        return {kind: code, other: _other_code(draw, inv, other, profile, ids)}
    if kind == "coupon":
        coupons = _other_coupons(draw, inv, profile, ids, besides=entry)
        if code is not None:
            # Anywhere among the others: each code is checked on its own.
            coupons.insert(draw(st.integers(min_value=0, max_value=len(coupons))), code)
        referral = _other_code(draw, inv, "referral", profile, ids)
    else:
        coupons = _other_coupons(draw, inv, profile, ids, besides=None)
        referral = code
    return {"coupon_codes": tuple(coupons) or None, "referral_code": referral}


def _unknown_code(inv: Inventory) -> SearchStrategy[str]:
    found: SearchStrategy[str] | None = inv.memo.get("unknown")
    if found is None:
        codes = st.text(_CODE_ALPHABET, min_size=4, max_size=12)
        found = inv.memo["unknown"] = codes.filter(lambda c: not inv.is_known(c))
    return found


def valid_sessions(sb: Sandbox, *, version: int = 1) -> SearchStrategy[Any]:
    """Open sessions whose codes pass every validity and limit check of ``sb`` now.

    Codes (maybe none, maybe both a coupon and a referral) come from running
    campaigns, inside their dates, for the right recipient or friend, with
    room under every usage limit and ``redeemCoupon``/``redeemReferral``
    limit at ``sb.now`` with ``sb``'s current counters; profile and
    identifiers are present when a campaign limit counts them. Read from
    ``sb`` when drawn, so a test that closes sessions between examples gets
    sessions valid for the counters of that moment. Any rejection of such a
    session's codes can only come from rule conditions or budgets.

    ``version=2`` draws V2 sessions: up to three coupon codes, each of another
    campaign (a campaign's rules see one code, its first valid one), and maybe a
    referral code.
    """
    check_sandbox("valid_sessions", sb, optional=False)
    check_version("valid_sessions", version)
    # Passed only when asked for, so the repr shows the call as written.
    return _draw_valid(sb) if version == 1 else _draw_valid(sb, version=version)


@st.composite
@_shown_as("valid_sessions")
def _draw_valid(draw: st.DrawFn, sb: Sandbox, *, version: int = 1) -> AnySession:
    inv = inventory(sb)
    plans = _plans(inv)
    first = draw(st.sampled_from(("coupon", "referral")))
    second = "referral" if first == "coupon" else "coupon"
    plan = _maybe(draw, plans.get(f"valid_{first}", []))
    if plan is None:
        # Without a first code, the second (if any) decides profile and identifiers.
        plan = _maybe(draw, plans.get(f"valid_{second}", []))
        if plan is None:
            none = {"coupon": None, "referral": None}
            if version == 2:
                none = {"coupon_codes": None, "referral_code": None}
            return draw_session(draw, sb, none, version, inv)
        first = second
    profile, ids = _settle(draw, inv, plan, [])
    codes = _codes(
        draw,
        inv,
        version,
        kind=first,
        code=_variant(draw, inv, plan.entry),
        entry=plan.entry,
        profile=profile,
        ids=ids,
    )
    fixed = {"profile_id": profile, "identifiers": ids, **codes}
    return draw_session(draw, sb, fixed, version, inv)


def invalid_sessions(sb: Sandbox, *, version: int = 1) -> SearchStrategy[Flawed]:
    """:class:`Flawed` sessions: exactly one planted flaw, its expected reason.

    Every flaw ``sb`` can show at its clock and counters is drawn (see
    :func:`reachable_flaws`; :func:`unreachable_flaws` says what the others
    need). The flawed code has that one problem and no other; the other code
    is absent or valid. Each draw calls ``event(f"flaw={flaw}")``.

    ``version=2`` plants the flaw in a V2 session: a flawed coupon sits among
    up to two valid coupons of other campaigns (each code is checked on its
    own, so only the flawed one is rejected); ``Flawed.code`` says which.
    """
    check_sandbox("invalid_sessions", sb, optional=False)
    check_version("invalid_sessions", version)
    return _draw_flawed(sb) if version == 1 else _draw_flawed(sb, version=version)


@st.composite
@_shown_as("invalid_sessions")
def _draw_flawed(draw: st.DrawFn, sb: Sandbox, *, version: int = 1) -> Flawed:
    # Reachability is read at draw time: the sandbox may have changed since the call.
    inv = inventory(sb)
    reachable = _reachable(inv)
    flaw = _index(draw, tuple(reachable))
    event(f"flaw={flaw}")
    entry: CodeEntry | None
    if flaw in ("unknown_coupon", "unknown_referral"):
        kind = flaw.removeprefix("unknown_")
        profile = _maybe(draw, inv.profiles)
        ids = draw(_IDENTIFIER_LISTS)
        code, entry = draw(_unknown_code(inv)), None
    else:
        plan = _index(draw, _plans(inv)[flaw])
        kind, entry = plan.entry.kind, plan.entry
        profile, ids = _settle(draw, inv, plan, [flaw])
        code = _variant(draw, inv, plan.entry)
    codes = _codes(draw, inv, version, kind=kind, code=code, entry=entry, profile=profile, ids=ids)
    fixed = {"profile_id": profile, "identifiers": ids, **codes}
    session = draw_session(draw, sb, fixed, version, inv)
    return Flawed(session, flaw, reachable[flaw], code)
