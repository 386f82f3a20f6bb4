"""Rule coverage: counts per rule and condition, reasons, and the pytest report.

Expected counts are computed in each test from the sessions it sends (which of them
reach each condition), independently of the engine.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.coverage import Coverage

NOW = "2026-12-01T10:00:00Z"


def shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    vip = sb.campaign("VIP")
    vip.coupon("VIP-1")
    vip.rule(
        "vip over 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("VIP", 5)],
    )
    sb.campaign("Never").rule(
        "an impossible total", when=[c.total_below(0)], then=[e.set_discount("never", 1)]
    )
    return sb


TOTALS = [Decimal(t) for t in ("10", "60", "75", "20", "55", "5")]
WITH_CODE = [True, True, False, True, False, True]


def sessions() -> list[dict[str, Any]]:
    return [
        {
            "cartItems": [{"sku": "a", "quantity": 1, "price": t}],
            **({"couponCodes": ["VIP-1"]} if code else {}),
        }
        for t, code in zip(TOTALS, WITH_CODE, strict=True)
    ]


def test_counts_per_rule_and_condition_match_the_sessions_sent() -> None:
    sb, coverage = shop(), Coverage()
    with coverage.recording():
        for n, session in enumerate(sessions()):
            sb.update(f"s{n}", session)
    vip = coverage.rule("VIP", "vip over 50")
    # Fired: a code and a total of 50 or more. Condition 0 stops the code-less sessions,
    # condition 1 the ones with a code under 50.
    fired = sum(1 for t, code in zip(TOTALS, WITH_CODE, strict=True) if code and t >= 50)
    no_code = WITH_CODE.count(False)
    small = sum(1 for t, code in zip(TOTALS, WITH_CODE, strict=True) if code and t < 50)
    assert (vip.evaluated, vip.fired) == (len(TOTALS), fired)
    assert vip.failed_at == {0: no_code, 1: small}
    assert coverage.reasons[("coupon", "CouponRejectedByCondition")] == small
    assert coverage.answers == len(TOTALS)


def test_a_rule_no_session_can_reach_is_reported_as_never_fired() -> None:
    sb, coverage = shop(), Coverage()
    with coverage.recording():
        for n, session in enumerate(sessions()):
            sb.update(f"s{n}", session, dry=True)
    assert [(r.campaign, r.rule) for r in coverage.never_fired] == [
        ("Never", "an impossible total")
    ]
    report = coverage.report()
    assert "Never / an impossible total: NEVER FIRED" in report
    assert "coupon CouponNotFound: never produced" in report
    html = coverage._repr_html_()
    assert "never fired" in html


def test_coverage_merges_and_round_trips_through_json() -> None:
    sb, first, second = shop(), Coverage(), Coverage()
    with first.recording():
        sb.update("a", sessions()[1])
    with second.recording():
        sb.update("b", sessions()[0])
    merged = Coverage.from_json(first.to_json())
    merged.merge(Coverage.from_json(second.to_json()))
    vip = merged.rule("VIP", "vip over 50")
    assert (vip.evaluated, vip.fired, vip.failed_at) == (2, 1, {1: 1})
    assert merged.answers == 2


def test_nothing_is_recorded_outside_the_block() -> None:
    sb, coverage = shop(), Coverage()
    with coverage.recording():
        pass
    sb.update("s", sessions()[0])
    assert coverage.answers == 0
    assert Sandbox.observers == []


RULES_TEST = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Big").rule("from 100", when=[c.total_at_least(100)], then=[e.set_discount("d", 1)])
    sb.campaign("Never").rule("below zero", when=[c.total_below(0)])
    return sb

def test_small():
    build().update("s", {"cartItems": [{"sku": "a", "quantity": 1, "price": 10}]})

def test_big():
    build().update("s", {"cartItems": [{"sku": "a", "quantity": 1, "price": 150}]})
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_sandbox_coverage_prints_the_report(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makepyfile(test_rules=RULES_TEST)
    result = pytester.runpytest(
        "--sandbox-coverage", "-p", "no:cacheprovider", "-p", "no:benchmark", *workers
    )
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert "promo-sandbox rule coverage" in text
    assert "rule coverage over 2 answer(s)" in text  # both workers' answers, merged
    assert "Big / from 100: fired 1 of 2 evaluated" in text
    assert "Never / below zero: NEVER FIRED" in text
