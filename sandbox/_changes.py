"""What changed between two rule versions, by source, and whether traffic exercised it.

:func:`changes` compares two sandboxes campaign by campaign (by name): the sandbox's
settings, each campaign's state, window, limits and group, its coupons and referrals,
and its rules (by title) condition by condition and effect by effect. A condition or
an amount is a callable, so it is compared by what it runs: its code (bytecode,
constants and the names it reads, not its line numbers or local variable names), its
closure, its defaults and the module-level values it reads, recursively through the
rules file's own helpers; functions of installed modules (``sandbox.conditions``' builders,
say) are compared by name and by the values they closed over (``total_at_least(75)``
against ``total_at_least(60)``).

:class:`Traffic` counts, over the answers one version gave, what each change needs
to be called exercised (:func:`unexercised` says what is missing):

- a rule: each condition seen true and seen false (conditions run in order, so a
  condition after a false one is not seen), and the rule fired at least once; a
  condition changed in place, asked in its old and its new form on the same contexts
  (:class:`Probe`) and seen to disagree once (a threshold moved from 75 to 60 is
  exercised by a cart between the two only); a changed effect that creates codes, one
  of its codes sent by two sessions;
- limits: a code of the campaign (or a rule's effect) seen refused by a limit, and a
  code accepted or a rule fired; a changed period, one customer redeeming at two
  moments that the old and the new period bucket differently;
- a coupon or referral: the code seen accepted, and seen refused for the reason its
  changed field decides (``CouponExpired`` for ``expiry_date``, ...);
- a window or state: the campaign seen running and seen not running;
- a group: the campaign seen passing its conditions beside another campaign of the
  group in one answer;
- the sandbox's settings: any answer at all.
"""

from __future__ import annotations

import enum
import functools
import itertools
import sys
import types
from collections import Counter
from collections.abc import Hashable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox.models import SessionState
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.core import Sandbox
    from sandbox.rules import Campaign, Rule
    from sandbox.state import IntegrationState

__all__ = [
    "Change",
    "Probe",
    "Seen",
    "Traffic",
    "changes",
    "fingerprint",
    "observe",
    "probe_answer",
    "probes",
    "unexercised",
]

_MAX_DEPTH = 12

# ---------------------------------------------------------------------------
# Fingerprints: what a value runs, as a hashable, comparable structure


def fingerprint(value: Any) -> Hashable:
    """A structure equal for two values that behave alike and different when their
    source differs (see the module docstring)."""
    return _fp(value, 0, ())


def _fp(value: Any, depth: int, stack: tuple[int, ...]) -> Hashable:
    if value is None or isinstance(value, bool):
        return ("const", value)
    if isinstance(value, int | float | Decimal):
        return ("num", value)
    if isinstance(value, str | bytes):
        return ("str", value)
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, value.value)
    if isinstance(value, datetime | date | timedelta):
        return ("time", value)
    if depth > _MAX_DEPTH:
        return ("deep",)
    if id(value) in stack:
        return ("cycle",)
    inner = (*stack, id(value))
    deeper = depth + 1
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, types.CodeType):
        return _code(value, deeper, inner)
    if isinstance(value, tuple | list):
        return ("seq", tuple(_fp(v, deeper, inner) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(_fp(v, deeper, inner) for v in value))
    if isinstance(value, Mapping):
        pairs = [(_fp(k, deeper, inner), _fp(v, deeper, inner)) for k, v in value.items()]
        return ("map", tuple(sorted(pairs, key=repr)))
    if isinstance(value, functools.partial):
        return (
            "partial",
            _fp(value.func, deeper, inner),
            _fp(value.args, deeper, inner),
            _fp(value.keywords, deeper, inner),
        )
    if isinstance(value, types.MethodType):
        return ("method", _fp(value.__func__, deeper, inner), _fp(value.__self__, deeper, inner))
    if isinstance(value, types.FunctionType):
        return _function(value, deeper, inner)
    if isinstance(value, type):
        if _installed(value.__module__):
            return ("class", value.__module__, value.__qualname__)
        own = {
            k: v
            for k, v in vars(value).items()
            if k not in ("__module__", "__dict__", "__weakref__", "__doc__", "__qualname__")
        }
        return ("user class", value.__qualname__, _fp(own, deeper, inner))
    if isinstance(value, types.BuiltinFunctionType):
        return ("builtin", getattr(value, "__module__", None), value.__qualname__)
    kind = _fp(type(value), deeper, inner)
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))
        return (
            "attrs",
            kind,
            tuple((f.name, _fp(getattr(value, f.name), deeper, inner)) for f in fields),
        )
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return ("object", kind, _fp(state, deeper, inner))
    slots = getattr(type(value), "__slots__", None)
    if isinstance(slots, tuple):
        return (
            "object",
            kind,
            tuple((s, _fp(getattr(value, s, None), deeper, inner)) for s in slots),
        )
    return ("object", kind)


def _installed(module: str | None) -> bool:
    """A module imported the ordinary way (the library, the standard library, the
    user's packages): the same code in both versions. A rules file run by
    ``load_rules`` is not one."""
    return module is not None and module in sys.modules


def _code(code: types.CodeType, depth: int, stack: tuple[int, ...]) -> Hashable:
    consts = tuple(_fp(c, depth, stack) for c in code.co_consts)
    return ("code", code.co_code, consts, code.co_names, code.co_argcount, code.co_kwonlyargcount)


def _names_read(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_read(const)
    return names


def _function(fn: types.FunctionType, depth: int, stack: tuple[int, ...]) -> Hashable:
    closure = tuple(_fp(_cell(cell), depth, stack) for cell in (fn.__closure__ or ()))
    defaults = (_fp(fn.__defaults__, depth, stack), _fp(fn.__kwdefaults__, depth, stack))
    if _installed(fn.__module__):
        # Library code is the same code in both versions: what differs is what it closed over.
        return ("library function", fn.__module__, fn.__qualname__, closure, defaults)
    scope = fn.__globals__
    read = tuple(
        (name, _fp(scope[name], depth, stack))
        for name in sorted(_names_read(fn.__code__))
        if name in scope and not name.startswith("__")
    )
    return ("function", _code(fn.__code__, depth, stack), closure, defaults, read)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _EMPTY_CELL


_EMPTY_CELL = ("empty cell",)


# ---------------------------------------------------------------------------
# Changes


@attrs.frozen
class Change:
    """One thing that differs between the two versions.

    ``kind`` is ``rule``, ``limits``, ``code``, ``window``, ``group`` or ``settings``;
    ``campaign`` and ``subject`` (a rule's title, a code) say where; ``what`` says
    how (``condition 1 changed``, ``expiry_date 2026-12-24 -> 2026-12-31``);
    ``versions`` the versions it exists in (``old``, ``new`` or both). ``field`` is
    the changed field of a code (for the rejection reason that exercises it).
    """

    kind: str
    campaign: str
    subject: str
    what: str
    versions: tuple[str, ...] = ("old", "new")
    fields: tuple[str, ...] = ()
    titles: tuple[tuple[str, str], ...] = ()
    """For a rule: its title in each version, ``(("old", title), ("new", title))``."""
    conditions: tuple[int, ...] = ()
    """For a rule in both versions: the conditions changed in place (same index in both)."""

    def title(self, version: str) -> str | None:
        return dict(self.titles).get(version)

    def describe(self) -> str:
        where = f"campaign {self.campaign!r}" if self.campaign else "the sandbox"
        subject = f", {self.subject}" if self.subject else ""
        return f"{where}{subject}: {self.what}"


def changes(old: Sandbox, new: Sandbox) -> list[Change]:
    """Every difference by source between two sandboxes' rules (see the module docstring)."""
    found: list[Change] = []
    settings = [name for name, a, b in _settings(old, new) if fingerprint(a) != fingerprint(b)]
    if settings:
        shown = ", ".join(
            f"{name} {a!r} -> {b!r}" for name, a, b in _settings(old, new) if name in settings
        )
        found.append(Change("settings", "", "", f"settings changed: {shown}"))
    before = {c.name: c for c in old.campaigns}
    after = {c.name: c for c in new.campaigns}
    for name in [*before, *(n for n in after if n not in before)]:
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            here = b if a is None else a
            assert here is not None
            version = ("new",) if a is None else ("old",)
            verb = "added" if a is None else "removed"
            found.append(Change("campaign", name, "", f"campaign {verb}", version))
            found += [
                Change(
                    "rule",
                    name,
                    f"rule {r.title!r}",
                    f"rule {verb}",
                    version,
                    titles=((version[0], r.title),),
                )
                for r in here.rules
            ]
            continue
        found += _campaign_changes(a, b)
    return found


def _settings(old: Sandbox, new: Sandbox) -> list[tuple[str, Any, Any]]:
    def of(sb: Sandbox) -> dict[str, Any]:
        found: dict[str, Any] = {"now": sb.now}
        settings = getattr(sb, "settings", None)
        if settings is not None and attrs.has(type(settings)):
            found.update(attrs.asdict(settings))
        for name in ("case_sensitivity", "strict_total", "application_id"):
            found[name] = getattr(sb, name, None)
        return found

    a, b = of(old), of(new)
    return [(name, a.get(name), b.get(name)) for name in dict.fromkeys([*a, *b])]


def _campaign_changes(a: Campaign, b: Campaign) -> list[Change]:
    name = a.name
    found: list[Change] = []
    if a.state != b.state or a.start != b.start or a.end != b.end:
        parts = [
            f"{field} {x.value if isinstance(x, enum.Enum) else x} -> "
            f"{y.value if isinstance(y, enum.Enum) else y}"
            for field, x, y in (
                ("state", a.state, b.state),
                ("start", a.start, b.start),
                ("end", a.end, b.end),
            )
            if x != y
        ]
        found.append(Change("window", name, "", "; ".join(parts)))
    if fingerprint(a.limits) != fingerprint(b.limits):
        shown = ["[" + ", ".join(lim.describe() for lim in c.limits) + "]" for c in (a, b)]
        periods = [sorted(str(lim.period) for lim in c.limits) for c in (a, b)]
        fields = ("period",) if periods[0] != periods[1] else ()
        found.append(Change("limits", name, "limits", f"{shown[0]} -> {shown[1]}", fields=fields))
    groups = [_group(c) for c in (a, b)]
    if groups[0] != groups[1]:
        found.append(Change("group", name, "group", f"{groups[0]} -> {groups[1]}"))
    extra = getattr(a, "reevaluate_on_return", None), getattr(b, "reevaluate_on_return", None)
    if extra[0] != extra[1]:
        found.append(Change("rule", name, "", f"reevaluate_on_return {extra[0]} -> {extra[1]}"))
    found += _code_changes(name, "coupon", a.coupons, b.coupons)
    found += _code_changes(name, "referral", a.referrals, b.referrals)
    found += _rule_changes(name, a.rules, b.rules)
    return found


def _group(campaign: Campaign) -> str:
    group = campaign.group
    if group is None:
        return "no group"
    return f"{group.name!r} ({group.mode.value})"


_CODE_FIELDS = {
    "coupon": ("usage_limit", "start_date", "expiry_date", "recipient"),
    "referral": ("advocate", "friend", "usage_limit", "start_date", "expiry_date"),
}


def _code_changes(
    campaign: str, kind: str, a: Mapping[str, Any], b: Mapping[str, Any]
) -> list[Change]:
    found: list[Change] = []
    for code in [*a, *(c for c in b if c not in a)]:
        x, y = a.get(code), b.get(code)
        subject = f"{kind} {code!r}"
        if x is None or y is None:
            version = ("new",) if x is None else ("old",)
            found.append(
                Change("code", campaign, subject, "added" if x is None else "removed", version)
            )
            continue
        fields = [f for f in _CODE_FIELDS[kind] if getattr(x, f) != getattr(y, f)]
        if fields:
            what = "; ".join(f"{f} {getattr(x, f)} -> {getattr(y, f)}" for f in fields)
            found.append(Change("code", campaign, subject, what, fields=tuple(fields)))
    return found


def _rule_changes(campaign: str, a: tuple[Rule, ...], b: tuple[Rule, ...]) -> list[Change]:
    found: list[Change] = []
    by_title = {r.title: r for r in b}
    matched: dict[int, Rule] = {}
    for rule in a:
        if rule.title in by_title:
            matched[rule.index] = by_title[rule.title]
    left_old = [r for r in a if r.index not in matched]
    taken = {r.title for r in matched.values()}
    left_new = [r for r in b if r.title not in taken]
    # An unmatched rule at the same place in both versions: the same rule, renamed.
    new_at = {r.index: r for r in left_new}
    for rule in list(left_old):
        other = new_at.get(rule.index)
        if other is not None:
            matched[rule.index] = other
            left_old.remove(rule)
            left_new.remove(other)
    for rule in a:
        other = matched.get(rule.index)
        if other is None:
            continue
        parts = _rule_parts(rule, other)
        if parts:
            subject = f"rule {other.title!r}"
            titles: tuple[tuple[str, str], ...] = (("old", rule.title), ("new", other.title))
            changed = tuple(
                i
                for i, (x, y) in enumerate(zip(rule.conditions, other.conditions, strict=False))
                if _condition(x) != _condition(y)
            )
            creates = any(
                fingerprint(e) != fingerprint(f) and (_creates(e) or _creates(f))
                for e, f in itertools.zip_longest(rule.effects, other.effects)
            )
            found.append(
                Change(
                    "rule",
                    campaign,
                    subject,
                    "; ".join(parts),
                    titles=titles,
                    conditions=changed,
                    fields=("creates",) if creates else (),
                )
            )
    for rule in left_old:
        titles = (("old", rule.title),)
        subject = f"rule {rule.title!r}"
        found.append(Change("rule", campaign, subject, "rule removed", ("old",), titles=titles))
    for rule in left_new:
        titles = (("new", rule.title),)
        subject = f"rule {rule.title!r}"
        found.append(Change("rule", campaign, subject, "rule added", ("new",), titles=titles))
    return found


def _creates(effect: Any) -> bool:
    return getattr(effect, "effect_type", None) in _CREATES


_CREATES = (EffectType.COUPON_CREATED, EffectType.REFERRAL_CREATED)


def _rule_parts(a: Rule, b: Rule) -> list[str]:
    parts = []
    if a.title != b.title:
        parts.append(f"renamed from {a.title!r}")
    if a.index != b.index:
        parts.append(f"moved from position {a.index} to {b.index}")
    for i in range(max(len(a.conditions), len(b.conditions))):
        x = a.conditions[i] if i < len(a.conditions) else None
        y = b.conditions[i] if i < len(b.conditions) else None
        if x is None and y is not None:
            parts.append(f"condition {i} added ({y.description})")
        elif y is None and x is not None:
            parts.append(f"condition {i} removed ({x.description})")
        elif x is not None and y is not None and _condition(x) != _condition(y):
            shown = (
                f"{x.description} -> {y.description}"
                if x.description != y.description
                else x.description
            )
            parts.append(f"condition {i} changed ({shown})")
    for i in range(max(len(a.effects), len(b.effects))):
        e = a.effects[i] if i < len(a.effects) else None
        f = b.effects[i] if i < len(b.effects) else None
        if fingerprint(e) != fingerprint(f):
            if e is None:
                parts.append(f"effect {i} added ({f!r})")
            elif f is None:
                parts.append(f"effect {i} removed ({e!r})")
            else:
                shown = f"{e!r} -> {f!r}" if repr(e) != repr(f) else repr(e)
                parts.append(f"effect {i} changed ({shown})")
    return parts


def _condition(condition: Any) -> Hashable:
    return (condition.kind, fingerprint(condition.fn))


# ---------------------------------------------------------------------------
# What one answer showed, and what a version's traffic showed over all its answers

_LIMIT_REASONS = frozenset(
    {
        "CouponLimitReached",
        "ReferralLimitReached",
        "ProfileLimitReached",
        "CampaignLimitReached",
    }
)
_FIELD_REASONS = {
    ("coupon", "expiry_date"): "CouponExpired",
    ("coupon", "start_date"): "CouponStartDateInFuture",
    ("coupon", "usage_limit"): "CouponLimitReached",
    ("coupon", "recipient"): "CouponRecipientDoesNotMatch",
    ("referral", "expiry_date"): "ReferralExpired",
    ("referral", "start_date"): "ReferralStartDateInFuture",
    ("referral", "usage_limit"): "ReferralLimitReached",
    ("referral", "friend"): "ReferralRecipientDoesNotMatch",
    ("referral", "advocate"): "ReferralRecipientIdSameAsAdvocate",
}
_ACCEPTS = (EffectType.ACCEPT_COUPON, EffectType.ACCEPT_REFERRAL)
_REJECTS = (EffectType.REJECT_COUPON, EffectType.REJECT_REFERRAL)


@attrs.frozen
class Seen:
    """What one answer showed, compactly (a worker process sends it back).

    ``rules``: ``(campaign, title, failed_at)`` with ``failed_at`` the condition that
    failed, or -1 when the conditions all held (fired, excluded by its group, or an
    effect could not be applied), -2 when they held and it fired;
    ``codes``: ``(campaign, CODE, "accepted" or the rejection reason)``;
    ``running``: ``(campaign, evaluated or not)``; ``contested``: campaigns whose
    conditions held beside another campaign of their group's;
    ``limited``: ``(campaign, limit reached or not)``.
    """

    rules: tuple[tuple[str, str, int], ...] = ()
    codes: tuple[tuple[str, str, str], ...] = ()
    running: tuple[tuple[str, bool], ...] = ()
    contested: tuple[str, ...] = ()
    limited: tuple[tuple[str, bool], ...] = ()
    probed: tuple[tuple[str, str, int, bool], ...] = ()
    """Changed conditions asked on this answer's context (:class:`Probe`): ``(campaign,
    old title, index, whether the old and the new condition disagreed)``."""
    redeemed: tuple[tuple[str, str, datetime], ...] = ()
    """Codes a closing session redeemed: ``(campaign, profile, when)``."""
    created: tuple[tuple[str, str, str], ...] = ()
    """Codes a rule created: ``(campaign, rule title, CODE)``."""
    session: str = ""
    """The answering session's id (a code sent by two sessions was used twice)."""


def observe(
    state: IntegrationState, campaigns: Mapping[int, Campaign], now: datetime | None = None
) -> Seen:
    """What ``state`` showed; ``campaigns`` are the answering sandbox's, by id, ``now``
    the sandbox's clock when it answered."""
    rules: list[tuple[str, str, int]] = []
    running: list[tuple[str, bool]] = []
    passed_by_group: dict[Any, list[str]] = {}
    limited: list[tuple[str, bool]] = []
    for trace in state.trace:
        running.append((trace.name, trace.skipped is None))
        if trace.skipped is not None:
            continue
        held = False
        for rule in trace.rules:
            failure = rule.failure
            if rule.fired:
                rules.append((trace.name, rule.title, -2))
                held = True
            elif failure is not None and failure.condition_index is not None:
                rules.append((trace.name, rule.title, failure.condition_index))
            else:
                rules.append((trace.name, rule.title, -1))
                held = True
                if failure is not None and failure.effect_index is not None:
                    limited.append((trace.name, True))
            if rule.fired:
                limited.append((trace.name, False))
        campaign = campaigns.get(trace.campaign_id)
        if held and campaign is not None and campaign.group is not None:
            passed_by_group.setdefault(campaign.group.id, []).append(trace.name)
    codes: list[tuple[str, str, str]] = []
    for effect in state.effects:
        if effect.effect_type in _ACCEPTS or effect.effect_type in _REJECTS:
            owner = campaigns.get(effect.campaign_id)
            name = owner.name if owner is not None else ""
            accepted = effect.effect_type in _ACCEPTS
            result = "accepted" if accepted else str(effect.rejection_reason)
            codes.append((name, str(effect.value).upper(), result))
            if name and (accepted or result in _LIMIT_REASONS):
                limited.append((name, not accepted))
    contested = tuple(n for names in passed_by_group.values() if len(names) > 1 for n in names)
    created = tuple(
        (
            campaigns[e.campaign_id].name if e.campaign_id in campaigns else "",
            e.rule_name,
            str(e.value).upper(),
        )
        for e in state.effects
        if e.effect_type in _CREATES
    )
    redeemed: list[tuple[str, str, datetime]] = []
    profile = state.session.profile_id
    if now is not None and profile and state.session.state is SessionState.CLOSED:
        redeemed = [(name, profile, now) for name, _, result in codes if result == "accepted"]
    return Seen(
        tuple(rules),
        tuple(codes),
        tuple(running),
        contested,
        tuple(limited),
        redeemed=tuple(redeemed),
        created=created,
        session=state.session_id,
    )


@attrs.define
class Traffic:
    """What one version's answers showed, over a whole comparison."""

    answers: int = 0
    failed_at: dict[tuple[str, str], set[int]] = attrs.Factory(dict)
    held: Counter[tuple[str, str]] = attrs.Factory(Counter)
    fired: Counter[tuple[str, str]] = attrs.Factory(Counter)
    codes: dict[tuple[str, str], set[str]] = attrs.Factory(dict)
    running: dict[str, set[bool]] = attrs.Factory(dict)
    contested: set[str] = attrs.Factory(set)
    limited: dict[str, set[bool]] = attrs.Factory(dict)
    probed: dict[tuple[str, str, int], bool] = attrs.Factory(dict)
    """Per changed condition asked: whether the two versions' conditions ever disagreed."""
    probing: bool = False
    """Whether the answers were probed at all (not by ``--jobs``/``--dask`` workers)."""
    redeemed: dict[tuple[str, str], set[datetime]] = attrs.Factory(dict)
    created: dict[tuple[str, str], set[str]] = attrs.Factory(dict)
    sends: dict[str, set[str]] = attrs.Factory(dict)
    """Per code, the sessions that sent it."""

    def add(self, seen: Seen) -> None:
        self.answers += 1
        for campaign, title, code in seen.created:
            self.created.setdefault((campaign, title), set()).add(code)
        for _, code, _ in seen.codes:
            self.sends.setdefault(code, set()).add(seen.session)
        for campaign, profile, when in seen.redeemed:
            self.redeemed.setdefault((campaign, profile), set()).add(when)
        for campaign, title, index, disagreed in seen.probed:
            asked = (campaign, title, index)
            self.probed[asked] = self.probed.get(asked, False) or disagreed
        for campaign, title, failed_at in seen.rules:
            key = (campaign, title)
            if failed_at >= 0:
                self.failed_at.setdefault(key, set()).add(failed_at)
            else:
                self.held[key] += 1
                if failed_at == -2:
                    self.fired[key] += 1
        for campaign, code, result in seen.codes:
            self.codes.setdefault((campaign, code), set()).add(result)
        for campaign, running in seen.running:
            self.running.setdefault(campaign, set()).add(running)
        self.contested.update(seen.contested)
        for campaign, reached in seen.limited:
            self.limited.setdefault(campaign, set()).add(reached)

    def condition_seen(self, campaign: str, title: str, index: int) -> tuple[bool, bool]:
        """Whether condition ``index`` of the rule was seen (true, false)."""
        key = (campaign, title)
        failed = self.failed_at.get(key, set())
        true = self.held[key] > 0 or any(i > index for i in failed)
        return true, index in failed


def unexercised(
    change: Change, sandboxes: Mapping[str, Sandbox], traffic: Mapping[str, Traffic]
) -> list[str]:
    """What the compared traffic never showed of ``change``, per version (empty: it
    was exercised). ``sandboxes`` and ``traffic`` are keyed by ``old`` and ``new``."""
    missing: list[str] = []
    versions = [v for v in change.versions if v in traffic]
    if change.kind == "settings":
        if not any(traffic[v].answers for v in versions):
            missing.append("no answer was compared")
        return missing
    if change.kind == "rule" and change.titles:
        for version in versions:
            title = change.title(version)
            if title is not None:
                found = _rule_missing(change.campaign, title, sandboxes[version], traffic[version])
                missing += [f"{version}: {m}" for m in found]
        if "creates" in change.fields:
            missing += _created_missing(change, traffic)
        old_title = change.title("old")
        for index in change.conditions:
            key = (change.campaign, old_title or "", index)
            asked = [traffic[v].probed[key] for v in traffic if key in traffic[v].probed]
            if asked and not any(asked):
                missing.append(
                    f"condition {index}: the old and the new condition never disagreed "
                    "on the compared traffic (no context between the two)"
                )
            elif not asked and any(traffic[v].probing for v in traffic):
                missing.append(
                    f"condition {index}: never asked (the conditions before it never held)"
                )
        return missing
    if change.kind == "rule":  # a campaign-wide rule setting (reevaluate_on_return)
        fired = any(k[0] == change.campaign for v in versions for k in traffic[v].fired)
        return [] if fired else ["no rule of the campaign fired"]
    if change.kind == "campaign":
        return []  # its rules are changes of their own
    if change.kind == "limits":
        for version in versions:
            seen = traffic[version].limited.get(change.campaign, set())
            if True not in seen:
                missing.append(f"{version}: no limit of the campaign was ever reached")
            if False not in seen:
                missing.append(f"{version}: the campaign never redeemed a code or fired")
        if "period" in change.fields and not _periods_told_apart(change, sandboxes, traffic):
            missing.append(
                "no customer redeemed the campaign twice in one period of one version and "
                "two periods of the other (a changed limit period)"
            )
        return missing
    if change.kind == "window":
        for version in versions:
            seen = traffic[version].running.get(change.campaign, set())
            campaign = _campaign(sandboxes[version], change.campaign)
            enabled = campaign is not None and campaign.state.value == "enabled"
            if True not in seen and enabled:
                missing.append(f"{version}: the campaign was never seen running")
            if False not in seen and enabled:
                missing.append(f"{version}: the campaign was never seen outside its window")
        if not any(True in traffic[v].running.get(change.campaign, set()) for v in versions):
            missing.append("the campaign never ran in either version")
        return list(dict.fromkeys(missing))
    if change.kind == "group":
        if not any(change.campaign in traffic[v].contested for v in versions):
            missing.append(
                "the campaign never passed its conditions beside another campaign of its group"
            )
        return missing
    if change.kind == "code":
        kind, _, quoted = change.subject.partition(" ")
        code = quoted.strip("'").upper()
        for version in versions:
            results = traffic[version].codes.get((change.campaign, code), set())
            if not results:
                missing.append(f"{version}: the code was never sent")
                continue
            if "accepted" not in results:
                missing.append(f"{version}: the code was never accepted")
            for field in change.fields:
                reason = _FIELD_REASONS.get((kind, field))
                if reason is not None and reason not in results:
                    missing.append(f"{version}: never refused with {reason} ({field} changed)")
        return missing
    return missing


def _periods_told_apart(
    change: Change, sandboxes: Mapping[str, Sandbox], traffic: Mapping[str, Traffic]
) -> bool:
    """Whether one customer redeemed the campaign at two moments that the old and the new
    limits' periods bucket differently (two days of one week, for daily against weekly)."""
    from sandbox.ledger import period_bucket

    found = [_campaign(sandboxes[v], change.campaign) for v in ("old", "new")]
    if found[0] is None or found[1] is None:
        return True
    pairs = [
        (a.period, b.period)
        for a, b in zip(found[0].limits, found[1].limits, strict=False)
        if a.period != b.period
    ]
    moments: dict[str, set[datetime]] = {}
    for seen in traffic.values():
        for (campaign, profile), times in seen.redeemed.items():
            if campaign == change.campaign:
                moments.setdefault(profile, set()).update(times)
    for times in moments.values():
        ordered = sorted(times)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                for x, y in pairs:
                    same = [period_bucket(p, first) == period_bucket(p, second) for p in (x, y)]
                    if same[0] != same[1]:
                        return True
    return False


def _campaign(sb: Sandbox, name: str) -> Campaign | None:
    return next((c for c in sb.campaigns if c.name == name), None)


def _rule_missing(campaign_name: str, title: str, sb: Sandbox, traffic: Traffic) -> list[str]:
    campaign = _campaign(sb, campaign_name)
    rule = None if campaign is None else next((r for r in campaign.rules if r.title == title), None)
    if rule is None:
        return []
    missing = []
    for index, condition in enumerate(rule.conditions):
        true, false = traffic.condition_seen(campaign_name, title, index)
        if not (true and false):
            never = " or ".join(w for w, seen in (("true", true), ("false", false)) if not seen)
            missing.append(f"condition {index} ({condition.description}) never {never}")
    if not traffic.fired[(campaign_name, title)]:
        missing.append("the rule never fired")
    return missing


def _created_missing(change: Change, traffic: Mapping[str, Traffic]) -> list[str]:
    """A changed effect that creates codes shows when a code it created is used, and
    used again (a usage limit, a validity)."""
    for version, seen in traffic.items():
        title = change.title(version)
        codes = seen.created.get((change.campaign, title or ""), set())
        if any(len(seen.sends.get(code, ())) >= 2 for code in codes):
            return []
    return [
        "no code the rule created was sent by two sessions (a changed create effect shows "
        "when its codes are used, and used again)"
    ]


# ---------------------------------------------------------------------------
# Probes: a changed condition, old and new, asked on the same context


@attrs.frozen
class Probe:
    """A condition changed in place: the rule in each version and the condition's index.

    :meth:`ask` rebuilds, from an answer, the context the campaign's conditions saw
    (the evaluated session, the clock, the profile before the update, the campaign's
    valid code), and when the rule's conditions before ``index`` hold there, asks the
    old and the new condition: whether they disagree. A threshold moved from 75 to 60
    is exercised only by a context between the two, whatever else the traffic did.
    """

    campaign: str
    title: str  # the rule's title in the old version (the key of Traffic.probed)
    index: int
    old: Rule
    new: Rule

    def ask(self, ctx: Any, own: Rule) -> bool | None:
        """On ``ctx`` (a context of the answering version, whose rule is ``own``): None
        when a condition before ``index`` does not hold (or raises), else whether the
        two versions' conditions disagree."""
        try:
            for condition in own.conditions[: self.index]:
                if condition.fn(ctx) is not True:
                    return None
            before = self.old.conditions[self.index].fn(ctx)
            after = self.new.conditions[self.index].fn(ctx)
        except Exception:
            return None
        if not isinstance(before, bool) or not isinstance(after, bool):
            return None
        return before != after


def probes(old: Sandbox, new: Sandbox, found: list[Change]) -> list[Probe]:
    """A :class:`Probe` per condition changed in place."""
    made = []
    for change in found:
        old_title, new_title = change.title("old"), change.title("new")
        if change.kind != "rule" or old_title is None or new_title is None:
            continue
        a, b = _campaign(old, change.campaign), _campaign(new, change.campaign)
        x = next((r for r in a.rules if r.title == old_title), None) if a else None
        y = next((r for r in b.rules if r.title == new_title), None) if b else None
        if x is None or y is None:
            continue
        made += [Probe(change.campaign, old_title, i, x, y) for i in change.conditions]
    return made


def probe_answer(
    state: IntegrationState,
    sb: Sandbox,
    version: str,
    found: list[Probe],
    profile: Any,
    now: datetime,
) -> tuple[tuple[str, str, int, bool], ...]:
    """Ask ``found`` on the contexts of ``state`` (an answer of ``version``'s ``sb``):
    ``(campaign, old title, index, disagreed)`` per probe asked."""
    from sandbox.engine import Context

    running = {t.name for t in state.trace if t.skipped is None}
    if not running:
        return ()
    names = {c.id: c.name for c in sb.campaigns}
    accepted: dict[str, str] = {}
    referred: dict[str, str] = {}
    for effect in state.effects:
        owner = names.get(effect.campaign_id)
        if owner is None:
            continue
        if effect.effect_type is EffectType.ACCEPT_COUPON:
            accepted.setdefault(owner, str(effect.value))
        elif effect.effect_type is EffectType.ACCEPT_REFERRAL:
            referred.setdefault(owner, str(effect.value))
    base = Context(state.session, now, profile)
    asked = []
    for probe in found:
        if probe.campaign not in running:
            continue
        ctx = base.for_campaign(probe.campaign)
        ctx.coupon = accepted.get(probe.campaign)
        ctx.coupon_valid = ctx.coupon is not None
        ctx.referral = referred.get(probe.campaign)
        ctx.referral_valid = ctx.referral is not None
        own = probe.old if version == "old" else probe.new
        disagreed = probe.ask(ctx, own)
        if disagreed is not None:
            asked.append((probe.campaign, probe.title, probe.index, disagreed))
    return tuple(asked)
