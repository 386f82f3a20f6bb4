"""The promo-sandbox pytest plugin (entry point ``promo_sandbox``).

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


_COVERAGE = pytest.StashKey[Any]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: Hypothesis' own pytest_configure loads --hypothesis-profile, which must exist by then.
    register_profiles()
    if config.getoption("sandbox_coverage", default=False):
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


@pytest.fixture(scope="session")
def sandbox_factory() -> Callable[..., Sandbox]:
    """A callable building a fresh, empty Sandbox: ``sandbox_factory(now=..., precision=...)``.

    Session-scoped and stateless, so ``@given`` tests may use it: call it
    inside the test body to get a new sandbox per example. It takes exactly
    what ``Sandbox`` takes, ``now`` included: a clock chosen silently here
    would make a test's dates mean something the test does not say.
    """
    from sandbox.core import Sandbox

    return Sandbox


@pytest.fixture
def talon_server() -> Iterator[Callable[..., TalonServer]]:
    """Start a local Talon.One Integration API: ``server = talon_server(rules)``.

    ``rules`` is a rules file path (relative to the working directory), a
    Sandbox, or a function returning one; ``api_key=`` fixes the key (default:
    a random one). The server listens on a free port of 127.0.0.1 in a
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
    with contextlib.ExitStack() as servers:

        def start(rules: Any, *, api_key: str | None = None) -> TalonServer:
            try:
                from sandbox.server import running
            except ImportError as exc:
                pytest.fail(
                    f"talon_server needs the server extra ({(exc.name or '').split('.')[0]} "
                    "is not installed): "
                    "pip install 'promo-sandbox[server]'",
                    pytrace=False,
                )
            return servers.enter_context(running(rules, api_key=api_key))

        yield start


def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    """An effect-by-effect diff for ``==`` between two IntegrationStates."""
    state_module = sys.modules.get("sandbox.state")
    if op != "==" or state_module is None:
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
