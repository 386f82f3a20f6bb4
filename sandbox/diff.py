"""Differential testing: what a rule change does to customers, and whether the traffic
compared could show it.

Two sandboxes, one per rule version, are fed the same traffic in order, each carrying
its own state as ``eval`` does (stored sessions, limit counters, profiles, created
codes), and every answer is compared. The traffic is

- recorded: :func:`compare_lines` over a JSONL file, any line ``eval`` takes (sessions,
  closes, ``reopen``, ``returnItems``, profile updates, ``advance``), or with
  ``dry=True`` each line evaluated dry, alone (what ``--jobs``/``--dask`` parallelise);
- generated: :func:`search` runs whole lifecycles (sessions opened, updated, closed,
  cancelled, reopened and returned, profiles updated, the clock moved, created codes
  redeemed) drawn by :class:`strategies.SessionLifecycle` from each version's rules,
  and shrinks one lifecycle per kind of difference to the fewest steps that show it;
- :func:`compare`: a list of sessions, each evaluated dry (the Python API).

A session whose answers differ is reported once, by its id and profile, with the two
answers side by side. Beside the verdict, the report lists what each version changed,
by source (:mod:`sandbox._changes`: conditions and effects compared by their code,
campaign by campaign), and whether the compared traffic exercised each change: a
changed rule whose conditions were never seen both true and false (or, changed in
place, never seen to disagree with their old form on the same context), a changed limit
never reached, a changed coupon never refused for the reason its change decides. The
verdict (:attr:`DiffReport.exit_code`, ``python -m sandbox diff``'s exit code):

- 0 ``same``: no answer differs and every change was exercised;
- 1 ``differs``: some answer differs;
- 3 ``not exercised``: no answer differs, but some change was never exercised, so
  "no difference" would be a false all-clear.

Kinds of difference, per answer: ``code now rejected`` / ``code now accepted``,
``reason changed``, ``discount up`` / ``discount down``, ``effect added`` /
``effect removed``, ``now refused`` / ``no longer refused``. Campaigns are compared by
name, so ids may differ between the two rule files.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import attrs

from sandbox._changes import (
    Change,
    Probe,
    Seen,
    Traffic,
    changes,
    fingerprint,
    observe,
    probe_answer,
    probes,
    unexercised,
)
from sandbox.codec import dumps
from sandbox.core import Sandbox
from sandbox.effects import CreateCoupon
from sandbox.errors import RuleError, SandboxError
from sandbox.models import NewCustomerSessionV2, SessionState
from sandbox.state import IntegrationState
from sandbox.steps import TextError, decode_line, parse_line, read_step
from sandbox.talon import EffectType

__all__ = [
    "EXIT_DIFFERS",
    "EXIT_NOT_EXERCISED",
    "EXIT_SAME",
    "KINDS",
    "DiffReport",
    "Difference",
    "LineOutcome",
    "Outcome",
    "Probing",
    "SessionDiff",
    "answer",
    "compare",
    "compare_lines",
    "line_outcome",
    "outcome",
    "probings",
    "search",
]

EXIT_SAME = 0
EXIT_DIFFERS = 1
EXIT_NOT_EXERCISED = 3

KINDS = (
    "code now rejected",
    "code now accepted",
    "reason changed",
    "discount up",
    "discount down",
    "effect added",
    "effect removed",
    "now refused",
    "no longer refused",
)
_CODE_EFFECTS = (
    EffectType.ACCEPT_COUPON,
    EffectType.REJECT_COUPON,
    EffectType.ACCEPT_REFERRAL,
    EffectType.REJECT_REFERRAL,
)
_SHOWN_SESSIONS = 10  # sessions shown in full by render(); the JSON has them all


@attrs.frozen
class Outcome:
    """What one answer means for the comparison (or the refusal of the request)."""

    codes: Mapping[str, str] = attrs.field(factory=dict, hash=False)  # code -> accepted|reason
    discount: Decimal = Decimal(0)
    effects: tuple[tuple[str, str, str], ...] = ()  # (type, campaign, name), sorted
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {
            "codes": dict(self.codes),
            "discount": str(self.discount),
            "effects": [list(e) for e in self.effects],
        }


def outcome(state: IntegrationState, campaigns: Mapping[int, str]) -> Outcome:
    codes: dict[str, str] = {}
    for effect in state.effects:
        if effect.effect_type in (EffectType.ACCEPT_COUPON, EffectType.ACCEPT_REFERRAL):
            codes[str(effect.value)] = "accepted"
        elif effect.effect_type in (EffectType.REJECT_COUPON, EffectType.REJECT_REFERRAL):
            codes[str(effect.value)] = str(effect.rejection_reason)
    effects = sorted(
        (
            e.effect_type.value,
            campaigns.get(e.campaign_id, str(e.campaign_id)),
            str(e.props.get("name", e.props.get("value", ""))),
        )
        for e in state.effects
        if e.effect_type not in _CODE_EFFECTS
    )
    return Outcome(codes, state.total_discount, tuple(effects))


def _refusal(exc: SandboxError) -> Outcome:
    return Outcome(error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def kinds_of(old: Outcome, new: Outcome) -> list[str]:
    """The kinds of difference between two outcomes of one answer (none: equal)."""
    found: list[str] = []
    for code in sorted(set(old.codes) | set(new.codes)):
        before, after = old.codes.get(code), new.codes.get(code)
        if before == after:
            continue
        if before == "accepted":
            found.append("code now rejected")
        elif after == "accepted":
            found.append("code now accepted")
        else:
            found.append("reason changed")
    if new.discount > old.discount:
        found.append("discount up")
    elif new.discount < old.discount:
        found.append("discount down")
    before_effects, after_effects = Counter(old.effects), Counter(new.effects)
    if after_effects - before_effects:
        found.append("effect added")
    if before_effects - after_effects:
        found.append("effect removed")
    if old.error is None and new.error is not None:
        found.append("now refused")
    elif old.error is not None and new.error is None:
        found.append("no longer refused")
    elif old.error != new.error:
        found.append("reason changed")
    return list(dict.fromkeys(found))


@attrs.frozen
class Difference:
    """One answer that differs: where (``index``: the line, or the step), the session
    (its id and profile), how, and the two outcomes."""

    index: int
    session: Any = attrs.field(eq=False)  # the request as given (wire form)
    kinds: tuple[str, ...]
    old: Outcome
    new: Outcome
    session_id: str = ""
    profile_id: str | None = None
    scope: str = ""  # a generated lifecycle's name ("lifecycle 3"), "" for recorded traffic

    @property
    def discount_change(self) -> Decimal:
        return self.new.discount - self.old.discount


@attrs.define
class SessionDiff:
    """A session whose answers differ, once: its first differing answer (both sides),
    every kind seen over its answers, where they were, and the discount change of its
    last answer (what the customer ends up with)."""

    session_id: str
    profile_id: str | None
    scope: str
    first: Difference
    kinds: list[str]
    where: list[int]
    final_change: Decimal

    @property
    def name(self) -> str:
        profile = f" (profile {self.profile_id})" if self.profile_id else " (no profile)"
        if self.session_id.startswith("profile "):
            profile = ""
        elif self.session_id.startswith("event ") and self.profile_id:
            profile = f" (profile {self.profile_id})"
        scope = f"{self.scope}, " if self.scope else ""
        return f"{scope}{_session_name(self.session_id)}{profile}"

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "profileId": self.profile_id,
            **({"lifecycle": self.scope} if self.scope else {}),
            "kinds": self.kinds,
            "lines" if not self.scope else "steps": self.where,
            "old": self.first.old.to_json(),
            "new": self.first.new.to_json(),
            "discountChange": str(self.final_change),
        }


def _session_name(session_id: str) -> str:
    if session_id.startswith(("profile ", "event ")):
        return session_id
    return f"session {session_id}"


@attrs.define
class DiffReport:
    """The answers compared, the sessions that differ, what changed by source and
    whether the traffic exercised it; :meth:`render`, :meth:`to_json`, :attr:`exit_code`."""

    compared: int = 0
    differences: list[Difference] = attrs.Factory(list)
    examples: dict[str, str] = attrs.Factory(dict)
    """For generated traffic: per kind of difference, the shrunk lifecycle showing it,
    as JSONL text (one step a line) that ``eval`` and ``diff --sessions`` replay; a
    lifecycle of one session is that session alone."""
    refused: int = 0
    changes: list[Change] = attrs.Factory(list)
    missing: list[list[str]] = attrs.Factory(list)
    """Per change (same order): what the traffic never showed of it (empty: exercised)."""
    sessions: dict[tuple[str, str], SessionDiff] = attrs.Factory(dict)
    seen_sessions: set[tuple[str, str]] = attrs.Factory(set)
    lifecycles: int = 0

    @property
    def ok(self) -> bool:
        """No answer differs (whether the traffic exercised the changes or not)."""
        return not self.differences

    @property
    def unexercised(self) -> list[tuple[Change, list[str]]]:
        return [(c, m) for c, m in zip(self.changes, self.missing, strict=True) if m]

    @property
    def verdict(self) -> str:
        if self.differences:
            return "differs"
        return "not exercised" if self.unexercised else "same"

    @property
    def exit_code(self) -> int:
        return {"differs": EXIT_DIFFERS, "not exercised": EXIT_NOT_EXERCISED}.get(
            self.verdict, EXIT_SAME
        )

    @property
    def groups(self) -> dict[str, list[Difference]]:
        """Per kind, the first differing answer of each session showing it (a session
        that differs in several ways is in several groups; :meth:`render` shows it once)."""
        found: dict[str, list[Difference]] = {kind: [] for kind in KINDS}
        for session in self.sessions.values():
            for kind in session.kinds:
                found[kind].append(session.first)
        return {kind: found[kind] for kind in KINDS if found[kind]}

    def _kind_change(self, kind: str) -> Decimal:
        return sum((s.final_change for s in self.sessions.values() if kind in s.kinds), Decimal(0))

    @property
    def total_discount_change(self) -> Decimal:
        return sum((s.final_change for s in self.sessions.values()), Decimal(0))

    def add(
        self,
        index: int,
        session: Any,
        old: Outcome,
        new: Outcome,
        *,
        session_id: str | None = None,
        profile_id: str | None = None,
        scope: str = "",
    ) -> None:
        """One answer of each version to the same request."""
        self.compared += 1
        if old.error is not None and new.error is not None:
            self.refused += 1
        sid = session_id if session_id is not None else str(index)
        key = (scope, sid)
        self.seen_sessions.add(key)
        kinds = kinds_of(old, new)
        known = self.sessions.get(key)
        if known is not None:
            known.final_change = new.discount - old.discount
        if not kinds:
            return
        difference = Difference(index, session, tuple(kinds), old, new, sid, profile_id, scope)
        self.differences.append(difference)
        if known is None:
            self.sessions[key] = SessionDiff(
                sid, profile_id, scope, difference, list(kinds), [index], difference.discount_change
            )
        else:
            known.kinds = [k for k in KINDS if k in known.kinds or k in kinds]
            known.where.append(index)

    def judge(self, old: Sandbox, new: Sandbox, traffic: Mapping[str, Traffic]) -> DiffReport:
        """Work out what changed by source and whether ``traffic`` exercised it."""
        self.changes = changes(old, new)
        sandboxes = {"old": old, "new": new}
        self.missing = [unexercised(c, sandboxes, traffic) for c in self.changes]
        return self

    # -- output ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exitCode": self.exit_code,
            "compared": self.compared,
            "sessionsCompared": len(self.seen_sessions),
            **({"lifecycles": self.lifecycles} if self.lifecycles else {}),
            "refused": self.refused,
            "differing": len(self.sessions),
            "totalDiscountChange": str(self.total_discount_change),
            "kinds": {
                kind: {"sessions": len(members), "discountChange": str(self._kind_change(kind))}
                for kind, members in self.groups.items()
            },
            "sessions": [s.to_json() for s in self.sessions.values()],
            "changes": [
                {
                    "kind": c.kind,
                    "campaign": c.campaign,
                    "subject": c.subject,
                    "change": c.what,
                    "versions": list(c.versions),
                    "exercised": not m,
                    "missing": m,
                }
                for c, m in zip(self.changes, self.missing, strict=True)
            ],
            "examples": {kind: text.splitlines() for kind, text in self.examples.items()},
        }

    def render(self) -> str:
        traffic = (
            f"{self.lifecycles} generated lifecycle(s), " if self.lifecycles else ""
        ) + f"{self.compared} answer(s) over {len(self.seen_sessions)} session(s) compared"
        lines = [
            f"diff: {traffic}, {len(self.sessions)} session(s) differ"
            + (f", {self.refused} answer(s) refused by both" if self.refused else "")
        ]
        if self.sessions:
            lines.append(f"total discount change: {self.total_discount_change:+}")
            for kind, members in self.groups.items():
                change = self._kind_change(kind)
                lines.append(f"  {kind}: {len(members)} session(s), discount change {change:+}")
            for session in list(self.sessions.values())[:_SHOWN_SESSIONS]:
                lines.append("")
                lines += _side_by_side(session)
            if len(self.sessions) > _SHOWN_SESSIONS:
                lines.append(f"... and {len(self.sessions) - _SHOWN_SESSIONS} more session(s)")
        else:
            lines.append("no difference")
        shown_examples: set[str] = set()
        for text in self.examples.values():
            if text in shown_examples:
                continue
            shown_examples.add(text)
            kinds = ", ".join(k for k, t in self.examples.items() if t == text)
            steps = text.splitlines()
            lines.append("")
            lines.append(
                f"smallest lifecycle showing {kinds} ({len(steps)} step(s); "
                "its lines replay with `diff --sessions FILE`):"
            )
            lines += [f"  {step}" for step in steps]
        lines.append("")
        lines += self._render_changes()
        lines.append("")
        lines.append(f"verdict: {self._verdict_text()} (exit {self.exit_code})")
        return "\n".join(lines)

    def _render_changes(self) -> list[str]:
        if not self.changes:
            return ["changed by source: nothing (the two versions' rules are the same)"]
        lines = [f"changed by source: {len(self.changes)} change(s)"]
        for change, missing in zip(self.changes, self.missing, strict=True):
            lines.append(f"  {change.describe()}")
            if not missing:
                lines.append("    exercised by the compared traffic")
            else:
                lines.append("    NOT EXERCISED by the compared traffic:")
                lines += [f"      {m}" for m in missing]
        return lines

    def _verdict_text(self) -> str:
        if self.verdict == "differs":
            return "the two versions answer differently"
        if self.verdict == "not exercised":
            n = len(self.unexercised)
            return (
                f"no difference seen, but {n} change(s) were not exercised by the compared "
                "traffic: no difference is not an all-clear"
            )
        if not self.changes:
            return "the same rules, the same answers"
        return "the same answers, and every change was exercised"


def _side_by_side(session: SessionDiff) -> list[str]:
    d = session.first
    where = "line" if not d.scope else "step"
    at = ", ".join(map(str, session.where[:5])) + (" ..." if len(session.where) > 5 else "")
    head = f"{session.name}: {', '.join(session.kinds)} ({where}s {at})"
    if len(session.where) == 1:
        head = f"{session.name}: {', '.join(session.kinds)} ({where} {at})"
    rows: list[tuple[str, str, str]] = []
    old, new = d.old, d.new
    if old.error is not None or new.error is not None:
        rows.append(("answer", old.error or "answered", new.error or "answered"))
    for code in sorted(set(old.codes) | set(new.codes)):
        if old.codes.get(code) != new.codes.get(code):
            rows.append((code, old.codes.get(code, "-"), new.codes.get(code, "-")))
    rows.append(("discount", str(old.discount), str(new.discount)))
    before, after = Counter(old.effects), Counter(new.effects)
    gone = sorted((before - after).elements())
    added = sorted((after - before).elements())
    for i in range(max(len(gone), len(added))):
        left = _effect(gone[i]) if i < len(gone) else "-"
        right = _effect(added[i]) if i < len(added) else "-"
        rows.append(("effect", left, right))
    label = max(len(r[0]) for r in rows)
    width = min(max(len("old"), *(len(r[1]) for r in rows)), 44)
    lines = [head, f"    {'':<{label}}  {'old':<{width}}  new"]
    lines += [f"    {a:<{label}}  {b:<{width}}  {c}" for a, b, c in rows]
    return lines


def _effect(effect: tuple[str, str, str]) -> str:
    kind, campaign, name = effect
    return f"{kind} {campaign}: {name}" if name else f"{kind} {campaign}"


# ---------------------------------------------------------------------------
# One request against one version


def _names(sb: Sandbox) -> dict[int, str]:
    return {c.id: c.name for c in sb.campaigns}


@attrs.frozen
class LineOutcome:
    """What one request (a JSONL line, or a generated step) gave against one version.

    ``outcome`` is None for a request that is not an answer to compare (a clock move, a
    profile update without the rule engine); ``bad`` the problem with a line that is
    not a request at all (bad JSON, unknown keys). ``seen`` is what the answer showed
    of the rules (:class:`sandbox._changes.Seen`), for whether the changes were
    exercised.
    """

    number: int
    session: Any = None
    outcome: Outcome | None = None
    bad: str | None = None
    session_id: str = ""
    profile_id: str | None = None
    seen: Seen | None = None
    column: int | None = None  # where in the line a bad line's JSON or text went wrong

    @property
    def clock(self) -> bool:
        """Not an answer (a clock move, a profile update): nothing to compare."""
        return self.outcome is None and self.bad is None


def _request_names(data: Any, number: int) -> tuple[str, str | None]:
    """The session id (and profile) a request line is about, before it is answered."""
    if isinstance(data, dict):
        for key in ("reopen", "returnItems"):
            if isinstance(data.get(key), str):
                return data[key], None
        if isinstance(data.get("updateProfile"), str):
            return f"profile {data['updateProfile']}", data["updateProfile"]
        event = data.get("trackEvent")
        if isinstance(event, dict):
            profile = event.get("profileId")
            profile = profile if isinstance(profile, str) else None
            return f"event {event.get('type')!s} (line {number})", profile
        session = data.get("customerSession", data)
        sid = data.get("customerSessionId", f"line-{number}")
        profile = session.get("profileId") if isinstance(session, dict) else None
        return str(sid), profile if isinstance(profile, str) else None
    return f"line-{number}", None


@attrs.frozen
class Probing:
    """The changed conditions to ask on each answer of one version (``old`` or
    ``new``), for whether the traffic ever told them apart (:class:`sandbox._changes.Probe`)."""

    version: str
    probes: tuple[Probe, ...]


def answer(
    sb: Sandbox, data: Any, number: int, *, dry: bool = False, probing: Probing | None = None
) -> LineOutcome:
    """``data`` (one parsed request line) sent to ``sb``, as ``eval`` sends it."""
    try:
        step = read_step(data, number)
    except SandboxError as exc:
        return _bad(number, exc)
    session_id, profile_id = _request_names(data, number)
    wire = data.get("customerSession", data) if isinstance(data, dict) else data
    before = _profile_before(sb, data, session_id, profile_id) if probing else None
    now = sb.now
    try:
        result = step(sb, dry)
    except SandboxError as exc:
        return LineOutcome(number, wire, _refusal(exc), None, session_id, profile_id)
    if not isinstance(result, IntegrationState):
        return LineOutcome(number, wire, session_id=session_id, profile_id=profile_id)
    if result.session_id.startswith("profile:"):
        session_id = f"profile {profile_id}"
    elif result.session_id.startswith("event:"):
        profile_id = result.session.profile_id or profile_id
    else:
        session_id = result.session_id
        profile_id = result.session.profile_id or profile_id
    campaigns = {c.id: c for c in sb.campaigns}
    found = outcome(result, {i: c.name for i, c in campaigns.items()})
    seen = observe(result, campaigns, now)
    if probing is not None and probing.probes:
        evaluated = result.session.profile_id
        profile = before if before is not None and before.integration_id == evaluated else None
        if profile is None and evaluated:
            with contextlib.suppress(SandboxError):
                profile = sb.get_profile(evaluated)
        asked = probe_answer(result, sb, probing.version, list(probing.probes), profile, now)
        seen = attrs.evolve(seen, probed=asked)
    return LineOutcome(number, wire, found, None, session_id, profile_id, seen)


def _profile_before(sb: Sandbox, data: Any, session_id: str, profile_id: str | None) -> Any:
    """The profile an update is evaluated with, as it is before the update."""
    if profile_id is None and isinstance(data, dict) and "customerSession" in data:
        with contextlib.suppress(SandboxError):
            profile_id = sb.get_session(session_id).submitted.profile_id
    if not profile_id:
        return None
    try:
        return sb.get_profile(profile_id)
    except SandboxError:
        return None


def _bad(number: int, exc: SandboxError) -> LineOutcome:
    """A line that is not a request, and why, on one line."""
    if isinstance(exc, TextError):
        return LineOutcome(number, bad=exc.title, column=exc.column)
    return LineOutcome(
        number, bad="; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    )


def line_outcome(
    sb: Sandbox, number: int, raw: bytes, dry: bool = True, probing: Probing | None = None
) -> LineOutcome:
    """One line of a sessions file sent to ``sb`` (picklable: ``--jobs`` workers run it
    with ``dry=True``, each line alone, without probes)."""
    try:
        data = parse_line(decode_line(raw))
    except SandboxError as exc:
        return _bad(number, exc)
    return answer(sb, data, number, dry=dry, probing=probing)


def probings(old: Sandbox, new: Sandbox) -> tuple[Probing, Probing]:
    """The changed conditions to ask on the answers of each version."""
    found = tuple(probes(old, new, changes(old, new)))
    return Probing("old", found), Probing("new", found)


class _Comparison:
    """A report and each version's traffic, fed pairs of line outcomes."""

    def __init__(self, *, probing: bool = False) -> None:
        self.report = DiffReport()
        self.traffic = {"old": Traffic(probing=probing), "new": Traffic(probing=probing)}

    def add(self, before: LineOutcome, after: LineOutcome, scope: str = "") -> None:
        if before.outcome is None or after.outcome is None:
            return
        for version, line in (("old", before), ("new", after)):
            if line.seen is not None:
                self.traffic[version].add(line.seen)
        self.report.add(
            before.number,
            before.session,
            before.outcome,
            after.outcome,
            session_id=before.session_id or after.session_id,
            profile_id=before.profile_id or after.profile_id,
            scope=scope,
        )


def compare_lines(
    old: Iterable[LineOutcome],
    new: Iterable[LineOutcome],
    *,
    rules: tuple[Sandbox, Sandbox] | None = None,
    probed: bool = False,
) -> tuple[DiffReport, list[LineOutcome]]:
    """The report of two streams of line outcomes (the same lines, in order), and the
    lines that were bad input. ``rules`` (a fresh sandbox of each version) adds what
    changed by source and whether these lines exercised it; ``probed`` says the line
    outcomes were made with :func:`probings` (so changed conditions that were never
    told apart are reported)."""
    comparison = _Comparison(probing=probed)
    bad: list[LineOutcome] = []
    for before, after in zip(old, new, strict=True):
        if before.bad is not None:
            bad.append(before)
            continue
        comparison.add(before, after)
    if rules is not None:
        comparison.report.judge(*rules, comparison.traffic)
    return comparison.report, bad


def compare(old: Sandbox, new: Sandbox, sessions: Iterable[Any]) -> DiffReport:
    """Evaluate each session dry against both sandboxes; report what differs.

    ``sessions`` are V1 or V2 session models or wire dicts (or IntegrationRequests);
    session ``i`` has the id ``diff-i``. The report also lists what changed by source
    between the two sandboxes and whether these sessions exercised it.
    """
    comparison = _Comparison(probing=True)
    asking = probings(old, new)
    for index, session in enumerate(sessions):
        pair = []
        for sb, probing in zip((old, new), asking, strict=True):
            campaigns = {c.id: c for c in sb.campaigns}
            try:
                state = sb.update(f"diff-{index}", session, dry=True)
            except SandboxError as exc:
                pair.append(LineOutcome(index, session, _refusal(exc), session_id=f"diff-{index}"))
                continue
            found = outcome(state, {i: c.name for i, c in campaigns.items()})
            seen = observe(state, campaigns)
            pid = state.session.profile_id
            profile = None
            if pid:
                with contextlib.suppress(SandboxError):
                    profile = sb.get_profile(pid)
            asked = probe_answer(state, sb, probing.version, list(probing.probes), profile, sb.now)
            seen = attrs.evolve(seen, probed=asked)
            pair.append(LineOutcome(index, session, found, None, f"diff-{index}", pid, seen))
        comparison.add(pair[0], pair[1])
    return comparison.report.judge(old, new, comparison.traffic)


# ---------------------------------------------------------------------------
# Generated lifecycles


def search(
    old: Callable[[], Sandbox],
    new: Callable[[], Sandbox],
    *,
    examples: int = 100,
    seed: int | None = None,
    version: int = 2,
    steps: int = 20,
) -> DiffReport:
    """Generated lifecycles compared; one shrunk lifecycle per kind of difference.

    ``old`` and ``new`` build the two sandboxes. ``examples`` lifecycles of up to
    ``steps`` steps are drawn by :class:`strategies.SessionLifecycle` (half driven by
    each version's rules, codes and created codes), with sessions in ``version`` 1 or
    2 of the Integration API, a third of them moved onto what the changes point at
    (the numbers a changed condition reads and halfway between the old and the new,
    the costs the rules discount; the clock moved to changed dates). Every step is
    sent to a fresh sandbox of each version and the answers compared. The first
    lifecycle showing a kind of difference not shown yet is shrunk by Hypothesis (for
    at most :data:`SHRINK_LIFECYCLES` more lifecycles), then the search goes on with
    the lifecycles left; the report's ``examples`` hold, per kind, the shrunk
    lifecycle as JSON lines, without the steps it does not need.
    """
    if version not in (1, 2):
        raise ValueError(f"search(version=...) must be 1 or 2, got {version!r}")
    if type(examples) is not int or examples < 1:
        raise ValueError(f"search(examples=...) must be a positive integer, got {examples!r}")
    run = _Search(old, new, version, steps)
    half = max(1, examples // 2)
    for driver, count in ((old, half), (new, max(1, examples - half))):
        run.explore(driver, count, seed)
    report = run.comparison.report
    report.lifecycles = run.generated
    for lines, kinds in run.found:
        shrunk = _without_needless(old, new, lines, kinds)
        if len(shrunk) == 1:
            alone = parse_line(shrunk[0])
            if isinstance(alone, dict) and set(alone) == {"customerSessionId", "customerSession"}:
                shrunk = [dumps(alone["customerSession"])]  # a session line of its own
        for kind in kinds:
            report.examples.setdefault(kind, "\n".join(shrunk))
    return report.judge(old(), new(), run.comparison.traffic)


SHRINK_LIFECYCLES = 60
"""How many lifecycles Hypothesis may try while shrinking one; past it, the smallest
found so far (a count, not a time: one seed gives one report on any machine)."""
_MAX_RUNS = 12


class _Search:
    """One generated comparison: the traffic compared, and the lifecycles that showed
    each kind of difference first, shrunk.

    Each Hypothesis run generates lifecycles until one shows a kind of difference no
    earlier lifecycle showed; that one is shrunk (the run's later lifecycles are
    shrink attempts, not traffic: only the lifecycles up to it count) and the next run
    goes on, on the next seed, with the lifecycles left.
    """

    def __init__(
        self, old: Callable[[], Sandbox], new: Callable[[], Sandbox], version: int, steps: int
    ) -> None:
        self.old, self.new, self.version, self.steps = old, new, version, steps
        self.comparison = _Comparison(probing=True)
        old_sb, new_sb = old(), new()
        found = changes(old_sb, new_sb)
        self.probings = probings(old_sb, new_sb)
        self.watched = _Watched(found)
        self.focus = _focus(old_sb, new_sb, found)
        self.scopes = [0]  # lifecycles made, shrink attempts included
        self.generated = 0  # lifecycles that count as traffic
        self.pending: dict[int, list[tuple[LineOutcome, LineOutcome]]] = {}
        self.machines: dict[int, Any] = {}
        self.claimed: set[str] = set()
        self.found: list[tuple[list[str], list[str]]] = []
        self._reset()

    def _reset(self) -> None:
        self.hunting: str | None = None
        self.first_scope: int | None = None
        self.shown: list[tuple[list[str], list[str]]] = []

    def record(self, scope: int, before: LineOutcome, after: LineOutcome) -> None:
        self.pending.setdefault(scope, []).append((before, after))
        if before.outcome is None or after.outcome is None:
            return
        kinds = kinds_of(before.outcome, after.outcome)
        if not kinds:
            return
        if self.hunting is None:
            fresh = [k for k in kinds if k not in self.claimed]
            if not fresh:
                return
            self.hunting, self.first_scope = fresh[0], scope
        elif self.hunting not in kinds:
            return
        steps = self.machines[scope].steps[: before.number]
        lines = tuple(dumps(step) for step in steps)
        self.shown.append((list(lines), kinds))
        raise _ShownError

    def shrunk_enough(self) -> bool:
        return self.first_scope is not None and (
            self.scopes[0] - self.first_scope > SHRINK_LIFECYCLES
        )

    def explore(self, driver: Callable[[], Sandbox], examples: int, seed: int | None) -> None:
        machine = _machine(driver, self)
        done = 0
        for attempt in range(_MAX_RUNS):
            if done >= examples:
                return
            self._reset()
            first = self.scopes[0] + 1
            run_seed = seed if attempt == 0 else (seed or 0) * 1000 + attempt
            with contextlib.suppress(_ShownError, _EnoughShrinking):
                _run_machine(machine, examples - done, self.steps, run_seed)
            last = self.scopes[0] if self.first_scope is None else self.first_scope
            for scope in range(first, last + 1):
                for before, after in self.pending.get(scope, ()):
                    self.comparison.add(before, after, scope=f"lifecycle {self.generated + 1}")
                self.generated += 1
                done += 1
            self.pending.clear()
            self.machines.clear()
            if self.hunting is None:
                return  # the run ended without a new kind: every lifecycle was tried
            self.claimed.update(self.shown[-1][1])
            self.found.append(self.shown[-1])  # the last one shown is the shrunk one


class _Safe:
    """Calls on the driving sandbox that a rule's exception does not end: the step is
    kept (and shown to both versions, where it is an answer refused), the lifecycle
    goes on. (An exception in a rule would otherwise end Hypothesis' run as a failure.)"""

    evaluation = None  # what update_profile's callers read of a refused profile update

    @classmethod
    def wrap(cls, sb: Sandbox) -> Sandbox:
        for name in ("update", "update_profile", "reopen", "return_items"):
            method = getattr(sb, name)

            def safe(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
                try:
                    return _method(*args, **kwargs)
                except RuleError:
                    return cls()

            setattr(sb, name, safe)
        return sb


_CENT = Decimal("0.01")
_AROUND = (timedelta(hours=-1), timedelta(seconds=1), timedelta(hours=1), timedelta(days=1))
_WAITS = (
    timedelta(0),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=8),
    timedelta(days=32),
)
_MAX_FOCUS_NUMBERS = 24


@attrs.frozen
class _Focus:
    """What the changes point at, for sessions drawn around them: the numbers the
    changed conditions read (each, a cent either side, and halfway between them: a
    threshold moved from 75 to 60 is crossed by 67.50), the additional costs the
    rules discount, the session attributes the changed conditions compare, and the
    dates a change moved (a coupon's expiry, a campaign's end)."""

    numbers: tuple[Decimal, ...] = ()
    costs: tuple[str, ...] = ()
    attributes: tuple[tuple[str, Any], ...] = ()
    dates: tuple[datetime, ...] = ()
    repeat: tuple[str, ...] = ()
    """Campaigns whose codes a change limits differently (its limits, a code's usage
    limit, the usage limit of codes a rule creates in it): customers come back with a
    code they redeemed."""


def _focus(old: Sandbox, new: Sandbox, found: list[Change]) -> _Focus:
    numbers: set[Decimal] = set()
    attributes: dict[tuple[str, str], tuple[str, Any]] = {}
    dates: set[datetime] = set()
    repeat: dict[str, None] = {}
    costs: dict[str, None] = {}
    for sb in (old, new):
        for campaign in sb.campaigns:
            for r in campaign.rules:
                for spec in r.effects:
                    cost = getattr(spec, "cost", None)
                    if isinstance(cost, str):
                        costs[cost] = None
    for change in found:
        for version, sb in (("old", old), ("new", new)):
            found_campaign = next((c for c in sb.campaigns if c.name == change.campaign), None)
            if found_campaign is None:
                continue
            campaign = found_campaign
            title = change.title(version)
            if change.kind in ("limits", "code"):
                repeat[change.campaign] = None
            if change.kind == "rule" and title is not None:
                rule = next((r for r in campaign.rules if r.title == title), None)
                for spec in rule.effects if rule is not None else ():
                    if isinstance(spec, CreateCoupon):
                        repeat[spec.campaign or change.campaign] = None
                for condition in rule.conditions if rule is not None else ():
                    _numbers_in(fingerprint(condition.fn), numbers)
                    for hint in condition.hints:
                        if hint.kind in ("total", "number"):
                            _numbers_in(("num", hint.value), numbers)
                        elif hint.kind == "attribute" and hint.key is not None:
                            attributes[(hint.key, repr(hint.value))] = (hint.key, hint.value)
            elif change.kind == "code":
                code = change.subject.partition(" ")[2].strip("'")
                defined = campaign.coupons.get(code) or campaign.referrals.get(code)
                for field in ("start_date", "expiry_date"):
                    moment = getattr(defined, field, None)
                    if isinstance(moment, datetime):
                        dates.add(moment)
            elif change.kind == "window":
                dates.update(d for d in (campaign.start, campaign.end) if d is not None)
    ordered = sorted(n for n in numbers if Decimal(0) < n < Decimal(100_000))
    around = {(n + delta).quantize(_CENT) for n in ordered for delta in (-_CENT, Decimal(0), _CENT)}
    around |= {((a + b) / 2).quantize(_CENT) for a, b in itertools.pairwise(ordered)}
    chosen = sorted(n for n in around if n > 0)[:_MAX_FOCUS_NUMBERS]
    return _Focus(
        tuple(chosen),
        tuple(costs),
        tuple(attributes.values()),
        tuple(sorted(dates)),
        tuple(repeat),
    )


def _numbers_in(found: Any, into: set[Decimal]) -> None:
    """The numbers among a fingerprint's leaves."""
    if isinstance(found, tuple):
        if len(found) == 2 and found[0] == "num":
            value = found[1]
            if isinstance(value, int | Decimal) or (
                isinstance(value, float) and value == value and abs(value) < 1e9
            ):
                with contextlib.suppress(ArithmeticError, ValueError):
                    into.add(Decimal(str(value)))
            return
        for part in found:
            _numbers_in(part, into)


def _focused(plain: Any, focus: _Focus, version: int) -> Any:
    """Sessions drawn as ``plain`` draws them, then moved onto what the changes point
    at: the cart's item total on one of the focus numbers, the rules' additional
    costs, the changed conditions' attribute values."""
    from hypothesis import strategies as st

    from sandbox.models import AdditionalCost, CartItem, NewCustomerSession, NewCustomerSessionV2

    @st.composite
    def draw_focused(draw: st.DrawFn) -> Any:
        session = draw(plain)
        changes: dict[str, Any] = {}
        on_number: bool = draw(st.booleans(), label="item total on a focus number")
        if focus.numbers and on_number:
            total = draw(st.sampled_from(focus.numbers), label="item total")
            items = list(session.cart_items or ()) or [CartItem(sku="sku-1", quantity=1)]
            items = items[: max(1, min(len(items), int(total / _CENT)))]
            share = (total / len(items)).quantize(_CENT, ROUND_DOWN)
            priced = []
            for n, item in enumerate(items):
                price = share if n < len(items) - 1 else total - share * (len(items) - 1)
                priced.append(attrs.evolve(item, quantity=1, price=price))
            changes["cart_items"] = tuple(priced)
            if isinstance(session, NewCustomerSession) and session.total is not None:
                changes["total"] = total
        if focus.costs and isinstance(session, NewCustomerSessionV2):
            names = draw(
                st.lists(st.sampled_from(focus.costs), max_size=2, unique=True), label="costs"
            )
            if names:
                prices = st.integers(1, 20_00).map(lambda cents: Decimal(cents) * _CENT)
                changes["additional_costs"] = {
                    name: AdditionalCost(price=draw(prices, label=name)) for name in names
                }
        if focus.attributes:
            picked = draw(
                st.lists(st.sampled_from(focus.attributes), max_size=2), label="attributes"
            )
            if picked:
                changes["attributes"] = {**(session.attributes or {}), **dict(picked)}
        return attrs.evolve(session, **changes) if changes else session

    return draw_focused()


class _Watched:
    """The facts about the changed rules, codes and limits seen so far, for steering
    the search (Hypothesis ``target()``) towards what no lifecycle has shown yet."""

    def __init__(self, found: list[Change]) -> None:
        self.campaigns = {c.campaign for c in found}
        self.rules = {(c.campaign, title) for c in found for _, title in c.titles}
        self.facts: set[Any] = set()

    def note(self, *seen: Seen | None) -> int:
        new = 0
        for s in seen:
            if s is None:
                continue
            facts: list[Any] = [("rule", c, t, f) for c, t, f in s.rules if (c, t) in self.rules]
            facts += [("code", *code) for code in s.codes if code[0] in self.campaigns]
            facts += [("limit", *lim) for lim in s.limited if lim[0] in self.campaigns]
            facts += [("running", *r) for r in s.running if r[0] in self.campaigns]
            for fact in facts:
                if fact not in self.facts:
                    self.facts.add(fact)
                    new += 1
        return new


_KEPT = (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED)
_CLOSED_STATE = SessionState.CLOSED


class _ShownError(Exception):
    """Raised in a lifecycle that shows the kind of difference being shrunk."""


class _EnoughShrinking(KeyboardInterrupt):
    """Ends a Hypothesis run that has shrunk for :data:`SHRINK_LIFECYCLES` lifecycles:
    Hypothesis' shrinker has no limit of its own but time, and lets an interrupt (only)
    through at once, leaving its state as it was. Caught by :meth:`_Search.explore`."""


def _machine(driver: Callable[[], Sandbox], search: _Search) -> type:
    """A :class:`strategies.SessionLifecycle` driving ``driver()``'s sandbox, whose every
    step is replayed on fresh sandboxes of both versions and handed to ``search``.

    The lifecycle's own checks (invariants, properties) are fuzz's business, not
    diff's: they are left out here, so a rule set with a bug is compared all the same.
    """
    from hypothesis import strategies as st
    from hypothesis import target
    from hypothesis.stateful import invariant, precondition, rule

    from sandbox.fuzzing import combination_sessions
    from sandbox.sessions import as_v2
    from strategies._lifecycle import SessionLifecycle, inventory_sessions

    focus, version, watched = search.focus, search.version, search.watched

    class DiffLifecycle(SessionLifecycle):
        def make_sandbox(self) -> Sandbox:
            search.scopes[0] += 1
            if search.shrunk_enough():
                raise _EnoughShrinking  # past Hypothesis, which would go on trying
            self._scope = search.scopes[0]
            search.machines[self._scope] = self
            self._pair = (search.old(), search.new())
            self._compared = 0
            self._novel = 0
            return _Safe.wrap(driver())

        def sessions(self, sb: Sandbox) -> Any:
            self._again = inventory_sessions(sb, version=version)
            combined = combination_sessions(sb)
            if version == 2:
                combined = combined.map(as_v2)
            plain = inventory_sessions(sb, version=version)
            if not focus.numbers and not focus.costs and not focus.attributes:
                return st.one_of(plain, combined)
            return st.one_of(plain, combined, _focused(plain, focus, version))

        @precondition(lambda self: bool(focus.dates))
        @rule(data=st.data())
        def advance_to_a_changed_date(self, data: st.DataObject) -> None:
            """The clock to just before or after a date one version changed (a coupon's
            expiry, a campaign's end), when it lies ahead."""
            ahead = [d for d in focus.dates if d > self.sb.now]
            if not ahead:
                return
            moment = data.draw(st.sampled_from(ahead), label="changed date")
            moment += data.draw(st.sampled_from(_AROUND), label="around it")
            step = moment - self.sb.now
            if step.total_seconds() <= 0:
                return
            amount = {"days": step.days, "seconds": step.seconds}
            self.steps.append({"advance": amount})
            self.sb.advance(**amount)

        def _redeemed(self) -> list[tuple[str, str]]:
            """(profile, code) of the closed sessions that redeemed a code of a campaign
            in focus.repeat."""
            ids = {c.id for c in self.sb.campaigns if c.name in focus.repeat}
            found = {
                (stored.submitted.profile_id, str(effect.value))
                for stored in self.sb.sessions.values()
                if stored.state in _KEPT and stored.submitted.profile_id
                for effect in stored.effects
                if effect.effect_type is EffectType.ACCEPT_COUPON and effect.campaign_id in ids
            }
            return sorted(found)

        @precondition(lambda self: bool(focus.repeat) and bool(self._redeemed()))
        @rule(data=st.data())
        def redeem_again(self, data: st.DataObject) -> None:
            """A customer comes back, after an hour, a day, a week or a month, with a code
            they redeemed, of a campaign whose limits a change moved."""
            profile, code = data.draw(st.sampled_from(self._redeemed()), label="again")
            wait = data.draw(st.sampled_from(_WAITS), label="after")
            if wait:
                amount = {"days": wait.days, "seconds": wait.seconds}
                self.steps.append({"advance": amount})
                self.sb.advance(**amount)
            again = getattr(self, "_again", None)
            if again is None:
                again = inventory_sessions(self.sb, version=version)
            session = data.draw(again, label="session")
            codes: dict[str, Any] = (
                {"coupon_codes": (code,)}
                if isinstance(session, NewCustomerSessionV2)
                else {"coupon": code}
            )
            session = attrs.evolve(session, profile_id=profile, state=_CLOSED_STATE, **codes)
            self._update(f"again-{len(self.steps)}", session)

        # fuzz's checks, left out (see above): plain methods drop the markers
        def _check(self, state: Any) -> None:
            return None

        def _submit_checked(self, session_id: str, session: Any) -> None:
            self._update(session_id, session)

        def sandbox_invariants(self) -> None:
            return None

        def illegal_move_changes_nothing(self) -> None:
            return None

        @invariant()
        def both_versions_answer(self) -> None:
            self._replay()

        def _replay(self) -> None:
            steps = getattr(self, "steps", [])
            for number in range(self._compared, len(steps)):
                data = parse_line(dumps(steps[number]))
                before, after = (
                    answer(sb, data, number + 1, probing=probing)
                    for sb, probing in zip(self._pair, search.probings, strict=True)
                )
                self._compared = number + 1
                self._novel += watched.note(before.seen, after.seen)
                search.record(self._scope, before, after)

        def teardown(self) -> None:
            if not hasattr(self, "_pair"):
                return
            try:
                self._replay()
            finally:
                target(float(self._novel), label="facts about the changed rules not seen before")

    return DiffLifecycle


def _run_machine(machine: type, examples: int, steps: int, seed: int | None) -> None:
    import hypothesis.core as hypothesis_core
    from hypothesis import HealthCheck, Phase, Verbosity, settings
    from hypothesis.stateful import run_state_machine_as_test

    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        database=None,
        deadline=None,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.target, Phase.shrink],
        report_multiple_bugs=False,
        derandomize=seed is None,
    )
    # run_state_machine_as_test takes no seed of its own: a seeded run forces
    # Hypothesis' seed for the duration (its mechanism for --hypothesis-seed).
    forced = hypothesis_core.global_force_seed
    try:
        if seed is not None:
            hypothesis_core.global_force_seed = seed  # type: ignore[assignment]
        run_state_machine_as_test(machine, settings=config)  # type: ignore[no-untyped-call, unused-ignore]
    finally:
        hypothesis_core.global_force_seed = forced


def _shows(
    old: Callable[[], Sandbox], new: Callable[[], Sandbox], lines: list[str], kinds: list[str]
) -> bool:
    """Whether the last step of the lifecycle ``lines``, replayed on fresh sandboxes,
    shows every one of ``kinds``."""
    pair = (old(), new())
    before = after = None
    for number, line in enumerate(lines, start=1):
        data = parse_line(line)
        before, after = (answer(sb, data, number) for sb in pair)
    if before is None or after is None or before.outcome is None or after.outcome is None:
        return False
    return set(kinds) <= set(kinds_of(before.outcome, after.outcome))


_OPTIONAL_KEYS = (
    "profileId",
    "referralCode",
    "couponCodes",
    "identifiers",
    "attributes",
    "additionalCosts",
    "referral",
    "coupon",
)


def _without_needless(
    old: Callable[[], Sandbox], new: Callable[[], Sandbox], lines: list[str], kinds: list[str]
) -> list[str]:
    """``lines`` without each step, then each optional field of a session, that the
    difference shows without (Hypothesis keeps the lifecycle's first orders, and may
    stop shrinking at :data:`SHRINK_LIFECYCLES`)."""
    kept = list(lines)
    for index in range(len(kept) - 2, -1, -1):
        fewer = kept[:index] + kept[index + 1 :]
        if _shows(old, new, fewer, kinds):
            kept = fewer
    for index, line in enumerate(kept):
        data = parse_line(line)
        session = data.get("customerSession") if isinstance(data, dict) else None
        if not isinstance(session, dict):
            continue
        for key in _OPTIONAL_KEYS:
            if key not in session:
                continue
            lighter = {k: v for k, v in session.items() if k != key}
            trial = [*kept[:index], dumps({**data, "customerSession": lighter}), *kept[index + 1 :]]
            if _shows(old, new, trial, kinds):
                session, kept = lighter, trial
                data = parse_line(kept[index])
    return kept
