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

``fuzz`` runs one Hypothesis search per check, so each violated check gets
its own shrunk counterexample, then a lifecycle run (half as many runs
as examples, each up to 20 steps: orders open and closed, returning
customers, close, cancel, reopen, return, the clock moving) checking the
counters and the properties after every step. A rule whose answer depends on
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
    """One violated check with its shrunk counterexample.

    ``check`` is one of the report's ``checks``; ``invariant`` names what
    broke inside it when the check covers several (the lifecycle's
    ``dry_run_matches_update``, say). ``replay`` is a list of JSONL-ready
    requests (``{"customerSessionId", "customerSession"}`` dicts for
    ``python -m sandbox eval``, or lifecycle steps); ``explain`` is the last
    answer's ``state.explain()``. ``shrunk`` is False for a finding recorded as
    first seen (a rule keeping outside state cannot be shrunk reliably).
    """

    check: str
    message: str
    replay: tuple[dict[str, Any], ...]
    explain: str = ""
    invariant: str | None = None
    shrunk: bool = True
    found_after: int | None = None
    """How many generated examples the search tried until this first failed."""

    def render(self) -> str:
        head = f"VIOLATED {self.check}" + (f": {self.invariant}" if self.invariant else "")
        lines = [head, f"  {self.message}".replace("\n", "\n  ")]
        if self.replay:
            kind = "shrunk counterexample" if self.shrunk else "counterexample"
            lines.append(f"  {kind} (replayable JSON, one request per line):")
            lines.extend(f"    {_json(step)}" for step in self.replay)
        if self.explain:
            lines.append("  explain:")
            lines.extend(f"    {line}" for line in self.explain.splitlines())
        return "\n".join(lines)


@attrs.frozen
class FuzzReport:
    """The outcome of :func:`fuzz`: ``violations`` is empty when every check held.

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
    """Per violated check, the file its counterexample was saved to (by the CLI)."""

    @property
    def ok(self) -> bool:
        return not self.violations

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
        failed = {v.check for v in self.violations}
        lines.extend(f"  {'FAIL' if check in failed else 'ok  '} {check}" for check in self.checks)
        for violation in self.violations:
            lines.append("")
            lines.append(violation.render())
            replay = self.replay_files.get(violation.check)
            if replay:
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
        lines.append(
            "no violations"
            if not count
            else f"{count} violation{'s' if count != 1 else ''}; to replay one, save its "
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
                }
                for v in self.violations
            ],
            "tried": self.tried,
            "seconds": round(self.seconds, 3),
            "combinations": self.combinations,
            "reasons": self.reasons,
            "outOfTime": self.out_of_time,
            "replayFiles": self.replay_files,
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
                )
                for v in data["violations"]
            ],
            dict(data.get("tried", {})),
            data.get("seconds", 0.0),
            dict(data.get("combinations", {})),
            dict(data.get("reasons", {})),
            data.get("outOfTime", False),
            dict(data.get("replayFiles", {})),
        )

    def junit_xml(self) -> str:
        """JUnit XML: one test case per check, a failure element for a violated one."""
        from xml.etree import ElementTree as ET

        failed = {v.check: v for v in self.violations}
        suite = ET.Element(
            "testsuite",
            name=f"promo-sandbox fuzz {self.path}",
            tests=str(len(self.checks)),
            failures=str(len({v.check for v in self.violations})),
            errors="0",
            time=f"{self.seconds:.3f}",
        )
        for check in self.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"fuzz.{Path(self.path).stem}", name=check
            )
            violation = failed.get(check)
            if violation is not None:
                failure = ET.SubElement(
                    case, "failure", message=violation.message.splitlines()[0][:500]
                )
                failure.text = violation.render()
        text: str = ET.tostring(suite, encoding="unicode", xml_declaration=True)
        return text


def _json(value: Any) -> str:
    from sandbox.codec import dumps

    return dumps(value)


# ---------------------------------------------------------------------------
# Searching


class _CheckFailedError(Exception):
    """Raised inside a search; Hypothesis shrinks what raises it."""

    def __init__(self, message: str, state: IntegrationState | None = None) -> None:
        super().__init__(message)
        self.state = state


class _RuleRaisedError(Exception):
    """A user rule raised. Only the ``rules_do_not_raise`` check reports it, so one
    broken rule gives one violation, not one per invariant."""


class _PropertyUsageError(Exception):
    """A property returned something that is not a verdict: bad usage, not a violation."""


_SessionCheck = Callable[[Callable[[], Sandbox], AnySession], IntegrationState]


def _evaluate(
    factory: Callable[[], Sandbox], session: AnySession
) -> tuple[Sandbox, IntegrationState]:
    sb = factory()
    try:
        return sb, sb.update(SESSION_ID, session)
    except RuleError as exc:
        raise _RuleRaisedError(f"a rule raised: {exc}") from exc


def _invariant_check(*invariants: Callable[[IntegrationState], None]) -> _SessionCheck:
    def check(factory: Callable[[], Sandbox], session: AnySession) -> IntegrationState:
        _, state = _evaluate(factory, session)
        for invariant in invariants:
            try:
                invariant(state)
            except InvariantViolation as exc:
                raise _CheckFailedError(str(exc), state) from exc
        return state

    return check


def _probe_check(factory: Callable[[], Sandbox], session: AnySession) -> IntegrationState:
    sb = factory()
    try:
        dry = dry_run_changes_nothing(sb, SESSION_ID, session)
        state = deterministic(sb, session, session_id=SESSION_ID)
        # A rule that remembers what it saw answers the first evaluation differently
        # from the later ones, which then agree: compare the first one too.
        if dry is not None:
            answers_agree(
                dry,
                state,
                invariant="deterministic",
                detail="two dry evaluations of the same session differ",
                session_id=SESSION_ID,
            )
    except OutsideStateError:
        raise
    except InvariantViolation as exc:
        raise _CheckFailedError(str(exc)) from exc
    except RuleError as exc:
        raise _RuleRaisedError(f"a rule raised: {exc}") from exc
    return state


def _counters_check(factory: Callable[[], Sandbox], session: AnySession) -> IntegrationState:
    sb, state = _evaluate(factory, session)
    try:
        limits_hold(sb)
        usage_reconciles(sb)
    except InvariantViolation as exc:
        raise _CheckFailedError(str(exc), state) from exc
    return state


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


def _property_check(name: str, prop: Property) -> _SessionCheck:
    def check(factory: Callable[[], Sandbox], session: AnySession) -> IntegrationState:
        sb, state = _evaluate(factory, session)
        try:
            held = prop(state, sb)
        except Exception as exc:
            raise _CheckFailedError(f"{name} raised {type(exc).__name__}: {exc}", state) from exc
        if not _verdict(name, held):
            raise _CheckFailedError(
                f"{name} returned False: total {state.session.effective_total}, "
                f"total discount {state.total_discount}",
                state,
            )
        return state

    return check


def _rules_check(factory: Callable[[], Sandbox], session: AnySession) -> IntegrationState:
    try:
        return _evaluate(factory, session)[1]
    except _RuleRaisedError as exc:
        raise _CheckFailedError(str(exc)) from exc


BUILTIN_CHECKS: Mapping[str, _SessionCheck] = {
    # First: a rule that remembers what it saw shows it only on a session it has
    # not seen yet, and every later search submits the same sessions again.
    "deterministic_and_dry_runs_change_nothing": _probe_check,
    "rules_do_not_raise": _rules_check,
    "discounts_within_base": _invariant_check(discounts_within_base),
    "one_outcome_per_code": _invariant_check(one_outcome_per_code),
    "rejected_code_triggers_nothing": _invariant_check(rejected_code_triggers_nothing),
    "limits_hold_and_usage_reconciles": _counters_check,
}


def _settings(examples: int, *, database: Any = None, **more: Any) -> settings:
    return settings(
        max_examples=examples,
        database=database,
        derandomize=False,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        # The explain phase costs more than the search here, and the report explains itself.
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
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
    combinations: Counter[str] = attrs.Factory(Counter)
    reasons: Counter[str] = attrs.Factory(Counter)
    fired: Counter[str] = attrs.Factory(Counter)  # "campaign / rule" -> times fired
    sessions: int = 0

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


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
class _Outcome:
    """What one search found: a violation of its check, a rule keeping outside
    state (a finding of its own), or a property used wrongly (bad usage)."""

    violation: Violation | None = None
    outside: Violation | None = None
    usage: str | None = None
    examples: int = 0  # sessions tried before the first failure (or in all)


def _request(session: AnySession) -> dict[str, Any]:
    return {"customerSessionId": SESSION_ID, "customerSession": to_wire(session, exact=True)}


def _outside_finding(
    found_by: str, error: OutsideStateError | str, replay: tuple[dict[str, Any], ...]
) -> Violation:
    message = f"{error}\n(seen by the {found_by!r} check)"
    return Violation(OUTSIDE_STATE, message, replay, shrunk=False)


def _diagnose_flaky(
    name: str,
    failed: tuple[AnySession, _CheckFailedError] | None,
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
        f"{name} answered differently for the same session and the same answer: it keeps "
        f"state outside the sandbox (a property must depend only on the state it is given; "
        f"the first time: {error})"
    )
    return _outside_finding(name, what, (_request(session),))


def _search(
    name: str,
    check: _SessionCheck,
    factory: Callable[[], Sandbox],
    strategy: st.SearchStrategy[AnySession],
    examples: int,
    seed: int | None,
    run_options: _RunOptions,
) -> _Outcome:
    last: list[tuple[AnySession, _CheckFailedError]] = []
    outcome = _Outcome()
    tried = [0]
    first_failure: list[int] = []

    @_settings(examples, database=run_options.database)
    @given(session=strategy)
    def run(session: AnySession) -> None:
        if outcome.outside is not None or outcome.usage is not None:
            return  # this search has found what ends it
        if run_options.out_of_time():
            return  # the time budget is spent: the rest of the examples pass at once
        tried[0] += 1
        try:
            state = check(factory, session)
        except _CheckFailedError as exc:
            if not first_failure:
                first_failure.append(tried[0])
            if exc.state is not None:
                _steer(exc.state, run_options)
            last.append((session, exc))
            raise
        except _RuleRaisedError:
            return  # reported once, by rules_do_not_raise
        except OutsideStateError as exc:
            # Recorded, not raised: the rule's outside state would not fail again on a
            # replay, and Hypothesis would call the test flaky.
            outcome.outside = _outside_finding(name, exc, (_request(session),))
        except _PropertyUsageError as exc:
            outcome.usage = str(exc)
        else:
            _steer(state, run_options)

    # Each search keeps its failures in the example database under its own key (the
    # rules file and the check), so a failure found once is tried first next time.
    run._hypothesis_internal_database_key = f"promo-sandbox:{run_options.key}:{name}".encode()  # type: ignore[attr-defined]
    if seed is not None:
        run = hypothesis_seed(seed)(run)
    try:
        run()
    except _CheckFailedError:
        pass
    except Flaky:
        if outcome.outside is None and outcome.usage is None:
            outcome.outside = _diagnose_flaky(name, last[-1] if last else None, factory)
        return outcome
    outcome.examples = first_failure[0] if first_failure else tried[0]
    if last:
        # The last failing call is Hypothesis' final replay of the shrunk example.
        session, error = last[-1]
        outcome.violation = Violation(
            name,
            str(error),
            (_request(session),),
            _explain(factory, session),
            found_after=outcome.examples,
        )
    return outcome


def _explain(factory: Callable[[], Sandbox], session: AnySession) -> str:
    try:
        return factory().update(SESSION_ID, session).explain()
    except SandboxError as exc:
        return f"(the session could not be evaluated: {exc})"


def _lifecycle_search(
    factory: Callable[[], Sandbox],
    examples: int,
    seed: int | None,
    *,
    shrink: bool = True,
    properties: Mapping[str, Property] | None = None,
    run: _RunOptions | None = None,
) -> _Outcome:
    from hypothesis.stateful import run_state_machine_as_test

    from strategies._lifecycle import SessionLifecycle

    machines: list[SessionLifecycle] = []

    first_failure: list[int] = []

    class RulesLifecycle(SessionLifecycle):
        user_properties: ClassVar[Mapping[str, Callable[..., object]]] = dict(properties or {})

        def make_sandbox(self) -> Sandbox:
            machines.append(self)
            self.redeemed: dict[str, set[str]] = {}
            return factory()

        def sessions(self, sb: Sandbox) -> st.SearchStrategy[Any]:
            return st.one_of(super().sessions(sb), combination_sessions(sb))

        def _check(self, state: IntegrationState) -> None:
            if run is not None:
                _steer(state, run)
                _steer_repeats(state, self.redeemed)
            try:
                super()._check(state)
            except InvariantViolation:
                if not first_failure:
                    first_failure.append(len(machines))
                raise

    # run_state_machine_as_test takes no seed of its own: a seeded run forces
    # Hypothesis' seed for the duration (its own mechanism for --hypothesis-seed).
    config = _settings(examples, stateful_step_count=20)
    if not shrink:
        config = settings(config, phases=[Phase.explicit, Phase.generate])
    failure: BaseException | None = None
    import hypothesis.core as hypothesis_core

    forced = hypothesis_core.global_force_seed
    try:
        if seed is not None:
            hypothesis_core.global_force_seed = seed  # type: ignore[assignment]  # typed as None
        run_state_machine_as_test(RulesLifecycle, settings=config)  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer Hypothesis
    except (AssertionError, SandboxError, Flaky) as exc:
        failure = exc
    finally:
        hypothesis_core.global_force_seed = forced
    outcome = _Outcome()
    outcome.examples = first_failure[0] if first_failure else len(machines)
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
    elif failure is not None and machines and not isinstance(failure, RuleError):
        # (a rule that raises is reported once, by rules_do_not_raise)
        name = failure.invariant if isinstance(failure, InvariantViolation) else None
        steps = tuple(machines[-1].steps)
        outcome.violation = Violation(
            "lifecycle",
            f"{type(failure).__name__}: {failure}",
            steps,
            invariant=name,
            found_after=outcome.examples,
        )
    return outcome


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

    ``time_budget`` (seconds) ends the run early: once it is spent, the remaining
    examples pass at once. ``database`` is a Hypothesis example database (for
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
    session_checks: dict[str, _SessionCheck] = dict(BUILTIN_CHECKS)
    session_checks.update({name: _property_check(name, prop) for name, prop in properties.items()})
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
        session_checks = {n: c for n, c in session_checks.items() if n in wanted}
        properties = {n: p for n, p in properties.items() if n in wanted}
        with_lifecycle = "lifecycle" in wanted or bool(properties)
    outcomes: dict[str, _Outcome] = {}
    for name, check in session_checks.items():
        outcome = _search(name, check, factory, strategy, examples, seed, run)
        if outcome.usage is not None:
            raise RulesFileError(f"{path}: {outcome.usage}")
        outcomes[name] = outcome
    if with_lifecycle:
        # Once a rule is known to keep outside state, each new session it has not seen
        # fails the lifecycle again and shrinking would go on and on: do not shrink.
        known_outside = any(o.outside is not None for o in outcomes.values())
        outcomes["lifecycle"] = _lifecycle_search(
            factory,
            max(10, examples // 2),
            seed,
            shrink=not known_outside,
            properties=properties,
            run=run,
        )
    # One rule keeping outside state makes every check flaky: report it once, first.
    outside = next((o.outside for o in outcomes.values() if o.outside is not None), None)
    violations = [o.violation for o in outcomes.values() if o.violation is not None]
    failed = {v.check for v in violations}
    lifecycle = outcomes["lifecycle"].violation if with_lifecycle else None
    if lifecycle is not None and lifecycle.invariant in failed:
        # A property a single session already breaks is reported once, with that
        # smaller counterexample; the lifecycle reports what only a lifecycle shows.
        violations.remove(lifecycle)
    if outside is not None:
        violations.insert(0, outside)
    names = (*session_checks, OUTSIDE_STATE, *(("lifecycle",) if with_lifecycle else ()))
    tried = {name: o.examples for name, o in outcomes.items()}
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
        out_of_time=run.out_of_time(),
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
