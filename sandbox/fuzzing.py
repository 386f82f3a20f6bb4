"""Fuzz a rules file: built-in invariants and the file's own ``property_*`` functions.

A rules file defines ``build()`` returning a :class:`~sandbox.Sandbox` (best:
every example gets a fresh one) or a module-level ``sandbox`` (the file is
then run again for every fresh sandbox), and may define properties:
module-level functions ``property_NAME(state: IntegrationState) -> bool``.

A property is checked when the file is loaded: one that cannot be called
with a single argument is bad usage (:class:`RulesFileError`, naming the
function and the expected signature). So is a property that returns
anything but ``True`` or ``False`` (numpy's bool counts): ``None`` is almost
always a forgotten ``return``, and truthiness of other values (``0``, a
Decimal, a list) is a guess the report should not make. A property that
raises is a violation, like an ``assert`` inside it would be.

``fuzz`` evaluates each generated session once and runs every check on the
answer, in one Hypothesis search. Every distinct failure is reported: a check
failing in several ways (told apart by the rules that fired, and by whether the
discount is over the check's bound by more than rounding) gets one shrunk,
replayable counterexample per way, ranked by money at stake. A search ends some
examples after its first failures, so another follows with those left out,
until one finds nothing new. Then a lifecycle run (half as many runs
as examples, each up to 20 steps: orders open and closed, returning
customers, close, cancel, reopen, return, the clock moving) checks the
counters and the properties after every step; it leaves out, and so never
shrinks again, what the single-session search already reported. A rule whose answer depends on
anything but the session and the sandbox (a module-level set, a counter)
answers the same session differently twice; that is its own finding,
``rules_keep_no_outside_state``, naming the rule, reported first since it
makes every other verdict unreliable. ``python -m sandbox fuzz`` prints
:meth:`FuzzReport.render` and exits 1 when there are violations.

>>> report = fuzz("examples/half_off_ok.py", examples=20, seed=1)  # doctest: +SKIP
>>> report.violations
[]
"""

from __future__ import annotations

import contextlib
import inspect
import json
import runpy
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, event, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from sandbox.codec import to_wire
from sandbox.conditions import NotABoolError, as_bool
from sandbox.core import Sandbox
from sandbox.errors import RuleError, SandboxError
from sandbox.invariants import (
    OUTSIDE_STATE,
    InvariantViolation,
    OutsideStateError,
    answers_agree,
    check_state,
    deterministic,
    discounts_within_base,
    dry_run_changes_nothing,
    limits_hold,
    one_outcome_per_code,
    rejected_code_triggers_nothing,
    usage_reconciles,
)
from sandbox.models import (
    AnySession,
    CartItem,
    NewCustomerSession,
    NewCustomerSessionV2,
    SessionState,
    describe,
)
from sandbox.rules import Campaign
from sandbox.state import IntegrationState
from sandbox.steps import parse_line, read_step

__all__ = [
    "FuzzReport",
    "Property",
    "RulesFileError",
    "Violation",
    "combination_sessions",
    "fuzz",
    "load_rules",
    "replay",
]

SESSION_ID = "fuzz-1"
PROPERTY_SIGNATURE = (
    "property_NAME(state: IntegrationState) -> bool, or "
    "property_NAME(state: IntegrationState, sb: Sandbox) -> bool"
)


@attrs.frozen
class Property:
    """A rules file's ``property_*``: called with the answer, and the sandbox after it
    when the function takes a second argument (for properties over the lifecycle:
    counters, stored sessions, created codes)."""

    name: str
    fn: Callable[..., object]
    takes_sandbox: bool = False

    def __call__(self, state: IntegrationState, sb: Sandbox | None = None) -> object:
        if self.takes_sandbox:
            return self.fn(state, sb)
        return self.fn(state)


class RulesFileError(SandboxError, ValueError):
    """A rules file cannot be used: missing, broken, or without a sandbox."""


# ---------------------------------------------------------------------------
# Loading


def load_rules(path: str | Path) -> tuple[Callable[[], Sandbox], dict[str, Property]]:
    """A factory of fresh sandboxes and the ``property_*`` functions of a rules file.

    Raises :class:`RulesFileError` when the file is missing, does not run,
    defines neither ``build()`` nor ``sandbox``, or gives something that is
    not a Sandbox.
    """
    file = Path(path)
    if not file.is_file():
        hint = " (it is a directory)" if file.is_dir() else ""
        raise RulesFileError(f"rules file {str(path)!r} not found{hint}")
    namespace = _run(file)
    build = namespace.get("build")
    if build is not None and not callable(build):
        raise RulesFileError(
            f"{file}: 'build' must be a function returning a Sandbox, got {build!r}"
        )
    if build is None and "sandbox" not in namespace:
        raise RulesFileError(
            f"{file}: defines neither build() nor a module-level 'sandbox'; "
            "add `def build() -> Sandbox:` returning your sandbox"
        )

    def factory() -> Sandbox:
        if build is not None:
            try:
                made = build()
            except SandboxError as exc:
                raise RulesFileError(f"{file}: build() raised {type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                raise RulesFileError(f"{file}: build() raised {type(exc).__name__}: {exc}") from exc
            what = "build() returned"
        else:
            # A module-level sandbox is mutable: the first is fresh, later ones come
            # from running the file again.
            made = spare.pop() if spare else _run(file).get("sandbox")
            what = "'sandbox' is"
        if not isinstance(made, Sandbox):
            raise RulesFileError(
                f"{file}: {what} {type(made).__name__} {made!r}, not a sandbox.Sandbox"
            )
        return made

    spare = [] if build is not None else [namespace["sandbox"]]
    spare.append(factory())  # fail now, with the file's name, not in the middle of a search
    properties: dict[str, Property] = {}
    for name, value in namespace.items():
        if name.startswith("property_"):
            properties[name] = _checked_property(file, name, value)
    return factory, properties


def _checked_property(file: Path, name: str, value: Any) -> Property:
    """``value`` if it can be called as a property, else a RulesFileError saying how."""
    if not callable(value):
        raise RulesFileError(
            f"{file}: {name} must be a function taking an IntegrationState and "
            f"returning a bool, got {describe(value)}; expected {PROPERTY_SIGNATURE}"
        )
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return Property(name, value)  # no signature to read (a builtin): trust it
    try:
        signature.bind(None)
    except TypeError as exc:
        try:
            signature.bind(None, None)
        except TypeError:
            code = getattr(value, "__code__", None)
            where = f"{file}:{code.co_firstlineno}" if code is not None else str(file)
            raise RulesFileError(
                f"{where}: {name}{signature} cannot be called with one IntegrationState "
                f"(or one IntegrationState and the Sandbox) ({exc}); expected "
                f"{PROPERTY_SIGNATURE}"
            ) from None
        return Property(name, value, takes_sandbox=True)
    return Property(name, value)


def _run(file: Path) -> dict[str, Any]:
    try:
        return runpy.run_path(str(file), run_name=f"rules:{file.stem}")
    except SyntaxError as exc:
        raise RulesFileError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SandboxError as exc:
        raise RulesFileError(f"{file}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise RulesFileError(
            f"{file}: running the file raised {type(exc).__name__}: {exc}"
        ) from exc


# ---------------------------------------------------------------------------
# Report


@attrs.frozen
class Violation:
    """One distinct failure of a check, with its shrunk counterexample.

    ``check`` is one of the report's ``checks``; ``invariant`` names what
    broke inside it when the check covers several (the lifecycle's
    ``dry_run_matches_update``, say). ``replay`` is a list of JSONL-ready
    requests (``{"customerSessionId", "customerSession"}`` dicts for
    ``python -m sandbox eval``, or lifecycle steps); ``explain`` is the last
    answer's ``state.explain()``. ``shrunk`` is False for a finding recorded as
    first seen (a rule keeping outside state cannot be shrunk reliably) or cut
    short by the time budget.

    A check can fail in several distinct ways; each is its own Violation.
    ``kind`` says what tells them apart: the rules that fired in the failing
    answer (or the action that answered: a return, a cancel). ``stake`` is the
    money at stake: how far the answer's discount is over the largest discount
    the check would have accepted (the check re-run on the same answer with
    every discount scaled down), the largest seen for this kind over the search;
    None when no smaller discount makes the check hold (the failure is not
    about an amount). ``within_rounding`` marks a stake of at most a cent per
    discount effect: rounding to the currency, not a rule giving too much.
    """

    check: str
    message: str
    replay: tuple[dict[str, Any], ...]
    explain: str = ""
    invariant: str | None = None
    shrunk: bool = True
    found_after: int | None = None
    """How many generated examples the search tried until this first failed."""
    kind: str = ""
    stake: Decimal | None = None
    within_rounding: bool = False

    def render(self, rank: str = "") -> str:
        head = f"VIOLATED {self.check}" + (f": {self.invariant}" if self.invariant else "")
        lines = [head + (f" ({rank})" if rank else "")]
        if self.kind:
            lines.append(f"  kind: {self.kind}")
        if self.stake is not None:
            lines.append(
                f"  money at stake: {_money(self.stake)} over the bound"
                + (
                    " (within rounding: at most a cent per discount effect; a property should "
                    "allow for it)"
                    if self.within_rounding
                    else ""
                )
            )
        lines.append(f"  {self.message}".replace("\n", "\n  "))
        if self.replay:
            kind = "shrunk counterexample" if self.shrunk else "counterexample (not shrunk)"
            lines.append(f"  {kind} (replayable JSON, one request per line):")
            lines.extend(f"    {_json(step)}" for step in self.replay)
        if self.explain:
            lines.append("  explain:")
            lines.extend(f"    {line}" for line in self.explain.splitlines())
        return "\n".join(lines)


def _money(value: Decimal) -> str:
    """A stake as money: cents, or the exact figure when it is below a cent."""
    if value >= CENT or value == 0:
        return str(value.quantize(CENT))
    return f"{value.quantize(Decimal('0.0001')).normalize():f} (less than a cent)"


@attrs.frozen
class FuzzReport:
    """The outcome of :func:`fuzz`: ``violations`` is empty when every check held.

    A check that failed in several distinct ways has one violation per way,
    listed together and ranked by money at stake (largest first); ``unreported``
    counts, per check, the further distinct failures seen but not shrunk.
    ``tried`` is, per check, how many generated examples its search tried until the
    first failure (or in all); ``combinations`` and ``reasons`` count which campaigns
    fired together and which rejection reasons came up over the whole run.
    """

    path: str
    examples: int
    seed: int | None
    checks: tuple[str, ...]
    violations: list[Violation]
    tried: dict[str, int] = attrs.Factory(dict)
    seconds: float = 0.0
    combinations: dict[str, int] = attrs.Factory(dict)
    reasons: dict[str, int] = attrs.Factory(dict)
    out_of_time: bool = False
    replay_files: dict[str, str] = attrs.Factory(dict)
    """Per violation (by :meth:`labels`), the file its counterexample was saved to (by
    the CLI)."""
    unreported: dict[str, int] = attrs.Factory(dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def labels(self) -> list[str]:
        """A name per violation: its check, numbered when the check failed in several
        ways (``property_x``, ``property_x-2``)."""
        seen: Counter[str] = Counter()
        labels = []
        for violation in self.violations:
            seen[violation.check] += 1
            n = seen[violation.check]
            labels.append(violation.check if n == 1 else f"{violation.check}-{n}")
        return labels

    def render(self) -> str:
        seed = "random" if self.seed is None else str(self.seed)
        if self.examples == 0:  # a replay: the steps of one counterexample, checked again
            lines = [f"replay on {self.path}: {len(self.checks)} checks after every step"]
        else:
            lines = [
                f"fuzz {self.path}: {len(self.checks)} checks, {self.examples} examples each, "
                f"seed {seed}"
                + (" (time budget spent: not every example was tried)" if self.out_of_time else "")
            ]
        failed = Counter(v.check for v in self.violations)
        for check in self.checks:
            n = failed[check]
            ways = f" ({n} distinct failures)" if n > 1 else ""
            lines.append(f"  {'FAIL' if n else 'ok  '} {check}{ways}")
        saved = 0
        place: Counter[str] = Counter()
        for violation, label in zip(self.violations, self.labels(), strict=True):
            lines.append("")
            n = failed[violation.check]
            place[violation.check] += 1
            lines.append(violation.render(f"{place[violation.check]} of {n}" if n > 1 else ""))
            more = self.unreported.get(violation.check, 0)
            if more and label == violation.check:
                lines.append(
                    f"  ({more} more distinct failure{'s' if more != 1 else ''} of this check "
                    "seen and not shrunk: fix these first, then fuzz again)"
                )
            replay = self.replay_files.get(label)
            if replay:
                saved += 1
                lines.append(f"  replay it: python -m sandbox fuzz {self.path} --replay {replay}")
        if self.combinations:
            lines.append("")
            lines.append("campaigns that fired together (sessions):")
            for combination, n in list(self.combinations.items())[:8]:
                lines.append(f"  {n:6d}  {combination}")
        if self.reasons:
            lines.append("rejection reasons produced:")
            for reason, n in list(self.reasons.items())[:8]:
                lines.append(f"  {n:6d}  {reason}")
        lines.append("")
        if OUTSIDE_STATE in failed:
            lines.append(
                "fix the rule that keeps state outside the sandbox first: every other verdict "
                "depends on the rules answering alike"
            )
        count = len(self.violations)
        replayable = sum(1 for v in self.violations if v.replay)
        if not count:
            lines.append("no violations")
        elif replayable and saved == replayable:
            lines.append(
                f"{count} violation{'s' if count != 1 else ''}; each counterexample is saved: "
                "replay one with the `replay it:` command under it"
            )
        else:
            lines.append(
                f"{count} violation{'s' if count != 1 else ''}; to replay one, save its "
                f"counterexample lines to FILE.jsonl and run `python -m sandbox fuzz {self.path} "
                "--replay FILE.jsonl`"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``fuzz --json FILE``); :meth:`from_json` reads it."""
        return {
            "path": self.path,
            "examples": self.examples,
            "seed": self.seed,
            "checks": list(self.checks),
            "violations": [
                {
                    "check": v.check,
                    "message": v.message,
                    "replay": [json.loads(_json(step)) for step in v.replay],
                    "explain": v.explain,
                    "invariant": v.invariant,
                    "shrunk": v.shrunk,
                    "foundAfter": v.found_after,
                    "kind": v.kind,
                    "moneyAtStake": None if v.stake is None else str(v.stake),
                    "withinRounding": v.within_rounding,
                }
                for v in self.violations
            ],
            "tried": self.tried,
            "seconds": round(self.seconds, 3),
            "combinations": self.combinations,
            "reasons": self.reasons,
            "outOfTime": self.out_of_time,
            "replayFiles": self.replay_files,
            "unreported": self.unreported,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FuzzReport:
        return cls(
            data["path"],
            data["examples"],
            data["seed"],
            tuple(data["checks"]),
            [
                Violation(
                    v["check"],
                    v["message"],
                    tuple(v["replay"]),
                    v.get("explain", ""),
                    v.get("invariant"),
                    v.get("shrunk", True),
                    v.get("foundAfter"),
                    v.get("kind", ""),
                    None if v.get("moneyAtStake") is None else Decimal(v["moneyAtStake"]),
                    v.get("withinRounding", False),
                )
                for v in data["violations"]
            ],
            dict(data.get("tried", {})),
            data.get("seconds", 0.0),
            dict(data.get("combinations", {})),
            dict(data.get("reasons", {})),
            data.get("outOfTime", False),
            dict(data.get("replayFiles", {})),
            dict(data.get("unreported", {})),
        )

    def junit_xml(self) -> str:
        """JUnit XML: one test case per check, a failure element for a violated one
        (with every distinct failure of it)."""
        from xml.etree import ElementTree as ET

        failed: dict[str, list[Violation]] = {}
        for v in self.violations:
            failed.setdefault(v.check, []).append(v)
        suite = ET.Element(
            "testsuite",
            name=f"promo-sandbox fuzz {self.path}",
            tests=str(len(self.checks)),
            failures=str(len(failed)),
            errors="0",
            time=f"{self.seconds:.3f}",
        )
        for check in self.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"fuzz.{Path(self.path).stem}", name=check
            )
            violations = failed.get(check)
            if violations:
                failure = ET.SubElement(
                    case, "failure", message=violations[0].message.splitlines()[0][:500]
                )
                failure.text = "\n\n".join(v.render() for v in violations)
        text: str = ET.tostring(suite, encoding="unicode", xml_declaration=True)
        return text


def _json(value: Any) -> str:
    from sandbox.codec import dumps

    return dumps(value)


# ---------------------------------------------------------------------------
# Searching

CENT = Decimal("0.01")

MAX_FAILURES_PER_CHECK = 3
"""Distinct failures of one check that are shrunk and reported; further ones are counted."""

SESSION_ROUNDS = 4
"""Single-session searches at most: each one after the first leaves out the failures
the earlier ones found, so that one failure found early never hides another."""

LIFECYCLE_ROUNDS = 2
"""Lifecycle searches at most, likewise."""

SESSION_SHARE = 0.4
"""Of a time budget, the share the single-session searches may use before the lifecycle
starts (the lifecycle then has what is left)."""

PROBE = "deterministic_and_dry_runs_change_nothing"
RAISES = "rules_do_not_raise"
COUNTERS = "limits_hold_and_usage_reconciles"
STATE_INVARIANTS: Mapping[str, Callable[[IntegrationState], None]] = {
    "discounts_within_base": discounts_within_base,
    "one_outcome_per_code": one_outcome_per_code,
    "rejected_code_triggers_nothing": rejected_code_triggers_nothing,
}
BUILTIN_CHECKS: tuple[str, ...] = (
    # First: a rule that remembers what it saw shows it only on a session it has
    # not seen yet, and every later check evaluates the same session again.
    PROBE,
    RAISES,
    *STATE_INVARIANTS,
    COUNTERS,
)


class _CheckFailedError(Exception):
    """Raised inside a search; Hypothesis shrinks what raises it. Each distinct failure
    (check and kind) raises its own subclass (:func:`_raised_as`): Hypothesis tells
    failures apart by their type, and shrinks each one as itself."""


_FAILURE_TYPES: dict[_Key, type[_CheckFailedError]] = {}


def _raised_as(key: _Key) -> type[_CheckFailedError]:
    found = _FAILURE_TYPES.get(key)
    if found is None:
        found = _FAILURE_TYPES[key] = type("CheckFailed", (_CheckFailedError,), {"key": key})
    return found


class _OutOfTimeError(BaseException):
    """The run's time budget is spent. A BaseException, so that Hypothesis lets it
    through and the search ends at once, shrinking included (an Exception would be one
    more failure to shrink)."""


def _timed_out(error: BaseException) -> bool:
    """Whether ``error`` came of the time budget: Hypothesis, seeing its test end early,
    may raise one of its own errors (FlakyStrategyDefinition) with ours as the context."""
    waiting: list[BaseException] = [error]
    seen: set[int] = set()
    while waiting:
        current = waiting.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _OutOfTimeError):
            return True
        if isinstance(current, BaseExceptionGroup):
            waiting.extend(current.exceptions)
        waiting.extend(e for e in (current.__context__, current.__cause__) if e is not None)
    return False


class _PropertyUsageError(Exception):
    """A property returned something that is not a verdict: bad usage, not a violation."""


_Key = tuple[str, str, str]
"""A distinct failure: the check (for the lifecycle: the invariant or property), the
kind (the rules that fired; "" in a lifecycle) and the amount class (:func:`_Failure.amount`)."""

WITHIN_ROUNDING = "within rounding"
OVER_THE_BOUND = "over the bound"
NOT_AN_AMOUNT = "not about an amount"
BAD_USAGE = "bad usage"


@attrs.define
class _Failure:
    """One check failing on one answer. ``name`` is the check (for the lifecycle: the
    invariant or property), ``kind`` what tells this failure from the check's others,
    ``holds`` the check as a predicate of an answer (to measure the money at stake)."""

    name: str
    kind: str
    message: str
    state: IntegrationState | None = None
    holds: Callable[[IntegrationState], bool] | None = None
    _stake: Decimal | bool | None = False  # False: not measured yet

    @property
    def stake(self) -> Decimal | None:
        """The money at stake (:func:`money_at_stake`), measured once."""
        if self._stake is False:
            found = None
            if self.holds is not None and self.state is not None:
                found = money_at_stake(self.holds, self.state)
            self._stake = found
        return None if isinstance(self._stake, bool) else self._stake

    @property
    def amount(self) -> str:
        """Whether the failure is a discount over the bound by more than rounding (a cent
        per discount effect), within rounding, or not about an amount at all. Part of
        what makes a failure distinct: a rule giving too much must not shrink to a cart
        so small that only rounding shows, nor hide behind a rounding artefact."""
        stake = self.stake
        if stake is None:
            return NOT_AN_AMOUNT
        if stake <= CENT * max(1, _discount_effects(self.state)):
            return WITHIN_ROUNDING
        return OVER_THE_BOUND

    @property
    def key(self) -> _Key:
        return (self.name, self.kind, self.amount)


def signature(state: IntegrationState | None) -> str:
    """What tells one failure of a check from another: the rules that fired in the
    failing answer, and the action when it was not an evaluation (a return, a cancel).

    A rounding artefact of one campaign and a stacking bug of three fire different rules,
    so each is reported, shrunk as itself."""
    if state is None:
        return ""
    fired = [f"{c.name} / {r.title}" for c in state.trace for r in c.rules if r.fired]
    what = " + ".join(fired) if fired else "no rule fired"
    if state.action != "update":
        return f"after {state.action}: {what}"
    return f"rules fired: {what}"


def money_at_stake(
    holds: Callable[[IntegrationState], bool], state: IntegrationState
) -> Decimal | None:
    """How much of the answer's discount is over what ``holds`` accepts.

    The check is run again on the same answer with every discount scaled down (by
    bisection on the scale), and the stake is the discount given less the largest one
    that passes. None when even no discount at all fails: the failure is not about an
    amount (a limit, a code created twice)."""
    given = state.total_discount
    if given <= 0:
        return None

    def scaled(factor: Decimal) -> IntegrationState:
        effects = tuple(
            attrs.evolve(e, props={**e.props, "value": e.props["value"] * factor})
            if e.effect_type.is_discount
            else e
            for e in state.effects
        )
        return attrs.evolve(state, effects=effects)

    if not _quietly(holds, scaled(Decimal(0))):
        return None
    low, high = Decimal(0), Decimal(1)
    for _ in range(24):
        middle = (low + high) / 2
        if _quietly(holds, scaled(middle)):
            low = middle
        else:
            high = middle
    return (given - given * low).quantize(Decimal("0.0001"))


def _quietly(holds: Callable[[IntegrationState], bool], state: IntegrationState) -> bool:
    try:
        return holds(state)
    except Exception:
        return False


def _discount_effects(state: IntegrationState | None) -> int:
    return 0 if state is None else sum(1 for e in state.effects if e.effect_type.is_discount)


def _invariant_holds(invariant: Callable[[IntegrationState], None]) -> Callable[..., bool]:
    def holds(state: IntegrationState) -> bool:
        try:
            invariant(state)
        except InvariantViolation:
            return False
        return True

    return holds


def _property_holds(name: str, prop: Property, sb: Sandbox) -> Callable[..., bool]:
    return lambda state: _verdict(name, prop(state, sb))


def _verdict(name: str, held: object) -> bool:
    """A property's answer as a bool; anything but a bool is bad usage."""
    try:
        return as_bool(held)  # what counts as a bool, as for conditions
    except NotABoolError:
        pass
    if held is None:
        raise _PropertyUsageError(
            f"{name} returned None: a property must return True or False (is a `return` "
            f"missing?); expected {PROPERTY_SIGNATURE}"
        )
    raise _PropertyUsageError(
        f"{name} returned {type(held).__name__} {describe(held)}, not a bool: a property must return "
        f"True or False (write the comparison, e.g. `return x > 0`); expected {PROPERTY_SIGNATURE}"
    )


def _check_property(
    name: str, prop: Property, state: IntegrationState, sb: Sandbox
) -> _Failure | None:
    """The property on one answer: None when it holds."""
    try:
        held = prop(state, sb)
    except Exception as exc:
        message = f"{name} raised {type(exc).__name__}: {exc}"
    else:
        if _verdict(name, held):
            return None
        message = (
            f"{name} returned False after {state.action} of session {state.session_id!r}: "
            f"total {state.session.effective_total}, total discount {state.total_discount}"
        )
    return _Failure(name, signature(state), message, state, _property_holds(name, prop, sb))


def _check_session(
    factory: Callable[[], Sandbox],
    session: AnySession,
    checks: Iterable[str],
    properties: Mapping[str, Property],
) -> tuple[IntegrationState | None, list[_Failure]]:
    """Every check named in ``checks`` on one session: its answer and what failed.

    One sandbox answers for all of them: the dry runs of the probe first (a rule that
    remembers what it saw answers its first evaluation differently), then the update the
    other checks read. Raises OutsideStateError (a finding of its own) and
    _PropertyUsageError (bad usage)."""
    wanted = set(checks)
    failures: list[_Failure] = []
    sb = factory()
    if PROBE in wanted:
        try:
            dry = dry_run_changes_nothing(sb, SESSION_ID, session)
            again = deterministic(sb, session, session_id=SESSION_ID)
            if dry is not None:
                answers_agree(
                    dry,
                    again,
                    invariant="deterministic",
                    detail="two dry evaluations of the same session differ",
                    session_id=SESSION_ID,
                )
        except OutsideStateError:
            raise
        except InvariantViolation as exc:
            failures.append(_Failure(PROBE, exc.invariant, str(exc)))
            sb = factory()  # the dry run changed it: the other checks start afresh
        except RuleError:
            pass  # reported once, by rules_do_not_raise
    try:
        state = sb.update(SESSION_ID, session)
    except RuleError as exc:
        if RAISES in wanted:
            kind = f"campaign {exc.campaign!r}, rule {exc.rule!r}"
            failures.append(_Failure(RAISES, kind, f"a rule raised: {exc}"))
        return None, failures
    for name, invariant in STATE_INVARIANTS.items():
        if name in wanted:
            try:
                invariant(state)
            except InvariantViolation as exc:
                kind = signature(state)
                failures.append(_Failure(name, kind, str(exc), state, _invariant_holds(invariant)))
    if COUNTERS in wanted:
        try:
            limits_hold(sb)
            usage_reconciles(sb)
        except InvariantViolation as exc:
            kind = f"{exc.invariant}, {signature(state)}"
            failures.append(_Failure(COUNTERS, kind, str(exc), state))
    for name, prop in properties.items():
        if name in wanted:
            failure = _check_property(name, prop, state, sb)
            if failure is not None:
                failures.append(failure)
    return state, failures


def _settings(examples: int, *, database: Any = None, **more: Any) -> settings:
    return settings(
        max_examples=examples,
        database=database,
        derandomize=False,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=True,
        verbosity=Verbosity.quiet,
        # The explain phase costs more than the search here, and the report explains itself.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
        **more,
    )


@attrs.define
class _RunOptions:
    """What every search of one fuzz run shares: the database, the budget, the stats."""

    key: str = ""
    database: Any = None
    deadline: float | None = None  # time.monotonic() by which the run must end
    phase_end: float | None = None  # the same for the search under way (its share)
    combinations: Counter[str] = attrs.Factory(Counter)
    reasons: Counter[str] = attrs.Factory(Counter)
    fired: Counter[str] = attrs.Factory(Counter)  # "campaign / rule" -> times fired
    sessions: int = 0
    cut_short: bool = False

    def out_of_time(self) -> bool:
        end = self.phase_end if self.phase_end is not None else self.deadline
        return end is not None and time.monotonic() > end

    def tick(self) -> None:
        """End the search under way at once when its time is spent."""
        if self.out_of_time():
            self.cut_short = True
            raise _OutOfTimeError


def _steer(state: IntegrationState, run: _RunOptions) -> None:
    """Point the search at what costs money: a large share of the total given away, and
    several campaigns firing together; count which combinations and reasons came up."""
    run.sessions += 1
    fired = sorted(
        {c.name for c in state.trace if any(r.fired for r in c.rules)},
    )
    combination = " + ".join(fired) if fired else "(no campaign)"
    run.combinations[combination] += 1
    for reason in (*state.rejected_coupons.values(), *state.rejected_referrals.values()):
        run.reasons[reason] += 1
    steer_to_unexercised(state, run.fired)
    total = state.session.effective_total
    share = float(state.total_discount / total) if total else 0.0
    with contextlib.suppress(Exception):  # outside a Hypothesis test (a replay): nothing to steer
        target(share, label="discount share of the total")
        target(float(len(fired)), label="campaigns fired together")
        event(f"campaigns fired: {combination}")


def steer_to_unexercised(state: IntegrationState, fired: Counter[str]) -> None:
    """Point a Hypothesis search at rules it has seldom or never fired.

    ``fired`` counts, over the search so far, how often each "campaign / rule" fired;
    this evaluation's rules are added to it. The score (Hypothesis ``target()``) is the
    sum of 1 / (1 + earlier fires) over the rules that fired, so an example firing a
    rule nothing fired before scores highest; ``event()`` records each rule fired for
    Hypothesis' statistics. Call it inside a Hypothesis test; outside one it only counts.
    ``fuzz`` calls it for every answer; the pytest plugin does so in the "fuzz" profile.
    """
    rules = [f"{c.name} / {r.title}" for c in state.trace for r in c.rules if r.fired]
    novelty = sum(1.0 / (1 + fired[rule]) for rule in rules)
    fired.update(rules)
    with contextlib.suppress(Exception):  # outside a Hypothesis test: nothing to steer
        target(novelty, label="rules seldom fired so far")
        for rule in rules:
            event(f"rule fired: {rule}")


def _steer_repeats(state: IntegrationState, redeemed: dict[str, set[str]]) -> None:
    """In a lifecycle, point the search at one customer redeeming again and again:
    "once per customer" written as a limit on something else shows only there."""
    profile = state.session.profile_id
    accepted = state.accepted_coupons or state.accepted_referrals
    if not profile or state.session.state is not SessionState.CLOSED or not accepted:
        return
    closed = redeemed.setdefault(profile, set())
    closed.add(state.session_id)
    with contextlib.suppress(Exception):
        target(float(len(closed)), label="closed redemptions by one profile")


@attrs.define
class _Finding:
    """A distinct failure (its check and kind) as one search saw it: the last failing
    example (after shrinking: Hypothesis' final replay of the smallest), where it was
    first seen, and the largest money at stake seen."""

    failure: _Failure
    replay: tuple[dict[str, Any], ...]
    found_after: int
    stake: Decimal | None = None
    rounding: bool = False
    explain: Callable[[], str] | None = None

    def see(self, failure: _Failure, replay: tuple[dict[str, Any], ...]) -> None:
        self.failure, self.replay = failure, replay
        self.weigh(failure)

    def weigh(self, failure: _Failure) -> None:
        stake = failure.stake
        if stake is not None and (self.stake is None or stake > self.stake):
            self.stake = stake
        self.rounding = failure.amount == WITHIN_ROUNDING

    def violation(self, check: str | None, *, shrunk: bool) -> Violation:
        failure = self.failure
        return Violation(
            check or failure.name,
            failure.message,
            self.replay,
            self.explain() if self.explain is not None else "",
            invariant=None if check is None else failure.name,
            shrunk=shrunk,
            found_after=self.found_after,
            kind=failure.kind or failure.amount,
            stake=self.stake,
            within_rounding=self.rounding,
        )


@attrs.define
class _Outcome:
    """What the searches of one kind (single sessions, or lifecycles) found: distinct
    failures, a rule keeping outside state (a finding of its own), or a property used
    wrongly (bad usage)."""

    findings: dict[_Key, _Finding] = attrs.Factory(dict)
    shrunk: set[_Key] = attrs.Factory(set)
    outside: Violation | None = None
    usage: str | None = None
    examples: int = 0  # examples the last search tried
    unreported: set[tuple[str, str]] = attrs.Factory(set)
    """Distinct failures (check, kind) seen once the check had no room left."""


def _request(session: AnySession) -> dict[str, Any]:
    return {"customerSessionId": SESSION_ID, "customerSession": to_wire(session, exact=True)}


def _outside_finding(
    found_by: str, error: OutsideStateError | str, replay: tuple[dict[str, Any], ...]
) -> Violation:
    message = f"{error}\n(seen by the {found_by!r} check)"
    return Violation(OUTSIDE_STATE, message, replay, shrunk=False)


def _diagnose_flaky(
    name: str,
    failed: tuple[AnySession, _Failure] | None,
    factory: Callable[[], Sandbox],
) -> Violation:
    """A check failed for a session, then passed when Hypothesis tried it again."""
    if failed is None:
        what = (
            f"the {name!r} check gave different verdicts for the same generated session: "
            "something keeps state outside the sandbox"
        )
        return _outside_finding(name, what, ())
    session, error = failed
    try:
        again = [factory().update(SESSION_ID, session) for _ in range(2)]
        first = error.state if error.state is not None else again.pop()
        answers_agree(first, again[0], invariant="deterministic", detail="", session_id=SESSION_ID)
    except OutsideStateError as exc:
        return _outside_finding(name, exc, (_request(session),))
    except SandboxError:
        pass  # not the same answers either way; say what is known
    what = (
        f"{error.name} answered differently for the same session and the same answer: it "
        f"keeps state outside the sandbox (a property must depend only on the state it is "
        f"given; the first time: {error.message})"
    )
    return _outside_finding(name, what, (_request(session),))


def _raise_new(
    failures: list[_Failure],
    outcome: _Outcome,
    excluded: set[_Key],
    raised: set[_Key],
    reported: dict[str, set[str]],
) -> _Failure | None:
    """The failure this example raises, if any: the first whose kind no earlier search
    reported, while its check has room for another distinct kind. Kinds already
    raised in this search keep being raised (Hypothesis replays and shrinks them)."""
    chosen: _Failure | None = None
    for failure in failures:
        key = failure.key
        if key in excluded:
            continue
        if key not in raised:
            kinds = reported.setdefault(failure.name, set())
            if failure.kind not in kinds and len(kinds) >= MAX_FAILURES_PER_CHECK:
                outcome.unreported.add((failure.name, failure.kind))
                continue
            kinds.add(failure.kind)
            raised.add(key)
        if chosen is None:
            chosen = failure
    return chosen


def _session_search(
    checks: tuple[str, ...],
    properties: Mapping[str, Property],
    factory: Callable[[], Sandbox],
    strategy: st.SearchStrategy[AnySession],
    examples: int,
    seed: int | None,
    run: _RunOptions,
) -> _Outcome:
    """Every single-session check in one search per round: each example is evaluated
    once and every check looks at the answer. Failures are told apart by check and kind
    (:func:`signature`); Hypothesis shrinks each as itself. A round ends some examples
    after its first failures, so another round follows with those left out (they pass),
    until a round finds nothing new."""
    outcome = _Outcome()
    excluded: set[_Key] = set()
    reported: dict[str, set[str]] = {}
    for number in range(SESSION_ROUNDS):
        new = _session_round(
            number,
            checks,
            properties,
            factory,
            strategy,
            examples,
            seed,
            run,
            outcome,
            excluded,
            reported,
        )
        excluded |= new
        if not new or outcome.outside is not None or outcome.usage is not None:
            break
        if run.out_of_time():
            break
    return outcome


def _session_round(
    number: int,
    checks: tuple[str, ...],
    properties: Mapping[str, Property],
    factory: Callable[[], Sandbox],
    strategy: st.SearchStrategy[AnySession],
    examples: int,
    seed: int | None,
    run: _RunOptions,
    outcome: _Outcome,
    excluded: set[_Key],
    reported: dict[str, set[str]],
) -> set[_Key]:
    """One search; returns the keys of the distinct failures it raised."""
    raised: set[_Key] = set()
    last: list[tuple[AnySession, _Failure]] = []
    tried = [0]

    @_settings(examples, database=run.database)
    @given(session=strategy)
    def search(session: AnySession) -> None:
        if outcome.outside is not None or outcome.usage is not None:
            return  # this search has found what ends it
        run.tick()
        tried[0] += 1
        try:
            state, failures = _check_session(factory, session, checks, properties)
        except OutsideStateError as exc:
            # Recorded, not raised: the rule's outside state would not fail again on a
            # replay, and Hypothesis would call the test flaky.
            outcome.outside = _outside_finding("sessions", exc, (_request(session),))
            return
        except _PropertyUsageError as exc:
            outcome.usage = str(exc)
            return
        if state is not None:
            _steer(state, run)
        failure = _raise_new(failures, outcome, excluded, raised, reported)
        if failure is None:
            return
        last.append((session, failure))
        replay = (_request(session),)
        found = outcome.findings.get(failure.key)
        if found is None:
            outcome.findings[failure.key] = found = _Finding(failure, replay, tried[0])
            found.weigh(failure)
        else:
            found.see(failure, replay)
        for other in failures:  # the same example's other failures weigh on their kinds
            known = outcome.findings.get(other.key)
            if other is not failure and known is not None and other.key not in excluded:
                known.weigh(other)
        raise _raised_as(failure.key)(failure.message)

    # Each round keeps its failures in the example database under its own key (the
    # rules file and the round), so a failure found once is tried first next time.
    database_key = f"promo-sandbox:{run.key}:sessions:{number}"
    search._hypothesis_internal_database_key = database_key.encode()  # type: ignore[attr-defined]
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    finished = False
    try:
        search()
        finished = True
    except _OutOfTimeError:
        pass
    except Flaky as exc:
        if _timed_out(exc):
            pass  # Hypothesis saw its test stop early: the budget, not the rules
        elif outcome.outside is None and outcome.usage is None:
            failed = last[-1] if last else None
            outcome.outside = _diagnose_flaky("sessions", failed, factory)
        return raised
    except (_CheckFailedError, BaseExceptionGroup):
        finished = True  # each failure was replayed last as its shrunk example
    outcome.examples = tried[0]
    for key in raised:
        found = outcome.findings[key]
        session = next(s for s, f in reversed(last) if f.key == key)
        found.explain = _explainer(factory, session)
        if finished:
            outcome.shrunk.add(key)
    return raised


def _explainer(factory: Callable[[], Sandbox], session: AnySession) -> Callable[[], str]:
    def explain() -> str:
        try:
            return str(factory().update(SESSION_ID, session).explain())
        except SandboxError as exc:
            return f"(the session could not be evaluated: {exc})"

    return explain


def _lifecycle_search(
    factory: Callable[[], Sandbox],
    examples: int,
    seed: int | None,
    *,
    shrink: bool = True,
    properties: Mapping[str, Property] | None = None,
    run: _RunOptions | None = None,
    reported: Iterable[_Key] = (),
) -> _Outcome:
    """Lifecycles checking the invariants and properties after every step. A failure
    whose kind ``reported`` holds (the single-session search reported it, with a smaller
    counterexample) is not raised, so no time goes into shrinking it again.

    A lifecycle search ends some runs after its first failure. Another one follows (with
    what was found left out) only when all it found was within rounding: a larger
    violation must not hide behind a rounding artefact, and a whole second search
    costs as much as the first."""
    outcome = _Outcome()
    excluded = set(reported)
    counts: dict[str, set[str]] = {}
    for number in range(LIFECYCLE_ROUNDS):
        new = _lifecycle_round(
            factory,
            examples,
            seed,
            shrink,
            properties or {},
            run or _RunOptions(),
            outcome,
            excluded,
            counts,
            number,
        )
        excluded |= new
        if not new or outcome.outside is not None or (run is not None and run.out_of_time()):
            break
        if any(key[2] != WITHIN_ROUNDING for key in new):
            break
    return outcome


def _lifecycle_round(
    factory: Callable[[], Sandbox],
    examples: int,
    seed: int | None,
    shrink: bool,
    properties: Mapping[str, Property],
    run: _RunOptions,
    outcome: _Outcome,
    excluded: set[_Key],
    counts: dict[str, set[str]],
    number: int,
) -> set[_Key]:
    from hypothesis.stateful import run_state_machine_as_test

    from strategies._lifecycle import SessionLifecycle

    machines: list[SessionLifecycle] = []
    raised: set[_Key] = set()
    failed_by: dict[int, tuple[_Failure, tuple[dict[str, Any], ...]]] = {}

    class RulesLifecycle(SessionLifecycle):
        user_properties: ClassVar[Mapping[str, Callable[..., object]]] = dict(properties)

        def make_sandbox(self) -> Sandbox:
            run.tick()
            machines.append(self)
            self.redeemed: dict[str, set[str]] = {}
            return factory()

        def sessions(self, sb: Sandbox) -> st.SearchStrategy[Any]:
            return st.one_of(super().sessions(sb), combination_sessions(sb))

        def _check(self, state: IntegrationState) -> None:
            run.tick()
            _steer(state, run)
            _steer_repeats(state, self.redeemed)
            self._same_as_before(state)
            failures: list[_Failure] = []
            try:
                check_state(state)
            except InvariantViolation as exc:
                holds = STATE_INVARIANTS.get(exc.invariant)
                failures.append(
                    _Failure(
                        exc.invariant,
                        signature(state),
                        f"{type(exc).__name__}: {exc}",
                        state,
                        None if holds is None else _invariant_holds(holds),
                    )
                )
            for name, prop in properties.items():
                try:
                    failure = _check_property(name, prop, state, self.sb)
                except _PropertyUsageError as exc:
                    failure = _Failure(name, BAD_USAGE, str(exc), state)
                if failure is not None:
                    failures.append(failure)
            for failure in failures:
                # In a lifecycle, the rules of the step that showed a failure say little:
                # a promise about the whole sandbox, once broken, fails after whatever
                # step comes next. A lifecycle failure is told apart by its amount only.
                failure.kind = ""
            chosen = _raise_new(failures, outcome, excluded, raised, counts)
            if chosen is not None:
                steps = tuple(self.steps)
                failed_by[id(self)] = (chosen, steps)
                found = outcome.findings.get(chosen.key)
                if found is None:
                    outcome.findings[chosen.key] = found = _Finding(chosen, steps, len(machines))
                    found.weigh(chosen)
                    found.explain = _constant(str(state.explain()))
                else:
                    found.see(chosen, steps)
                    found.explain = _constant(str(state.explain()))
                raise _raised_as(chosen.key)(chosen.message)

        def teardown(self) -> None:
            # An invariant of the whole sandbox (limits, usage), an illegal move accepted,
            # a dry run answering differently: failures raised by the steps themselves.
            error = sys.exc_info()[1]
            if (
                isinstance(error, InvariantViolation)
                and not isinstance(error, OutsideStateError)
                and id(self) not in failed_by
            ):
                failure = _Failure(error.invariant, "", f"{type(error).__name__}: {error}")
                steps = tuple(self.steps)
                found = outcome.findings.get(failure.key)
                if failure.key in excluded:
                    return
                raised.add(failure.key)
                if found is None:
                    outcome.findings[failure.key] = _Finding(failure, steps, len(machines))
                else:
                    found.see(failure, steps)

    # run_state_machine_as_test takes no seed of its own: a seeded run forces
    # Hypothesis' seed for the duration (its own mechanism for --hypothesis-seed).
    config = _settings(examples, stateful_step_count=20)
    if not shrink:
        config = settings(config, phases=[Phase.explicit, Phase.generate])
    failure: BaseException | None = None
    import hypothesis.core as hypothesis_core

    forced = hypothesis_core.global_force_seed
    finished = False
    try:
        if seed is not None:
            hypothesis_core.global_force_seed = seed  # type: ignore[assignment]  # typed as None
        run_state_machine_as_test(RulesLifecycle, settings=config)  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer Hypothesis
        finished = True
    except _OutOfTimeError:
        pass
    except (AssertionError, SandboxError, Flaky, _CheckFailedError, BaseExceptionGroup) as exc:
        if not _timed_out(exc):
            failure = exc
            finished = True
    finally:
        hypothesis_core.global_force_seed = forced
    outcome.examples = len(machines)
    # Hypothesis keeps every machine class it ran for good: let go of the answers this
    # one remembered (thousands), or they live, and are torn down, with the process.
    RulesLifecycle.answers_by_path = {}
    caught = RulesLifecycle.__dict__.get("outside_state")
    if caught:
        error, steps = next(iter(caught.values()))
        outcome.outside = _outside_finding("lifecycle", error, tuple(steps))
    elif isinstance(failure, Flaky):
        what = (
            "the same lifecycle steps gave different answers when replayed: a rule keeps "
            "state outside the sandbox"
        )
        steps = tuple(machines[-1].steps) if machines else ()
        outcome.outside = _outside_finding("lifecycle", what, steps)
    machines.clear()
    if finished and shrink:
        outcome.shrunk |= raised
    return raised


def _constant(text: str) -> Callable[[], str]:
    return lambda: text


def fuzz(
    path: str | Path,
    *,
    examples: int = 200,
    seed: int | None = None,
    time_budget: float | None = None,
    database: Any = None,
    checks: Iterable[str] | None = None,
) -> FuzzReport:
    """Fuzz a rules file; see the module docstring.

    ``checks`` names the checks to run (built-in invariants, the file's ``property_*``
    and ``lifecycle``; all of them by default). A property named there is also
    checked after every lifecycle step, so naming it alone still runs the lifecycle.

    ``time_budget`` (seconds) bounds the whole run, shrinking included: once it is
    spent, the search under way ends and what it found is reported as far as it was
    shrunk. ``database`` is a Hypothesis example database (for
    example ``DirectoryBasedExampleDatabase(".hypothesis/examples")``): a failure
    found once is tried first next time. Bad files, and properties with the wrong
    signature or returning no bool, raise :class:`RulesFileError`.
    """
    if type(examples) is not int or examples < 1:
        raise RulesFileError(f"fuzz(examples=...) must be a positive integer, got {examples!r}")
    if time_budget is not None and not (isinstance(time_budget, int | float) and time_budget > 0):
        raise RulesFileError(f"fuzz(time_budget=...) must be seconds > 0, got {time_budget!r}")
    started = time.monotonic()
    factory, properties = load_rules(path)
    run = _RunOptions(
        key=str(Path(path).resolve()),
        database=database,
        deadline=None if time_budget is None else started + time_budget,
    )
    strategy = fuzz_sessions(factory())
    session_checks = (*BUILTIN_CHECKS, *properties)
    with_lifecycle = True
    if checks is not None:
        wanted = [checks] if isinstance(checks, str) else list(checks)
        known = [*session_checks, "lifecycle"]
        unknown = [name for name in wanted if name not in known] or ([] if wanted else [""])
        if unknown:
            raise RulesFileError(
                f"no check named {', '.join(map(repr, unknown))} in {path}; "
                f"its checks are {', '.join(known)}"
            )
        session_checks = tuple(n for n in session_checks if n in wanted)
        properties = {n: p for n, p in properties.items() if n in wanted}
        with_lifecycle = "lifecycle" in wanted or bool(properties)
    if time_budget is not None and with_lifecycle and session_checks:
        run.phase_end = started + time_budget * SESSION_SHARE
    sessions = _Outcome()
    if session_checks:
        sessions = _session_search(
            session_checks, properties, factory, strategy, examples, seed, run
        )
        if sessions.usage is not None:
            raise RulesFileError(f"{path}: {sessions.usage}")
    run.phase_end = None
    lifecycle = _Outcome()
    if with_lifecycle and not run.out_of_time():
        # Once a rule is known to keep outside state, each new session it has not seen
        # fails the lifecycle again and shrinking would go on and on: do not shrink.
        lifecycle = _lifecycle_search(
            factory,
            max(10, examples // 2),
            seed,
            shrink=sessions.outside is None,
            properties=properties,
            run=run,
            reported=_reported_by_sessions(sessions.findings),
        )
    bad_usage = [f for key, f in lifecycle.findings.items() if key[1] == BAD_USAGE]
    if bad_usage:
        raise RulesFileError(f"{path}: {bad_usage[0].failure.message}")
    violations: list[Violation] = []
    outside = sessions.outside or lifecycle.outside
    if outside is not None:
        violations.append(outside)
    for check in session_checks:
        found = [
            (k, f)
            for k, f in sessions.findings.items()
            if k[0] == check and not _outweighed(k, sessions.findings)
        ]
        for key, finding in _ranked(found):
            violations.append(finding.violation(None, shrunk=key in sessions.shrunk))
    for key, finding in _ranked(list(lifecycle.findings.items())):
        violations.append(finding.violation("lifecycle", shrunk=key in lifecycle.shrunk))
    names = (*session_checks, OUTSIDE_STATE, *(("lifecycle",) if with_lifecycle else ()))
    tried = dict.fromkeys(session_checks, sessions.examples)
    firsts: dict[str, int] = {}
    for (name, _, _), finding in sessions.findings.items():
        firsts[name] = min(firsts.get(name, finding.found_after), finding.found_after)
    tried.update(firsts)
    if with_lifecycle:
        found_after = [f.found_after for f in lifecycle.findings.values()]
        tried["lifecycle"] = min(found_after) if found_after else lifecycle.examples
    unreported = Counter(name for name, _ in sessions.unreported)
    if lifecycle.unreported:
        unreported["lifecycle"] = len(lifecycle.unreported)
    return FuzzReport(
        str(path),
        examples,
        seed,
        names,
        violations,
        tried=tried,
        seconds=time.monotonic() - started,
        combinations=dict(run.combinations.most_common()),
        reasons=dict(run.reasons.most_common()),
        out_of_time=run.cut_short,
        unreported=dict(unreported),
    )


def _reported_by_sessions(findings: Iterable[_Key]) -> set[_Key]:
    """What the lifecycle leaves out: per check, the amount classes the single-session
    search reported (a lifecycle failure has no kind, only its amount class), and
    rounding too where a larger failure of the check was reported."""
    left_out = {(name, "", amount) for name, _, amount in findings}
    left_out |= {(name, "", WITHIN_ROUNDING) for name, _, a in left_out if a == OVER_THE_BOUND}
    return left_out


def _outweighed(key: _Key, findings: Mapping[_Key, _Finding]) -> bool:
    """A failure within rounding whose rules also gave more than rounding over the bound:
    the larger one says it all."""
    name, kind, amount = key
    return amount == WITHIN_ROUNDING and (name, kind, OVER_THE_BOUND) in findings


def _ranked(
    found: list[tuple[_Key, _Finding]],
) -> list[tuple[_Key, _Finding]]:
    """Largest money at stake first; failures not about an amount after, as found."""
    return sorted(
        found,
        key=lambda kf: (kf[1].stake is None, -(kf[1].stake or 0), kf[1].found_after),
    )


def fuzz_sessions(sb: Sandbox) -> st.SearchStrategy[AnySession]:
    """The sessions ``fuzz`` submits, open or closed: the rule-aware sessions with the
    sandbox's own codes, and as often sessions built to satisfy several campaigns'
    hints at once (:func:`combination_sessions`), where stacking bugs live."""
    from strategies._lifecycle import inventory_sessions

    states = st.sampled_from((SessionState.OPEN, SessionState.CLOSED))
    return st.one_of(inventory_sessions(sb, state=states), combination_sessions(sb, states=states))


def combination_sessions(
    sb: Sandbox, *, states: st.SearchStrategy[SessionState] | None = None
) -> st.SearchStrategy[AnySession]:
    """Sessions that satisfy the hints of two or three campaigns at once.

    For each campaign picked: one of its coupons (several campaigns' coupons make a V2
    session with ``couponCodes``) or its referral, the attribute values, SKUs and
    categories its conditions compare against, and a total on one of its thresholds
    or a cent either side (the cart priced to land on it). Profiles come from a pool
    of two, so that lifecycles meet the same profile again.
    """
    campaigns = [c for c in sb.campaigns if c.rules]
    if not campaigns:
        return st.nothing()
    pick = st.lists(
        st.sampled_from(campaigns),
        min_size=min(2, len(campaigns)),
        max_size=min(3, len(campaigns)),
        unique_by=lambda c: c.id,
    )
    return _combination(pick, states if states is not None else st.just(SessionState.OPEN))


@st.composite
def _combination(
    draw: st.DrawFn,
    pick: st.SearchStrategy[list[Campaign]],
    states: st.SearchStrategy[SessionState],
) -> AnySession:
    chosen = draw(pick)
    hints = [h for c in chosen for rule in c.rules for cond in rule.conditions for h in cond.hints]
    coupons = [draw(st.sampled_from(sorted(c.coupons))) for c in chosen if c.coupons]
    referrals = [code for c in chosen for code in sorted(c.referrals)]
    referral = draw(st.none() | st.sampled_from(referrals)) if referrals else None
    profile = draw(st.none() | st.sampled_from(("p1", "p2")))
    attributes: dict[str, Any] = {}
    for hint in hints:
        if hint.kind == "attribute" and hint.key is not None:
            attributes[hint.key] = hint.value
    categories = sorted({str(h.value) for h in hints if h.kind == "category"})
    skus = sorted({str(h.value) for h in hints if h.kind == "sku"})
    thresholds = sorted(
        {
            Decimal(h.value) + delta
            for h in hints
            if h.kind in ("total", "number")
            and isinstance(h.value, int | Decimal)
            and not isinstance(h.value, bool)
            and Decimal(0) < Decimal(h.value) < Decimal(100_000)
            for delta in (Decimal("-0.01"), Decimal(0), Decimal("0.01"))
        }
    )
    total = draw(st.sampled_from(thresholds)) if thresholds else Decimal(draw(st.integers(1, 300)))
    lines = [("cat-" + c, c, None) for c in categories] + [(s, None, s) for s in skus]
    items = []
    unit = Decimal("1.00")
    for sku, category, _ in lines:
        items.append(
            CartItem(sku=sku, quantity=draw(st.integers(1, 3)), price=unit, category=category)
        )
    rest = (total - sum((i.line_total for i in items), Decimal(0))).quantize(Decimal("0.01"))
    if rest > 0:
        # The rest in one to three lines, so that returns can take part of it back.
        lines_left = min(draw(st.integers(1, 3)), int(rest * 100))
        share = (rest / lines_left).quantize(Decimal("0.01"), ROUND_DOWN)
        for n in range(lines_left):
            price = share if n < lines_left - 1 else rest - share * (lines_left - 1)
            items.append(CartItem(sku=f"basket-{n + 1}", quantity=1, price=price))
    state = draw(states)
    fields: dict[str, Any] = {
        "profile_id": profile,
        "cart_items": tuple(items),
        "attributes": attributes or None,
        "state": state,
    }
    if len(coupons) > 1:
        return NewCustomerSessionV2(coupon_codes=tuple(coupons), referral_code=referral, **fields)
    return NewCustomerSession(coupon=coupons[0] if coupons else None, referral=referral, **fields)


# ---------------------------------------------------------------------------
# Confirmed replay


def replay(path: str | Path, lines: Iterable[str]) -> FuzzReport:
    """Replay a counterexample (JSONL lines as ``fuzz`` prints them) on a fresh sandbox
    of the rules file, checking the built-in invariants and the file's properties after
    every step. The report has a violation when it still fails, none when it is fixed.

    A line that cannot be replayed (bad JSON, a refused update) is bad input
    (:class:`RulesFileError`), not a verdict.
    """
    from sandbox.invariants import check_sandbox, check_state

    factory, properties = load_rules(path)
    sb = factory()
    steps: list[dict[str, Any]] = []
    checks = ("invariants", *properties)
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = parse_line(text)
            result = read_step(data, number)(sb, False)
        except SandboxError as exc:
            if isinstance(exc, RuleError):
                message = f"line {number}: a rule raised: {exc}"
                violation = Violation("rules_do_not_raise", message, tuple(steps))
                return FuzzReport(str(path), 0, None, checks, [violation])
            raise RulesFileError(f"line {number} cannot be replayed: {exc}") from exc
        steps.append(data)
        if not isinstance(result, IntegrationState):
            continue  # a clock move
        try:
            check_state(result)
            check_sandbox(sb)
        except InvariantViolation as exc:
            violation = Violation(
                "invariants", f"line {number}: {exc}", tuple(steps), result.explain(), exc.invariant
            )
            return FuzzReport(str(path), 0, None, checks, [violation])
        for name, prop in properties.items():
            try:
                held = _verdict(name, prop(result, sb))
            except _PropertyUsageError as exc:
                raise RulesFileError(f"{path}: {exc}") from None
            except Exception as exc:
                held, why = False, f"{name} raised {type(exc).__name__}: {exc}"
            else:
                why = f"{name} returned False"
            if not held:
                violation = Violation(name, f"line {number}: {why}", tuple(steps), result.explain())
                return FuzzReport(str(path), 0, None, checks, [violation])
    return FuzzReport(str(path), 0, None, checks, [])
