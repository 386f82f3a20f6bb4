"""Rule coverage: which rules fired, which condition stopped each, which reasons came up.

Over a test run, a fuzz run or an eval, every answer a sandbox gives is added to a
:class:`Coverage`: for each campaign and rule, how often it fired, how often each of
its conditions was the one that failed (and each effect the one that could not be
applied), how often its campaign was excluded by its group; for each of Talon.One's
rejection reasons, how often it was produced. What never happened is the report's
point: a rule no session reached, a condition that never decided, a reason never seen.

>>> from sandbox import Sandbox, conditions as c, effects as e
>>> sb = Sandbox(now="2026-12-01T10:00:00Z")
>>> sb.campaign("C").rule("big", when=[c.total_at_least(100)], then=[e.set_discount("d", 5)])
... # doctest: +ELLIPSIS
Rule(...)
>>> cov = Coverage()
>>> with cov.recording():
...     _ = sb.update("s1", {"cartItems": [{"sku": "a", "quantity": 1, "price": 10}]})
>>> cov.rule("C", "big").failed_at
{0: 1}

Rules are keyed by campaign name and rule title, so runs over fresh sandboxes built
from one rules file add up, and coverage from several processes merges
(:meth:`Coverage.merge`, :meth:`to_json` / :meth:`from_json`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox._html import html_of
from sandbox.talon import CouponRejection, EffectType, ReferralRejection

if TYPE_CHECKING:
    from sandbox.core import Sandbox
    from sandbox.state import IntegrationState

__all__ = ["Coverage", "RuleCoverage"]

REASONS: tuple[tuple[str, str], ...] = tuple(
    [("coupon", r.value) for r in CouponRejection]
    + [("referral", r.value) for r in ReferralRejection]
)
_OBSERVERS_LOCK = threading.Lock()


@attrs.define
class RuleCoverage:
    """One rule's counts: fired, failed at each condition or effect, excluded."""

    campaign: str
    rule: str
    conditions: tuple[str, ...] = ()
    effects: int = 0
    evaluated: int = 0
    fired: int = 0
    failed_at: dict[int, int] = attrs.Factory(dict)
    effect_failures: dict[int, int] = attrs.Factory(dict)
    excluded: int = 0

    @property
    def never_failed(self) -> list[int]:
        """The conditions that were never the one to fail."""
        return [i for i in range(len(self.conditions)) if not self.failed_at.get(i)]


class Coverage:
    """Counts over many answers; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: dict[tuple[str, str], RuleCoverage] = {}
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.answers = 0

    # -- collecting ------------------------------------------------------------

    def know(self, sb: Sandbox) -> None:
        """Register every rule of a sandbox, so that rules never reached are reported."""
        with self._lock:
            for campaign in sb.campaigns:
                for rule in campaign.rules:
                    self._rule(campaign.name, rule.title, rule)

    def _rule(self, campaign: str, title: str, rule: Any = None) -> RuleCoverage:
        key = (campaign, title)
        found = self.rules.get(key)
        if found is None:
            found = RuleCoverage(campaign, title)
            self.rules[key] = found
        if rule is not None and not found.conditions:
            found.conditions = tuple(c.description for c in rule.conditions)
            found.effects = len(rule.effects)
        return found

    def add(self, state: IntegrationState, sb: Sandbox | None = None) -> None:
        """Count one answer (an evaluation; rollback answers hold no rule outcomes)."""
        if sb is not None and not self.rules:
            self.know(sb)
        with self._lock:
            self.answers += 1
            for effect in state.effects:
                if effect.effect_type is EffectType.REJECT_COUPON:
                    self.reasons[("coupon", str(effect.rejection_reason))] += 1
                elif effect.effect_type is EffectType.REJECT_REFERRAL:
                    self.reasons[("referral", str(effect.rejection_reason))] += 1
            for campaign in state.trace:
                if campaign.skipped:
                    continue
                for rule in campaign.rules:
                    counts = self._rule(campaign.name, rule.title)
                    counts.evaluated += 1
                    if rule.fired:
                        counts.fired += 1
                        continue
                    failure = rule.failure
                    if campaign.excluded and (
                        failure is None
                        or (failure.condition_index is None and failure.effect_index is None)
                    ):
                        counts.excluded += 1
                    elif failure is not None and failure.condition_index is not None:
                        index = failure.condition_index
                        counts.failed_at[index] = counts.failed_at.get(index, 0) + 1
                    elif failure is not None and failure.effect_index is not None:
                        index = failure.effect_index
                        counts.effect_failures[index] = counts.effect_failures.get(index, 0) + 1

    @contextlib.contextmanager
    def recording(self, sandbox: Sandbox | None = None) -> Iterator[Coverage]:
        """Count every answer any sandbox gives while the block runs, or only the
        answers of ``sandbox`` (a worker thread's own, beside other threads recording)."""
        from sandbox.core import Sandbox

        def observe(sb: Sandbox, state: IntegrationState) -> None:
            if sandbox is not None and sb is not sandbox:
                return
            self.know(sb)  # a few rules to look at; fresh sandboxes of one file add up
            self.add(state)

        # The list is replaced, never changed in place: a thread iterating over it
        # while another starts or ends a recording sees the list it started with.
        with _OBSERVERS_LOCK:
            Sandbox.observers = [*Sandbox.observers, observe]
        try:
            yield self
        finally:
            with _OBSERVERS_LOCK:
                Sandbox.observers = [o for o in Sandbox.observers if o is not observe]

    # -- reading -----------------------------------------------------------------

    def rule(self, campaign: str, title: str) -> RuleCoverage:
        found = self.rules.get((campaign, title))
        if found is None:
            raise KeyError(f"no rule {title!r} of campaign {campaign!r} was seen")
        return found

    @property
    def never_fired(self) -> list[RuleCoverage]:
        return [r for r in self.rules.values() if not r.fired]

    @property
    def never_produced(self) -> list[tuple[str, str]]:
        """Talon.One's rejection reasons no answer gave."""
        return [reason for reason in REASONS if not self.reasons.get(reason)]

    def merge(self, other: Coverage) -> None:
        with self._lock:
            self.answers += other.answers
            self.reasons.update(other.reasons)
            for key, theirs in other.rules.items():
                mine = self._rule(*key)
                if not mine.conditions:
                    mine.conditions, mine.effects = theirs.conditions, theirs.effects
                mine.evaluated += theirs.evaluated
                mine.fired += theirs.fired
                mine.excluded += theirs.excluded
                for index, n in theirs.failed_at.items():
                    mine.failed_at[index] = mine.failed_at.get(index, 0) + n
                for index, n in theirs.effect_failures.items():
                    mine.effect_failures[index] = mine.effect_failures.get(index, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "rules": [attrs.asdict(r) for r in self.rules.values()],
            "reasons": [[kind, reason, n] for (kind, reason), n in sorted(self.reasons.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Coverage:
        made = cls()
        made.answers = int(data.get("answers", 0))
        for raw in data.get("rules", []):
            rule = RuleCoverage(
                raw["campaign"],
                raw["rule"],
                tuple(raw.get("conditions", ())),
                raw.get("effects", 0),
                raw.get("evaluated", 0),
                raw.get("fired", 0),
                {int(k): v for k, v in raw.get("failed_at", {}).items()},
                {int(k): v for k, v in raw.get("effect_failures", {}).items()},
                raw.get("excluded", 0),
            )
            made.rules[(rule.campaign, rule.rule)] = rule
        for kind, reason, n in data.get("reasons", []):
            made.reasons[(kind, reason)] += n
        return made

    def report(self) -> str:
        """A text report: every rule with its counts, then the reasons, never-seen marked."""
        lines = [f"rule coverage over {self.answers} answer(s)"]
        for r in self.rules.values():
            mark = "NEVER FIRED" if not r.fired else f"fired {r.fired}"
            lines.append(
                f"  {r.campaign} / {r.rule}: {mark} of {r.evaluated} evaluated"
                + (f", excluded {r.excluded}" if r.excluded else "")
            )
            for index, description in enumerate(r.conditions):
                n = r.failed_at.get(index, 0)
                lines.append(
                    f"    condition {index} ({description}): "
                    + (f"failed {n}" if n else "never the one that failed")
                )
            for index, n in sorted(r.effect_failures.items()):
                lines.append(f"    effect {index}: could not be applied {n}")
        lines.append("rejection reasons")
        for kind, reason in REASONS:
            n = self.reasons.get((kind, reason), 0)
            lines.append(f"  {kind} {reason}: {n if n else 'never produced'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def _repr_html_(self) -> str:
        return html_of(self)
