"""The promo_sandbox pytest plugin, run through pytester."""

from __future__ import annotations

from collections.abc import Callable

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
    from sandbox import Sandbox
    from sandbox import conditions as c
    from sandbox import effects as e
    from sandbox._pytest_plugin import pytest_assertrepr_compare

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
