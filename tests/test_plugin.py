"""The promo_sandbox pytest plugin, run through pytester."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from sandbox import DefinitionError, Sandbox

FIXTURE_IN_GIVEN = """
from hypothesis import given, strategies as st

@given(st.integers(min_value=0, max_value=4))
def test_fresh_sandbox_per_example(sandbox_factory, precision):
    sb = sandbox_factory(now="2026-12-01T10:00:00Z", precision=precision)
    assert sb.settings.precision == precision
    assert not sb.sessions
    sb.update("s1", {"profileId": "p1", "total": 10})
    assert list(sb.sessions) == ["s1"]
"""

FAILING_COMPARISON = """
from sandbox import Sandbox, conditions as c, effects as e

def build(percent):
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    promo = sb.campaign("Promo")
    promo.coupon("SAVE")
    promo.rule("off", when=[c.coupon_valid], then=[e.set_discount("off", percent=percent)])
    promo.rule("hello", when=[], then=[e.show_notification("hi", "hello")])
    return sb

def test_states_differ():
    session = {"profileId": "p1", "coupon": "SAVE", "total": 100}
    ten = build(10).update("s1", session)
    twenty = build(20).update("s1", session)
    assert ten == twenty
"""


def test_fixture_works_in_given_without_health_check_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FIXTURE_IN_GIVEN)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(passed=1)
    assert "FailedHealthCheck" not in result.stdout.str()


def test_failed_equality_shows_effect_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING_COMPARISON)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*IntegrationState mismatch*",
            "*changed: setDiscount 'off' ?campaign 1?",
            "*props.value: Decimal('10.00') != Decimal('20.00')",
        ]
    )
    assert "only left" not in result.stdout.str()


def test_only_left_and_only_right_effects_are_named() -> None:
    from promo_sandbox_pytest import pytest_assertrepr_compare
    from sandbox import Sandbox
    from sandbox import conditions as c
    from sandbox import effects as e

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    promo = sb.campaign("Promo")
    promo.coupon("SAVE")
    promo.rule("off", when=[c.coupon_valid], then=[e.set_discount("off", 5)])
    with_coupon = sb.update("a", {"profileId": "p1", "coupon": "SAVE", "total": 50}, dry=True)
    without = sb.update("a", {"profileId": "p1", "total": 50}, dry=True)
    lines = pytest_assertrepr_compare(None, "==", with_coupon, without)  # type: ignore[arg-type]
    assert lines is not None
    text = "\n".join(lines)
    assert "only left: acceptCoupon(value=SAVE)" in text
    assert "only left: setDiscount(name=off, value=5" in text
    assert "only right" not in text
    assert pytest_assertrepr_compare(None, "==", with_coupon, 1) is None  # type: ignore[arg-type]
    assert pytest_assertrepr_compare(None, "!=", with_coupon, without) is None  # type: ignore[arg-type]


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FIXTURE_IN_GIVEN + FAILING_COMPARISON)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:promo_sandbox"
    )
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sandbox_factory' not found*"])
    assert "IntegrationState mismatch" not in result.stdout.str()


def test_profiles_registered_for_the_command_line(pytester: pytest.Pytester) -> None:
    # A subprocess: loading a profile is global, it must not leak into this run.
    pytester.makepyfile(
        """
        from hypothesis import HealthCheck, settings

        def test_fuzz_profile_is_active():
            assert settings.get_current_profile_name() == "fuzz"
            assert settings.default.max_examples == 2000
            assert settings.default.deadline is None
            assert HealthCheck.too_slow in settings.default.suppress_health_check
            assert settings.get_profile("dev").max_examples == 50
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "--hypothesis-profile=fuzz"
    )
    result.assert_outcomes(passed=1)


def test_the_factory_requires_a_clock_exactly_as_sandbox_does(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    with pytest.raises(DefinitionError) as without_clock:
        Sandbox()
    with pytest.raises(DefinitionError) as from_factory:
        sandbox_factory(precision=2)
    assert str(from_factory.value) == str(without_clock.value)
    assert "Sandbox(now=...) is required" in str(from_factory.value)
    sb = sandbox_factory("2026-12-01T10:00:00Z", precision=3)
    assert (sb.now.isoformat(), sb.settings.precision) == ("2026-12-01T10:00:00+00:00", 3)


# ---------------------------------------------------------------------------
# A rules file's properties collected as tests, and a failing test's last evaluation

RULES_WITH_PROPERTIES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    big = sb.campaign("Big basket")
    big.rule("10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big", 10)])
    return sb

def property_discount_at_most_ten(state):
    return state.total_discount <= 10

def property_no_discount_under_150(state):
    # the team's (wrong) belief: the threshold is 150
    return state.session.effective_total >= 150 or state.total_discount == 0
"""


def test_sandbox_rules_collects_each_property_as_a_test_that_fails_when_the_property_does(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(rules=RULES_WITH_PROPERTIES)
    result = pytester.runpytest(
        "--sandbox-rules", "rules.py", "-p", "no:cacheprovider", "-p", "no:benchmark", "-v"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rules.py::property_discount_at_most_ten PASSED*",
            "*rules.py::property_no_discount_under_150 FAILED*",
            "*VIOLATED property_no_discount_under_150*",
            "*shrunk counterexample (replayable JSON*",
            '*{"customerSessionId": *',
            "*rule 0 '10 off from 100': fired*",
        ]
    )


def test_sandbox_rules_from_the_ini_file_and_k_selects_among_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(rules=RULES_WITH_PROPERTIES)
    pytester.makeini("[pytest]\nsandbox_rules = rules.py\n")
    result = pytester.runpytest("-k", "at_most_ten", "-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(passed=1, deselected=1)


def test_sandbox_rules_names_a_missing_or_broken_file(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--sandbox-rules", "nowhere.py", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sandbox-rules: nowhere.py is not a file*"])
    pytester.makepyfile(broken="x = 1\n")
    result = pytester.runpytest("--sandbox-rules", "broken.py", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    result.stderr.fnmatch_lines(["*--sandbox-rules: *broken.py*"])


FAILING_GIVEN_TEST = """
from hypothesis import given, settings
from sandbox import Sandbox, conditions as c, effects as e
from strategies import sessions

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Big").rule(
        "10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big", 10)]
    )
    return sb

@settings(max_examples=100, database=None, derandomize=True)
@given(sessions(build()))
def test_discount_at_most_five_percent(s):
    state = build().update("s1", s, dry=True)
    assert state.total_discount * 20 <= s.effective_total
"""


def test_a_failing_test_shows_its_last_evaluation_as_replayable_json_and_explain(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(FAILING_GIVEN_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    section = text[text.index("promo-sandbox: last evaluation") :]
    line = next(x for x in section.splitlines() if x.startswith('{"customerSessionId"'))
    request = json.loads(line, parse_float=Decimal)
    # The shrunk example: 10 off breaks 5% on every total from 100 to 199.99, and
    # Hypothesis shrinks the total (or the cart) to the smallest, the threshold.
    session = request["customerSession"]
    totals = [session.get("total")] + [
        i["price"] * i["quantity"] for i in session.get("cartItems", [])
    ]
    assert sum(t for t in totals if t is not None) == 100
    assert "rule 0 '10 off from 100': fired: discount 'Big' 10.00" in section
    assert "dry run: nothing was stored" in section


def test_a_passing_or_sandbox_free_failing_test_gets_no_evaluation_section(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        "from sandbox import Sandbox\n"
        "def test_ok():\n"
        "    Sandbox(now='2026-12-01T10:00:00Z').update('s', {'total': 1})\n"
        "def test_fails_without_evaluating():\n"
        "    assert 1 == 2\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    assert "promo-sandbox: last evaluation" not in result.stdout.str()


STEERED_TEST = """
from hypothesis import HealthCheck, given, settings
from sandbox import Sandbox, conditions as c, effects as e
from strategies import sessions

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Big").rule(
        "10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big", 10)]
    )
    return sb

SB = build()

# The strategy's first draw reads the rules (a one-time cost a loaded machine can stretch
# past the health check's limit); steering, not speed, is under test here.
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(sessions(SB))
def test_answers(s):
    SB.update("s1", s, dry=True)
"""


@pytest.mark.parametrize(("profile", "steered"), [("fuzz", True), ("dev", False)])
def test_the_fuzz_profile_steers_tests_towards_rules_seldom_fired(
    pytester: pytest.Pytester, profile: str, steered: bool
) -> None:
    pytester.makepyfile(STEERED_TEST)
    # In a subprocess: an in-process run would leave its profile loaded for the next test.
    result = pytester.runpytest_subprocess(
        f"--hypothesis-profile={profile}",
        "--hypothesis-show-statistics",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:benchmark",
    )
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert ("rule fired: Big / 10 off from 100" in text) is steered
    assert ("rules seldom fired so far" in text) is steered


def test_steering_counts_each_fired_rule_once_per_answer() -> None:
    from collections import Counter

    from sandbox.fuzzing import steer_to_unexercised

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    from sandbox import conditions as c
    from sandbox import effects as e

    big = sb.campaign("Big")
    big.rule("from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big", 10)])
    big.rule("from 200", when=[c.total_at_least(200)], then=[e.set_discount("Bigger", 5)])
    fired: Counter[str] = Counter()
    for total in (50, 150, 250, 300):
        steer_to_unexercised(sb.update("s", {"total": total}, dry=True), fired)
    # From 100: 150, 250 and 300; from 200: 250 and 300 (stackable rules of one campaign).
    assert fired == Counter({"Big / from 100": 3, "Big / from 200": 2})


def test_a_property_used_wrongly_fails_its_test_with_the_reason_not_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        rules=RULES_WITH_PROPERTIES + "\n\ndef property_forgets_to_return(state):\n    pass\n"
    )
    result = pytester.runpytest(
        "--sandbox-rules", "rules.py", "-k", "forgets", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1, deselected=2)
    text = result.stdout.str()
    assert "property_forgets_to_return returned None: a property must return True" in text
    assert "Traceback" not in text
    assert "fuzzing.py:" not in text


def test_a_users_own_sandbox_py_does_not_stop_pytest_and_is_named_in_one_warning(
    pytester: pytest.Pytester,
) -> None:
    # `python -m pytest` puts the working directory first on sys.path, so a user's own
    # sandbox.py shadows the library; the plugin's entry point must still load.
    pytester.makepyfile(sandbox="VALUE = 1\n")
    pytester.makepyfile(
        test_mine="""
        import sandbox

        def test_my_own_module():
            assert sandbox.VALUE == 1

        def test_the_factory_says_why_it_cannot_help(sandbox_factory):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "is not a package" not in out
    assert "INTERNALERROR" not in out
    # One line says what happened and what to do: as a warning, and as the fixture's error.
    said = "*'sandbox' imports *sandbox.py, not the promo-sandbox library*rename that file*"
    result.stdout.fnmatch_lines(["*PytestConfigWarning: " + said[1:]])
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_the_factory_says_why_it_cannot_help*", said]
    )


def test_the_plugin_knows_the_library_when_nothing_shadows_it() -> None:
    from promo_sandbox_pytest import shadowing_module

    assert shadowing_module() is None


FLAKY_BECAUSE_OF_A_RULE = """
from hypothesis import given, settings, strategies as st
from sandbox.invariants import OutsideStateError

calls = []

@settings(derandomize=True, database=None)
@given(st.integers(0, 10))
def test_fails_once_then_passes(n):
    # What a rule keeping a module-level set does to a Hypothesis run: the first run fails,
    # the replay passes. The lifecycle machine records the OutsideStateError naming the
    # rule when the same steps answer differently; here it is made by hand.
    calls.append(n)
    if len(calls) == 1:
        OutsideStateError("Welcome", "first visit", first="fired", then="did not fire")
        raise AssertionError("a welcome discount on a returning customer")
"""

LIFECYCLE_WITH_OUTSIDE_STATE = """
from hypothesis import settings
from sandbox import Sandbox, effects as e
from sandbox.strategies import SessionLifecycle

seen = set()

def first_visit(ctx):
    if ctx.profile_id in seen:
        return False
    seen.add(ctx.profile_id)
    return True

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Welcome").rule("first visit", when=[first_visit], then=[e.set_discount("w", 5)])
    return sb

def at_most_four_off(state):
    return state.total_discount <= 4

TestRules = SessionLifecycle.for_rules(build, properties=[at_most_four_off]).TestCase
TestRules.settings = settings(
    max_examples=25, stateful_step_count=10, derandomize=True, database=None, deadline=None
)
"""


def test_a_run_hypothesis_calls_flaky_because_a_rule_keeps_state_names_the_rule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(FLAKY_BECAUSE_OF_A_RULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "FlakyFailure" not in out
    result.stdout.fnmatch_lines(
        [
            "*OutsideStateError: rule 'first visit' in campaign 'Welcome' answered differently*"
            "keeps state outside the sandbox*",
            "*Hypothesis ended this run as flaky*",
        ]
    )


def test_a_lifecycle_over_a_rule_with_a_module_level_set_fails_plainly_naming_the_rule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(LIFECYCLE_WITH_OUTSIDE_STATE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=1)
    # No Flaky error of Hypothesis' (the word may appear in the lifecycle's source shown
    # in the traceback, in a comment); the error named is the rule keeping outside state.
    assert "hypothesis.errors.Flaky" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*OutsideStateError: rule 'first visit' in campaign 'Welcome'*outside the sandbox*"]
    )
