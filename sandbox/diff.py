"""Differential testing: what a rule change does to real (or generated) carts.

:func:`compare` evaluates the same sessions, dry, against two sandboxes (the old rules
and the new) and reports the sessions whose outcome differs, grouped by kind of
difference; :func:`search` draws the sessions with Hypothesis from both rule sets'
hints and shrinks one example per kind, so each group comes with the smallest session
that shows it, as replayable JSON. ``python -m sandbox diff OLD.py NEW.py`` prints the
report and exits 1 when something differs (so CI can gate a rule change).

Kinds of difference, per session:

- ``code now rejected`` / ``code now accepted``: a code's accept turned into a reject,
  or back;
- ``reason changed``: a code rejected before and after, for another reason;
- ``discount up`` / ``discount down``: the total discount changed;
- ``effect added`` / ``effect removed``: an effect (type, campaign name, discount or
  effect name) appears in one answer only;
- ``now refused`` / ``no longer refused``: one rule set raises (a RuleError, say) or
  refuses the session where the other answers.

Campaigns are compared by name, so ids may differ between the two rule files.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from sandbox.codec import dumps, to_wire
from sandbox.core import Sandbox
from sandbox.errors import SandboxError
from sandbox.state import IntegrationState
from sandbox.steps import clock_step, decode_line, move_clock, parse_line, read_request
from sandbox.talon import EffectType

__all__ = ["KINDS", "DiffReport", "Difference", "Outcome", "compare", "outcome", "search"]

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


@attrs.frozen
class Outcome:
    """What one answer means for the comparison (or the refusal of the session)."""

    codes: Mapping[str, str] = attrs.field(factory=dict, hash=False)  # code -> accepted|reason
    discount: Decimal = Decimal(0)
    effects: tuple[tuple[str, str, str], ...] = ()  # (type, campaign, name), sorted
    error: str | None = None


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


def kinds_of(old: Outcome, new: Outcome) -> list[str]:
    """The kinds of difference between two outcomes of one session (none: equal)."""
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
    return list(dict.fromkeys(found))


@attrs.frozen
class Difference:
    """One session whose outcome differs: where, how, and the two outcomes."""

    index: int
    session: Any = attrs.field(eq=False)  # the wire dict (or model) as given
    kinds: tuple[str, ...]
    old: Outcome
    new: Outcome

    @property
    def discount_change(self) -> Decimal:
        return self.new.discount - self.old.discount


@attrs.define
class DiffReport:
    """The sessions compared, those that differ, by kind; :meth:`render` and :meth:`to_json`."""

    compared: int = 0
    differences: list[Difference] = attrs.Factory(list)
    examples: dict[str, str] = attrs.Factory(dict)
    """For generated sessions: the shrunk session that shows each kind, as a JSON line
    ``eval`` and ``diff --sessions`` replay."""
    refused: int = 0

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def groups(self) -> dict[str, list[Difference]]:
        found: dict[str, list[Difference]] = {kind: [] for kind in KINDS}
        for difference in self.differences:
            for kind in difference.kinds:
                found[kind].append(difference)
        return {kind: found[kind] for kind in KINDS if found[kind]}

    @property
    def total_discount_change(self) -> Decimal:
        return sum((d.discount_change for d in self.differences), Decimal(0))

    def add(self, index: int, session: Any, old: Outcome, new: Outcome) -> None:
        self.compared += 1
        kinds = kinds_of(old, new)
        if kinds:
            self.differences.append(Difference(index, session, tuple(kinds), old, new))

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "refused": self.refused,
            "differing": len(self.differences),
            "totalDiscountChange": str(self.total_discount_change),
            "groups": {
                kind: {
                    "count": len(members),
                    "sessions": [d.index for d in members],
                    "discountChange": str(sum((d.discount_change for d in members), Decimal(0))),
                    **({"example": self.examples[kind]} if kind in self.examples else {}),
                }
                for kind, members in self.groups.items()
            },
        }

    def render(self) -> str:
        lines = [
            f"diff: {self.compared} session(s) compared, {len(self.differences)} differ"
            + (f", {self.refused} refused by both" if self.refused else "")
        ]
        if not self.differences:
            lines.append("no difference")
            return "\n".join(lines)
        lines.append(f"total discount change: {self.total_discount_change:+}")
        for kind, members in self.groups.items():
            change = sum((d.discount_change for d in members), Decimal(0))
            lines.append(f"  {kind}: {len(members)} session(s), discount change {change:+}")
            for d in members[:3]:
                lines.append(f"    session {d.index}: {_describe(d)}")
            if len(members) > 3:
                lines.append(f"    ... and {len(members) - 3} more")
            if kind in self.examples:
                lines.append(f"    smallest example: {self.examples[kind]}")
        return "\n".join(lines)


def _describe(d: Difference) -> str:
    parts = []
    for code in sorted(set(d.old.codes) | set(d.new.codes)):
        before, after = d.old.codes.get(code, "-"), d.new.codes.get(code, "-")
        if before != after:
            parts.append(f"{code}: {before} -> {after}")
    if d.discount_change:
        parts.append(f"discount {d.old.discount} -> {d.new.discount}")
    return "; ".join(parts) or "effects differ"


def _names(sb: Sandbox) -> dict[int, str]:
    return {c.id: c.name for c in sb.campaigns}


def evaluate_pair(
    old: Sandbox, new: Sandbox, session: Any, session_id: str = "diff"
) -> tuple[Outcome, Outcome]:
    """Both outcomes of one session, dry; a refused session is an outcome too."""
    found = []
    for sb in (old, new):
        try:
            state = sb.update(session_id, session, dry=True)
        except SandboxError as exc:
            found.append(Outcome(error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
        else:
            found.append(outcome(state, _names(sb)))
    return found[0], found[1]


def compare(old: Sandbox, new: Sandbox, sessions: Iterable[Any]) -> DiffReport:
    """Evaluate each session dry against both sandboxes; report what differs.

    ``sessions`` are V1 or V2 session models or wire dicts (or IntegrationRequests).
    """
    report = DiffReport()
    for index, session in enumerate(sessions):
        before, after = evaluate_pair(old, new, session, f"diff-{index}")
        if before.error is not None and after.error is not None:
            report.refused += 1
        report.add(index, session, before, after)
    return report


def search(
    old: Callable[[], Sandbox],
    new: Callable[[], Sandbox],
    *,
    examples: int = 200,
    seed: int | None = None,
    version: int = 1,
) -> DiffReport:
    """Generated sessions (from both rule sets' hints) compared; one shrunk example per kind.

    ``old`` and ``new`` build the two sandboxes. The report's ``examples`` hold, for
    each kind of difference found, the smallest session showing it, in wire form.
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as with_seed
    from hypothesis import strategies as st

    from sandbox.fuzzing import combination_sessions
    from strategies import sessions

    old_sb, new_sb = old(), new()
    options: dict[str, Any] = {"version": version} if version != 1 else {}
    # Both rule sets' hints, and sessions built on their thresholds and codes at once:
    # a changed rule's boundary is where the two answers part.
    strategy = st.one_of(
        sessions(old_sb, **options),
        sessions(new_sb, **options),
        combination_sessions(old_sb),
        combination_sessions(new_sb),
    )
    report = DiffReport()
    quiet: dict[str, Any] = {
        "database": None,
        "deadline": None,
        "verbosity": Verbosity.quiet,
        "suppress_health_check": list(HealthCheck),
    }

    @settings(max_examples=examples, phases=[Phase.generate], **quiet)
    @given(strategy)
    def explore(session: Any) -> None:
        before, after = evaluate_pair(old_sb, new_sb, session, f"diff-{report.compared}")
        report.add(report.compared, to_wire(session), before, after)

    if seed is not None:
        explore = with_seed(seed)(explore)
    explore()
    for kind in report.groups:
        smallest = _smallest(strategy, kind, old_sb, new_sb, max(50, examples), seed, quiet)
        if smallest is not None:
            report.examples[kind] = dumps(to_wire(smallest, exact=True))
    return report


class _ShownError(Exception):
    """Raised by :func:`_smallest`'s test when a session shows the kind sought."""


def _smallest(
    strategy: Any,
    kind: str,
    old_sb: Sandbox,
    new_sb: Sandbox,
    examples: int,
    seed: int | None,
    quiet: dict[str, Any],
) -> Any:
    """The smallest session showing ``kind``: Hypothesis' shrinker, seeded as the search
    was (``find`` takes no seed), so one seed gives one report."""
    from hypothesis import Phase, given, settings
    from hypothesis import seed as with_seed

    shown: list[Any] = []

    @settings(
        max_examples=examples,
        phases=[Phase.generate, Phase.shrink],
        derandomize=seed is None,
        report_multiple_bugs=False,
        **quiet,
    )
    @given(strategy)
    def hunt(session: Any) -> None:
        if kind in kinds_of(*evaluate_pair(old_sb, new_sb, session)):
            shown.append(session)
            raise _ShownError

    if seed is not None:
        hunt = with_seed(seed)(hunt)
    with contextlib.suppress(_ShownError):
        hunt()
    return shown[-1] if shown else None  # the last one shown is the shrunk one


# ---------------------------------------------------------------------------
# Recorded sessions (``diff --sessions FILE``), sequential or on a parallel runner


@attrs.frozen
class LineOutcome:
    """What one JSONL line gave against one rule set: its outcome, or why it is bad input.

    ``session`` is the line's session (wire form) for the report; ``clock`` is True for
    a clock move (nothing to compare); ``bad`` the problem with a line that is not a
    session at all (bad JSON, a lifecycle step a dry comparison cannot replay).
    """

    number: int
    session: Any = None
    outcome: Outcome | None = None
    clock: bool = False
    bad: str | None = None


def line_outcome(sb: Sandbox, number: int, raw: bytes) -> LineOutcome:
    """One line of a sessions file, evaluated dry on ``sb`` (picklable: workers run it)."""
    try:
        data = parse_line(decode_line(raw))
        if isinstance(data, dict) and set(data) == {"advance"}:
            move_clock(sb, clock_step(data["advance"]))
            return LineOutcome(number, clock=True)
        if isinstance(data, dict) and ("reopen" in data or "returnItems" in data):
            return LineOutcome(
                number, bad="a lifecycle step (reopen, returnItems) cannot be compared dry"
            )
        session_id, payload, _, _ = read_request(data, number)
    except SandboxError as exc:
        return LineOutcome(number, bad=str(exc).splitlines()[0])
    try:
        state = sb.update(session_id, payload, dry=True)
    except SandboxError as exc:
        refused = Outcome(error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        return LineOutcome(number, payload, refused)
    return LineOutcome(number, payload, outcome(state, _names(sb)))


def compare_lines(
    old: Iterable[LineOutcome], new: Iterable[LineOutcome]
) -> tuple[DiffReport, list[LineOutcome]]:
    """The report of two streams of line outcomes (the same lines, in order), and the
    lines that were bad input."""
    report = DiffReport()
    bad: list[LineOutcome] = []
    for before, after in zip(old, new, strict=True):
        if before.bad is not None:
            bad.append(before)
            continue
        if before.clock:
            continue
        assert before.outcome is not None
        assert after.outcome is not None
        if before.outcome.error is not None and after.outcome.error is not None:
            report.refused += 1
        report.add(before.number, before.session, before.outcome, after.outcome)
    return report, bad
