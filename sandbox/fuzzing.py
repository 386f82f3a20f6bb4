"""Fuzz a rules file: built-in invariants and the file's own ``property_*`` functions.

A rules file defines ``build()`` returning a :class:`~sandbox.Sandbox` (best:
every example gets a fresh one) or a module-level ``sandbox`` (the file is
then run again for every fresh sandbox), and may define properties:
module-level functions named ``property_*`` taking an IntegrationState and
returning a bool.

``fuzz`` runs one Hypothesis search per check, so each violated check gets
its own shrunk counterexample, then a short lifecycle run (open, close,
cancel, reopen, return) checking the counters. ``python -m sandbox fuzz``
prints :meth:`FuzzReport.render` and exits 1 when there are violations.

>>> report = fuzz("examples/half_off_ok.py", examples=20, seed=1)  # doctest: +SKIP
>>> report.violations
[]
"""

from __future__ import annotations

import contextlib
import runpy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from sandbox.codec import to_wire
from sandbox.core import Sandbox
from sandbox.errors import RuleError, SandboxError
from sandbox.invariants import (
    InvariantViolation,
    deterministic,
    discounts_within_base,
    dry_run_changes_nothing,
    limits_hold,
    one_outcome_per_code,
    rejected_code_triggers_nothing,
    usage_reconciles,
)
from sandbox.models import NewCustomerSession, SessionState
from sandbox.state import IntegrationState

__all__ = ["FuzzReport", "RulesFileError", "Violation", "fuzz", "load_rules"]

Property = Callable[[IntegrationState], bool]
SESSION_ID = "fuzz-1"


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
            if not callable(value):
                raise RulesFileError(
                    f"{file}: {name} must be a function taking an IntegrationState and "
                    f"returning a bool, got {value!r}"
                )
            properties[name] = value
    return factory, properties


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

    ``replay`` is a list of JSONL-ready requests (``{"customerSessionId",
    "customerSession"}`` dicts for ``python -m sandbox eval``, or lifecycle
    steps); ``explain`` is the last answer's ``state.explain()``.
    """

    check: str
    message: str
    replay: tuple[dict[str, Any], ...]
    explain: str = ""

    def render(self) -> str:
        lines = [f"VIOLATED {self.check}", f"  {self.message}".replace("\n", "\n  ")]
        lines.append("  shrunk counterexample (replayable JSON, one request per line):")
        lines.extend(f"    {_json(step)}" for step in self.replay)
        if self.explain:
            lines.append("  explain:")
            lines.extend(f"    {line}" for line in self.explain.splitlines())
        return "\n".join(lines)


@attrs.frozen
class FuzzReport:
    """The outcome of :func:`fuzz`: ``violations`` is empty when every check held."""

    path: str
    examples: int
    seed: int | None
    checks: tuple[str, ...]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        seed = "random" if self.seed is None else str(self.seed)
        lines = [
            f"fuzz {self.path}: {len(self.checks)} checks, {self.examples} examples each, seed {seed}"
        ]
        failed = {v.check for v in self.violations}
        lines.extend(f"  {'FAIL' if check in failed else 'ok  '} {check}" for check in self.checks)
        for violation in self.violations:
            lines.append("")
            lines.append(violation.render())
        lines.append("")
        count = len(self.violations)
        lines.append(
            "no violations"
            if not count
            else f"{count} violation{'s' if count != 1 else ''}; to replay one, save its "
            f"counterexample lines to FILE.jsonl and run `python -m sandbox eval {self.path} FILE.jsonl`"
        )
        return "\n".join(lines)


def _json(value: Any) -> str:
    from sandbox.codec import dumps

    return dumps(value)


# ---------------------------------------------------------------------------
# Searching


class _CheckFailedError(Exception):
    """Raised inside a search; Hypothesis shrinks what raises it."""


class _RuleRaisedError(Exception):
    """A user rule raised. Only the ``rules_do_not_raise`` check reports it, so one
    broken rule gives one violation, not one per invariant."""


_SessionCheck = Callable[[Callable[[], Sandbox], NewCustomerSession], IntegrationState]


def _evaluate(
    factory: Callable[[], Sandbox], session: NewCustomerSession
) -> tuple[Sandbox, IntegrationState]:
    sb = factory()
    try:
        return sb, sb.update(SESSION_ID, session)
    except RuleError as exc:
        raise _RuleRaisedError(f"a rule raised: {exc}") from exc


def _invariant_check(*invariants: Callable[[IntegrationState], None]) -> _SessionCheck:
    def check(factory: Callable[[], Sandbox], session: NewCustomerSession) -> IntegrationState:
        _, state = _evaluate(factory, session)
        for invariant in invariants:
            try:
                invariant(state)
            except InvariantViolation as exc:
                raise _CheckFailedError(str(exc)) from exc
        return state

    return check


def _probe_check(factory: Callable[[], Sandbox], session: NewCustomerSession) -> IntegrationState:
    sb = factory()
    try:
        dry_run_changes_nothing(sb, SESSION_ID, session)
        state = deterministic(sb, session, session_id=SESSION_ID)
    except InvariantViolation as exc:
        raise _CheckFailedError(str(exc)) from exc
    except RuleError as exc:
        raise _RuleRaisedError(f"a rule raised: {exc}") from exc
    return state


def _counters_check(
    factory: Callable[[], Sandbox], session: NewCustomerSession
) -> IntegrationState:
    sb, state = _evaluate(factory, session)
    try:
        limits_hold(sb)
        usage_reconciles(sb)
    except InvariantViolation as exc:
        raise _CheckFailedError(str(exc)) from exc
    return state


def _property_check(name: str, prop: Property) -> _SessionCheck:
    def check(factory: Callable[[], Sandbox], session: NewCustomerSession) -> IntegrationState:
        _, state = _evaluate(factory, session)
        try:
            held = prop(state)
        except Exception as exc:
            raise _CheckFailedError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        if held is not True:
            raise _CheckFailedError(
                f"{name} returned {held!r}: total {state.session.effective_total}, "
                f"total discount {state.total_discount}"
            )
        return state

    return check


def _rules_check(factory: Callable[[], Sandbox], session: NewCustomerSession) -> IntegrationState:
    try:
        return _evaluate(factory, session)[1]
    except _RuleRaisedError as exc:
        raise _CheckFailedError(str(exc)) from exc


BUILTIN_CHECKS: Mapping[str, _SessionCheck] = {
    "rules_do_not_raise": _rules_check,
    "discounts_within_base": _invariant_check(discounts_within_base),
    "one_outcome_per_code": _invariant_check(one_outcome_per_code),
    "rejected_code_triggers_nothing": _invariant_check(rejected_code_triggers_nothing),
    "deterministic_and_dry_runs_change_nothing": _probe_check,
    "limits_hold_and_usage_reconciles": _counters_check,
}


def _settings(examples: int, **more: Any) -> settings:
    return settings(
        max_examples=examples,
        database=None,
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


def _search(
    name: str,
    check: _SessionCheck,
    factory: Callable[[], Sandbox],
    strategy: st.SearchStrategy[NewCustomerSession],
    examples: int,
    seed: int | None,
) -> Violation | None:
    last: list[tuple[NewCustomerSession, str]] = []

    @_settings(examples)
    @given(session=strategy)
    def run(session: NewCustomerSession) -> None:
        try:
            check(factory, session)
        except _RuleRaisedError:
            return  # reported once, by rules_do_not_raise
        except _CheckFailedError as exc:
            # The last failing call is Hypothesis' final replay of the shrunk example.
            last.append((session, str(exc)))
            raise

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    with contextlib.suppress(_CheckFailedError):
        run()
    if not last:
        return None
    session, message = last[-1]
    request = {"customerSessionId": SESSION_ID, "customerSession": to_wire(session, exact=True)}
    return Violation(name, message, (request,), _explain(factory, session))


def _explain(factory: Callable[[], Sandbox], session: NewCustomerSession) -> str:
    try:
        return factory().update(SESSION_ID, session).explain()
    except SandboxError as exc:
        return f"(the session could not be evaluated: {exc})"


def _lifecycle_search(
    factory: Callable[[], Sandbox], examples: int, seed: int | None
) -> Violation | None:
    from hypothesis.stateful import run_state_machine_as_test

    from strategies._lifecycle import SessionLifecycle

    machines: list[SessionLifecycle] = []

    class RulesLifecycle(SessionLifecycle):
        def make_sandbox(self) -> Sandbox:
            machines.append(self)
            return factory()

    # run_state_machine_as_test takes no seed: a seeded run is derandomized instead,
    # so it is reproducible (though the same for every seed).
    config = _settings(examples, stateful_step_count=20)
    config = settings(config, derandomize=seed is not None)
    failure: BaseException | None = None
    try:
        run_state_machine_as_test(RulesLifecycle, settings=config)  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer Hypothesis
    except (AssertionError, SandboxError) as exc:
        failure = exc
    if failure is None or not machines or isinstance(failure, RuleError):
        return None  # a rule that raises is reported once, by rules_do_not_raise
    name = failure.invariant if isinstance(failure, InvariantViolation) else "lifecycle"
    steps = tuple(machines[-1].steps)
    return Violation(f"lifecycle: {name}", f"{type(failure).__name__}: {failure}", steps)


def fuzz(path: str | Path, *, examples: int = 200, seed: int | None = None) -> FuzzReport:
    """Fuzz a rules file; see the module docstring. Bad files raise :class:`RulesFileError`."""
    if type(examples) is not int or examples < 1:
        raise RulesFileError(f"fuzz(examples=...) must be a positive integer, got {examples!r}")
    factory, properties = load_rules(path)
    strategy = fuzz_sessions(factory())
    checks: dict[str, _SessionCheck] = dict(BUILTIN_CHECKS)
    checks.update({name: _property_check(name, prop) for name, prop in properties.items()})
    violations = [
        found
        for name, check in checks.items()
        if (found := _search(name, check, factory, strategy, examples, seed)) is not None
    ]
    lifecycle = _lifecycle_search(factory, max(5, examples // 20), seed)
    if lifecycle is not None:
        violations.append(lifecycle)
    return FuzzReport(str(path), examples, seed, (*checks, "lifecycle"), violations)


def fuzz_sessions(sb: Sandbox) -> st.SearchStrategy[NewCustomerSession]:
    """The sessions ``fuzz`` submits: the sandbox's own codes half the time, open or closed."""
    from strategies._lifecycle import inventory_sessions

    return inventory_sessions(sb, state=st.sampled_from((SessionState.OPEN, SessionState.CLOSED)))
