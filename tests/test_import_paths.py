"""The documented imports: ``sandbox.strategies`` beside the top-level ``strategies``,
and a light ``import sandbox`` (no Hypothesis, no matplotlib)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import strategies
from sandbox import strategies as documented


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )


def test_import_sandbox_loads_neither_hypothesis_nor_matplotlib() -> None:
    result = run_python(
        "import sys, sandbox, sandbox.display, sandbox.plots\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'hypothesis', 'matplotlib', 'numpy'})\n"
        "assert not heavy, heavy"
    )
    assert result.returncode == 0, result.stderr


def test_sandbox_strategies_offers_every_name_of_strategies_as_the_same_object() -> None:
    assert documented.__all__ == strategies.__all__
    for name in strategies.__all__:
        assert getattr(documented, name) is getattr(strategies, name), name


def test_from_type_is_registered_by_importing_sandbox_strategies_alone() -> None:
    result = run_python(
        "import sys\n"
        "from hypothesis import given, settings, HealthCheck, strategies as st\n"
        "from sandbox import NewCustomerSession, CartItem\n"
        "import sandbox.strategies\n"
        "assert 'strategies' not in sys.modules, 'the top-level name was left taken'\n"
        "seen = []\n"
        "@settings(max_examples=5, database=None, suppress_health_check=list(HealthCheck))\n"
        "@given(st.from_type(NewCustomerSession), st.from_type(CartItem))\n"
        "def check(session, item):\n"
        "    seen.append((type(session).__name__, type(item).__name__))\n"
        "check()\n"
        "assert set(seen) == {('NewCustomerSession', 'CartItem')}, seen\n"
    )
    assert result.returncode == 0, result.stderr


USERS_OWN_STRATEGIES = """
from hypothesis import strategies as st

MINE = st.just("mine")
"""

USES_BOTH_OWN_FIRST = """
from hypothesis import HealthCheck, given, settings, strategies as st

from strategies import MINE
from sandbox import NewCustomerSession
from sandbox.strategies import SessionLifecycle, valid_sessions


@settings(max_examples=5, suppress_health_check=list(HealthCheck))
@given(MINE, st.from_type(NewCustomerSession))
def test_own_and_library_strategies_side_by_side(mine, session):
    assert mine == "mine"
    assert isinstance(session, NewCustomerSession)


@settings(max_examples=5, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_valid_sessions_with_the_plugin_fixture(sandbox_factory, data):
    sb = sandbox_factory(now="2026-12-01T10:00:00Z")
    sb.campaign("C").coupon("CODE-1")
    session = data.draw(valid_sessions(sb))
    assert sb.update("s", session, dry=True).session == session
"""

USES_BOTH_LIBRARY_FIRST = """
from sandbox.strategies import sessions
from strategies import MINE


def test_own_module_still_wins_the_plain_name():
    import strategies

    assert strategies.MINE is MINE
    assert not hasattr(strategies, "valid_sessions")
    assert sessions().example() is not None
"""


def test_a_users_own_tests_strategies_py_does_not_break_the_documented_import(
    pytester: pytest.Pytester,
) -> None:
    tests = pytester.mkdir("tests")
    (tests / "strategies.py").write_text(USERS_OWN_STRATEGIES)
    (tests / "test_a_library_first.py").write_text(USES_BOTH_LIBRARY_FIRST)
    (tests / "test_b_own_first.py").write_text(USES_BOTH_OWN_FIRST)
    # A subprocess: this process has the real `strategies` imported already.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark", "-q")
    result.assert_outcomes(passed=3)
