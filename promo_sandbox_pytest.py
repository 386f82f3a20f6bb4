"""The promo-sandbox pytest plugin (entry point ``promo_sandbox``).

A top-level module with a name of its own, so that a user's ``sandbox.py`` (which
shadows the library's ``sandbox`` package) cannot stop pytest from starting: the
plugin then says so in one warning and stays out of the way of the user's tests.

- ``sandbox_factory``: a session-scoped fixture returning a callable that
  builds a fresh :class:`~sandbox.Sandbox` (arguments passed through, ``now``
  required as ``Sandbox`` requires it), safe in ``@given`` tests.
- ``talon_server``: a factory starting the local Integration API
  (:mod:`sandbox.server`, the ``server`` extra) for a rules file on a free
  port, stopped when the test ends: ``server = talon_server("rules.py")``
  gives ``server.url``, ``server.api_key`` and the live ``server.sandbox``.
- An effect-by-effect diff when ``assert a == b`` fails on two IntegrationStates.
- ``--sandbox-coverage``: rule coverage over the whole test run (every answer
  of every sandbox: rules fired, the condition that stopped each, the reasons
  produced, and what never happened), printed at the end; with xdist the
  workers' counts are merged.
- ``--sandbox-rules RULES.py`` (or the ``sandbox_rules`` ini option): each of the
  rules file's ``property_*`` functions is collected as a test that runs it over
  generated sessions and lifecycles, as ``python -m sandbox fuzz`` does; the example
  budget is the Hypothesis profile's ``max_examples``, the seed ``--hypothesis-seed``
  (fixed under a derandomized profile such as CI's).
- In the "fuzz" profile, every answer a sandbox gives inside a test steers that
  test's Hypothesis search (``target()``/``event()``) towards rules it has seldom
  fired, so long runs reach the rules short ones never exercise.
- When a test fails, a "promo-sandbox: last evaluation" section shows the last
  request a sandbox evaluated in it, as replayable wire JSON, and its ``explain()``:
  for a Hypothesis test, that is its shrunk example's.
- Hypothesis profiles "dev" (50 examples) and "fuzz" (2000, no deadline), for
  ``--hypothesis-profile=...``; registered only if not already registered,
  and never loaded here.

Only pytest is imported at module level (as Hypothesis' own plugin does), so
collecting a suite that never touches the sandbox costs nothing. Disable with
``-p no:promo_sandbox``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Before anything imports it, so failed assertions in invariants show their values.
pytest.register_assert_rewrite("sandbox.invariants")

if TYPE_CHECKING:
    from sandbox.core import Sandbox
    from sandbox.server import TalonServer
    from sandbox.state import Effect, IntegrationState


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("promo-sandbox")
    group.addoption(
        "--sandbox-coverage",
        action="store_true",
        default=False,
        help="report promo-sandbox rule coverage (rules fired, conditions that failed, "
        "rejection reasons) over the test run",
    )
    group.addoption(
        "--sandbox-rules",
        action="append",
        default=[],
        metavar="RULES.py",
        help="collect the rules file's property_* functions as tests run over generated "
        "sessions and lifecycles (repeat for several files)",
    )
    parser.addini(
        "sandbox_rules",
        type="paths",
        default=[],
        help="rules files whose property_* functions are collected as tests",
    )


_COVERAGE = pytest.StashKey[Any]()
_SHADOWED = pytest.StashKey[str | None]()


def shadowing_module() -> str | None:
    """What the name ``sandbox`` imports when it is not this library (a user's own
    ``sandbox.py`` or package first on ``sys.path``), or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("sandbox")
    except (ImportError, ValueError):
        return "a module that fails to import"
    if spec is None:
        return "nothing (the library is not installed)"
    locations = list(spec.submodule_search_locations or ())
    # The library's package, wherever it is installed from (a checkout, a wheel), keeps
    # the plugin's old import path, sandbox/_pytest_plugin.py: that file tells it apart.
    if any((Path(place) / "_pytest_plugin.py").is_file() for place in locations):
        return None
    return str(spec.origin or (locations[0] if locations else "another module"))


def _shadowed(config: pytest.Config) -> str | None:
    """The one-line reason the plugin is off, or None when the library is importable."""
    return config.stash.get(_SHADOWED, None)


def _library_needed(config: pytest.Config, what: str) -> None:
    reason = _shadowed(config)
    if reason is not None:
        raise pytest.UsageError(f"{what}: {reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: Hypothesis' own pytest_configure loads --hypothesis-profile, which must exist by then.
    register_profiles()
    found = shadowing_module()
    if found is not None:
        reason = (
            f"'sandbox' imports {found}, not the promo-sandbox library, so its pytest plugin "
            "is off for this run (rename that file to use sandbox_factory, talon_server and "
            "--sandbox-rules)"
        )
        config.stash[_SHADOWED] = reason
        config.issue_config_time_warning(pytest.PytestConfigWarning(reason), stacklevel=2)
    if config.getoption("sandbox_coverage", default=False):
        _library_needed(config, "--sandbox-coverage")
        from sandbox.coverage import Coverage

        coverage = Coverage()
        recording = coverage.recording()
        recording.__enter__()
        config.stash[_COVERAGE] = (coverage, recording)


def pytest_sessionfinish(session: pytest.Session) -> None:
    found = session.config.stash.get(_COVERAGE, None)
    if found is None:
        return
    coverage, recording = found
    recording.__exit__(None, None, None)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller merges and reports
        workeroutput["promo_sandbox_coverage"] = coverage.to_json()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: merge a finished worker's coverage into the controller's."""
    found = node.config.stash.get(_COVERAGE, None)
    data = getattr(node, "workeroutput", {}).get("promo_sandbox_coverage")
    if found is not None and data is not None:
        from sandbox.coverage import Coverage

        found[0].merge(Coverage.from_json(data))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(_COVERAGE, None)
    if found is None or getattr(config, "workeroutput", None) is not None:
        return
    terminalreporter.section("promo-sandbox rule coverage")
    terminalreporter.write_line(found[0].report())


# ---------------------------------------------------------------------------
# A rules file's properties as tests


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect, so they apply to these too
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    paths = [Path(p) for p in config.getoption("sandbox_rules", default=[]) or []]
    paths += [Path(p) for p in config.getini("sandbox_rules")]
    if paths:
        _library_needed(config, "--sandbox-rules")
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        if not resolved.is_file():
            raise pytest.UsageError(f"--sandbox-rules: {path} is not a file")
        try:
            nodeid = resolved.relative_to(config.rootpath).as_posix()
        except ValueError:
            nodeid = resolved.as_posix()
        collector = RulesFile.from_parent(session, path=resolved, nodeid=nodeid)
        found = list(collector.collect())
        # Reported as collected, so "collected N items" and the like count them.
        config.hook.pytest_collectreport(
            report=pytest.CollectReport(collector.nodeid, "passed", None, list[Any](found))
        )
        items.extend(found)


class RulesFile(pytest.File):
    """A rules file: one :class:`PropertyItem` per ``property_*`` it defines."""

    def collect(self) -> Iterator[pytest.Item]:
        from sandbox.fuzzing import RulesFileError, load_rules

        try:
            _, properties = load_rules(self.path)
        except RulesFileError as exc:
            # Collected from the command line, not from a test folder: a usage error.
            raise pytest.UsageError(f"--sandbox-rules: {exc}") from None
        for name in properties:
            yield PropertyItem.from_parent(self, name=name)


class PropertyItem(pytest.Item):
    """``fuzz RULES.py --check property_x``, as a test."""

    def runtest(self) -> None:
        from hypothesis import settings

        from sandbox.fuzzing import RulesFileError, fuzz

        current = settings()  # the loaded profile's
        seed = self.config.getoption("hypothesis_seed", default=None)
        if seed is None and current.derandomize:
            seed = 0
        try:
            report = fuzz(
                self.path,
                examples=current.max_examples,
                seed=None if seed is None else int(seed),
                checks=[self.name],
            )
        except RulesFileError as exc:  # a property used wrongly: say so, no traceback
            raise PropertyFailedError(str(exc)) from None
        if report.violations:
            raise PropertyFailedError("\n\n".join(v.render() for v in report.violations))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, PropertyFailedError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class PropertyFailedError(Exception):
    """A rules file's property failed: the message is fuzz's report of it."""


# ---------------------------------------------------------------------------
# The last evaluation of a failing test

_LAST = pytest.StashKey[list[Any]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    core = sys.modules.get("sandbox.core")
    if core is None or _shadowed(item.config):  # nothing imported the library: nothing to watch
        return (yield)
    last: list[Any] = []
    item.stash[_LAST] = last
    steer = _steering()

    def observe(sb: Sandbox, state: IntegrationState) -> None:
        last[:] = [state]
        if steer is not None:
            steer(state)

    sandbox_class = core.Sandbox
    sandbox_class.observers = [*sandbox_class.observers, observe]
    outside = getattr(sys.modules.get("sandbox.invariants"), "OutsideStateError", None)
    if outside is not None:
        outside.latest = None
    try:
        return (yield)
    finally:
        sandbox_class.observers = [o for o in sandbox_class.observers if o is not observe]


def _outside_state_behind(exc: BaseException) -> BaseException | None:
    """When Hypothesis ends a test as flaky and a rule kept state outside the sandbox
    (an OutsideStateError was raised or recorded in the test), that error; else None."""
    errors = sys.modules.get("hypothesis.errors")
    invariants = sys.modules.get("sandbox.invariants")
    if errors is None or invariants is None:
        return None
    chain: list[BaseException] = []
    pending = [exc]
    while pending:  # the exception, its causes and contexts, and a group's members
        current = pending.pop()
        if any(current is e for e in chain):
            continue
        chain.append(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    if not any(isinstance(e, errors.Flaky) for e in chain):
        return None
    found = [e for e in chain if isinstance(e, invariants.OutsideStateError)]
    latest: BaseException | None = invariants.OutsideStateError.latest
    return found[0] if found else latest


def _steering() -> Callable[[IntegrationState], None] | None:
    """In the "fuzz" profile, every answer steers its test's search towards rules the
    test has seldom fired (:func:`sandbox.fuzzing.steer_to_unexercised`)."""
    hypothesis = sys.modules.get("hypothesis")
    if hypothesis is None:
        return None
    current = getattr(hypothesis.settings, "get_current_profile_name", None)
    name = (
        current() if current is not None else getattr(hypothesis.settings, "_current_profile", None)
    )
    if name != "fuzz":
        return None
    from collections import Counter

    from sandbox.fuzzing import steer_to_unexercised

    fired: Counter[str] = Counter()
    return lambda state: steer_to_unexercised(state, fired)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: Any = yield
    if report.when == "call" and report.failed and call.excinfo is not None:
        plain = _outside_state_behind(call.excinfo.value)
        if plain is not None:
            # Hypothesis' flaky-test report would bury the cause: a rule that keeps state
            # outside the sandbox, which this names (a unittest-style state machine's
            # error reaches this hook only, not pytest_runtest_call).
            report.longrepr = (
                f"{type(plain).__name__}: {plain}\n\n(Hypothesis ended this run as flaky: "
                "the same steps answered differently when replayed, because of that rule)"
            )
    last = item.stash.get(_LAST, None)
    # (a PropertyItem's failure is fuzz's report, which shows its counterexample already)
    if report.when == "call" and report.failed and last and not isinstance(item, PropertyItem):
        report.sections.append(("promo-sandbox: last evaluation", _last_evaluation(last[0])))
    return report  # type: ignore[no-any-return]


def _last_evaluation(state: IntegrationState) -> str:
    from sandbox.codec import dumps, to_wire

    try:
        if state.action == "event" and state.event is not None:
            line: dict[str, Any] = {"type": state.event.type}
            if state.session.profile_id:
                line["profileId"] = state.session.profile_id
            if state.event.attributes:
                line["attributes"] = dict(state.event.attributes)
            request = dumps({"trackEvent": line})
        else:
            request = dumps(
                {
                    "customerSessionId": state.session_id,
                    "customerSession": to_wire(state.session, exact=True),
                }
            )
        explained = state.explain()
    except Exception as exc:  # a report must never hide the test's own failure
        return f"(could not be shown: {type(exc).__name__}: {exc})"
    kind = "dry run" if state.dry else ("event" if state.action == "event" else "update")
    return (
        f"the last {kind} a sandbox answered in this test, as one JSONL line for "
        f"`python -m sandbox eval RULES.py FILE.jsonl{' --dry' if state.dry else ''}`:\n"
        f"{request}\n\n{explained}"
    )


def register_profiles() -> None:
    """Register "dev" and "fuzz" unless someone (a conftest) already did."""
    from hypothesis import HealthCheck, settings
    from hypothesis.errors import InvalidArgument

    wanted: dict[str, dict[str, Any]] = {
        "dev": {"max_examples": 50},
        "fuzz": {
            "max_examples": 2000,
            "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow],
        },
    }
    for name, values in wanted.items():
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(name, **values)


def _fail_if_shadowed(config: pytest.Config) -> None:
    reason = _shadowed(config)
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def sandbox_factory(pytestconfig: pytest.Config) -> Callable[..., Sandbox]:
    """A callable building a fresh, empty Sandbox: ``sandbox_factory(now=..., precision=...)``.

    Session-scoped and stateless, so ``@given`` tests may use it: call it
    inside the test body to get a new sandbox per example. It takes exactly
    what ``Sandbox`` takes, ``now`` included: a clock chosen silently here
    would make a test's dates mean something the test does not say.
    """
    _fail_if_shadowed(pytestconfig)
    from sandbox.core import Sandbox

    return Sandbox


@pytest.fixture
def talon_server(pytestconfig: pytest.Config) -> Iterator[Callable[..., TalonServer]]:
    """Start a local Talon.One Integration API: ``server = talon_server(rules)``.

    ``rules`` is a rules file path (relative to the working directory), a
    Sandbox, or a function returning one; ``api_key=`` fixes the key (default:
    a random one) and ``max_body=`` the largest request body in bytes (default
    1 MiB; a larger one is answered 413). The server listens on a free port of 127.0.0.1 in a
    background thread and is stopped when the test ends. The returned
    :class:`~sandbox.server.TalonServer` has ``url`` (for the SDK's
    ``Configuration(host=...)``), ``api_key`` (sent as ``ApiKey-v1``),
    ``headers`` and ``sandbox``, the live Sandbox, to assert on counters::

        def test_checkout(talon_server):
            server = talon_server("tests/rules.py")
            configuration = talon_one.Configuration(host=server.url)
            configuration.api_key["api_key_v1"] = server.api_key
            configuration.api_key_prefix["api_key_v1"] = "ApiKey-v1"
            ...  # the integration's own code, then:
            assert server.sandbox.get_coupon("XMAS-2021").usage_counter == 1

    Call it more than once for several servers. Needs the ``server`` extra.
    """
    _fail_if_shadowed(pytestconfig)
    with contextlib.ExitStack() as servers:

        def start(
            rules: Any, *, api_key: str | None = None, max_body: int | None = None
        ) -> TalonServer:
            try:
                from sandbox.server import MAX_BODY, running
            except ImportError as exc:
                pytest.fail(
                    f"talon_server needs the server extra ({(exc.name or '').split('.')[0]} "
                    "is not installed): "
                    "pip install 'promo-sandbox[server]'",
                    pytrace=False,
                )
            limit = MAX_BODY if max_body is None else max_body
            return servers.enter_context(running(rules, api_key=api_key, max_body=limit))

        yield start


def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    """An effect-by-effect diff for ``==`` between two IntegrationStates."""
    state_module = sys.modules.get("sandbox.state")
    if op != "==" or state_module is None or (config is not None and _shadowed(config)):
        # If sandbox.state was never imported, neither side can be one of ours.
        return None
    cls = state_module.IntegrationState
    if not (isinstance(left, cls) and isinstance(right, cls)):
        return None
    return integration_state_diff(left, right)


def integration_state_diff(left: IntegrationState, right: IntegrationState) -> list[str]:
    """Lines naming the effects only on the left, only on the right, and changed."""
    lines = [f"IntegrationState mismatch (session {left.session_id!r} vs {right.session_id!r}):"]
    pending_right = list(right.effects)
    only_left: list[Effect] = []
    changed: list[tuple[Effect, Effect]] = []
    for effect in left.effects:
        if effect in pending_right:
            pending_right.remove(effect)
            continue
        twin = next((r for r in pending_right if _key(r) == _key(effect)), None)
        if twin is None:
            only_left.append(effect)
        else:
            pending_right.remove(twin)
            changed.append((effect, twin))
    lines.extend(f"only left: {e}" for e in only_left)
    lines.extend(f"only right: {e}" for e in pending_right)
    for a, b in changed:
        lines.append(
            f"changed: {a.effect_type.value} {a.name or a.value!r} [campaign {a.campaign_id}]"
        )
        for prop in sorted(set(a.props) | set(b.props)):
            before, after = a.props.get(prop, "<absent>"), b.props.get(prop, "<absent>")
            if before != after:
                lines.append(f"  props.{prop}: {before!r} != {after!r}")
        for field in ("rule_index", "rule_name", "triggered_by_coupon", "condition_index"):
            before, after = getattr(a, field), getattr(b, field)
            if before != after:
                lines.append(f"  {field}: {before!r} != {after!r}")
    if left.effects == right.effects:
        lines.append("effects: equal")
    if left.session != right.session:
        lines.append(f"session: {left.session!r} != {right.session!r}")
    if left.rule_failure_reasons != right.rule_failure_reasons:
        lines.append("ruleFailureReasons differ:")
        lines.extend(f"  left: {r.to_wire()}" for r in left.rule_failure_reasons)
        lines.extend(f"  right: {r.to_wire()}" for r in right.rule_failure_reasons)
    return lines


def _key(effect: Effect) -> tuple[Any, ...]:
    """What makes two effects "the same effect, with changed props"."""
    return (effect.effect_type, effect.campaign_id, effect.rule_index, effect.name)
