"""Rule coverage: counts per rule and condition, reasons, and the pytest report.

Expected counts are computed in each test from the sessions it sends (which of them
reach each condition), independently of the engine.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox, dumps
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.cli import _LineEvaluator, _moves_clock, main
from sandbox.coverage import Coverage
from sandbox.fuzzing import fuzz, load_rules
from sandbox.parallel import LocalRunner, evaluate_dry

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
    before = list(Sandbox.observers)  # (the pytest plugin's own observer of this test)
    with coverage.recording():
        assert len(Sandbox.observers) == len(before) + 1
    sb.update("s", sessions()[0])
    assert coverage.answers == 0
    assert Sandbox.observers == before


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


# ---------------------------------------------------------------------------
# eval --coverage: a fixed JSONL set, sequential and on two worker processes

EVAL_RULES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Big").rule("from 100", when=[c.total_at_least(100)], then=[e.set_discount("d", 1)])
    save = sb.campaign("Save")
    save.coupon("SAVE5")
    save.rule("5 off from 30", when=[c.coupon_valid, c.total_at_least(30)],
              then=[e.set_discount("s", 5)])
    sb.campaign("Never").rule("below zero", when=[c.total_below(0)])
    return sb
"""
CODES = (None, "SAVE5", "NOPE")
# Enough lines for several shards (8, 16, 32, ...), a clock move and a refused line.
EVAL_TOTALS = [(i * 7) % 130 for i in range(60)]


def eval_lines() -> list[str]:
    lines = []
    for i, total in enumerate(EVAL_TOTALS):
        code = CODES[i % 3]
        lines.append(dumps({"total": total, **({"coupon": code} if code else {})}))
        if i == 20:
            lines.append('{"advance": {"days": 1}}')
        if i == 30:
            lines.append('{"total": 5')  # not JSON: refused, no answer
    return lines


def expected_report_lines() -> list[str]:
    """The report's lines for the three rules, counted here from the totals and codes."""
    n = len(EVAL_TOTALS)
    codes = [CODES[i % 3] for i in range(n)]
    big = sum(1 for t in EVAL_TOTALS if t >= 100)
    with_save = [t for t, code in zip(EVAL_TOTALS, codes, strict=True) if code == "SAVE5"]
    saved = sum(1 for t in with_save if t >= 30)
    # Condition 0 (a valid code) stops the sessions without SAVE5; condition 1 the small ones.
    return [
        f"rule coverage over {n} answer(s)",
        f"  Big / from 100: fired {big} of {n} evaluated",
        f"    condition 0 (cart total >= 100): failed {n - big}",
        f"  Save / 5 off from 30: fired {saved} of {n} evaluated",
        f"    condition 0 (coupon code is valid): failed {n - len(with_save)}",
        f"    condition 1 (cart total >= 30): failed {len(with_save) - saved}",
        f"  Never / below zero: NEVER FIRED of {n} evaluated",
        f"    condition 0 (cart total < 0): failed {n}",
        f"  coupon CouponNotFound: {codes.count('NOPE')}",
        f"  coupon CouponRejectedByCondition: {len(with_save) - saved}",
        "  coupon CouponExpired: never produced",
    ]


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("eval-coverage")
    rules, sessions = folder / "rules.py", folder / "sessions.jsonl"
    rules.write_text(EVAL_RULES)
    sessions.write_text("\n".join(eval_lines()) + "\n")
    return rules, sessions


def run_eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def coverage_part(stderr: str) -> list[str]:
    return stderr[stderr.index("rule coverage over") :].splitlines()


def test_eval_coverage_counts_per_rule_and_condition_match_the_lines_sent(
    eval_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, sessions = eval_files
    code, out, err = run_eval(capsys, str(rules), str(sessions), "--dry", "--coverage")
    assert code == 2  # the refused line
    assert len(out.splitlines()) == len(eval_lines())  # stdout: still one answer a line
    report = coverage_part(err)
    for line in expected_report_lines():
        assert line in report


def test_eval_coverage_with_two_jobs_is_the_sequential_coverage(
    eval_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, sessions = eval_files
    _, sequential_out, sequential = run_eval(
        capsys, str(rules), str(sessions), "--dry", "--coverage"
    )
    code, out, parallel = run_eval(
        capsys, str(rules), str(sessions), "--dry", "--coverage", "--jobs", "2"
    )
    assert code == 2
    assert out == sequential_out
    assert coverage_part(parallel) == coverage_part(sequential)
    assert "Never / below zero: NEVER FIRED" in parallel


def test_evaluate_dry_merges_each_shards_coverage_into_the_sequential_counts(
    eval_files: tuple[Path, Path],
) -> None:
    rules, sessions = eval_files
    lines = list(enumerate(sessions.read_bytes().splitlines(keepends=True), start=1))
    evaluate = _LineEvaluator("s", True, False)
    sb, alone = load_rules(rules)[0](), Coverage()
    with alone.recording(sandbox=sb):
        for number, raw in lines:
            evaluate(sb, number, raw)
    merged = Coverage()
    with LocalRunner(jobs=2) as runner:
        list(
            evaluate_dry(
                rules, lines, evaluate, runner=runner, moves_clock=_moves_clock, coverage=merged
            )
        )
    assert merged.to_json() == alone.to_json()
    assert merged.answers == len(EVAL_TOTALS)


def test_eval_strict_stop_prints_no_coverage_report(
    eval_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, sessions = eval_files
    code, _, err = run_eval(capsys, str(rules), str(sessions), "--dry", "--coverage", "--strict")
    assert code == 2
    assert "rule coverage over" not in err
    assert "no rule coverage report" in err


def test_a_recording_limited_to_one_sandbox_ignores_the_others() -> None:
    mine, other, coverage = shop(), shop(), Coverage()
    with coverage.recording(sandbox=mine):
        mine.update("a", sessions()[1], dry=True)
        other.update("b", sessions()[0], dry=True)
    assert coverage.answers == 1
    assert coverage.rule("VIP", "vip over 50").fired == 1


# ---------------------------------------------------------------------------
# Coverage over a fuzz run

FUZZ_RULES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Big").rule("from 100", when=[c.total_at_least(100)], then=[e.set_discount("d", 1)])
    # No total is below zero (prices and totals are >= 0): no session reaches this one.
    sb.campaign("Never").rule("below zero", when=[c.total_below(0)], then=[e.set_discount("n", 1)])
    return sb
"""


@pytest.fixture
def fuzz_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.py"
    path.write_text(FUZZ_RULES)
    return path


def test_fuzz_coverage_reports_the_unreachable_rule_never_fired_and_the_other_fired(
    fuzz_rules: Path,
) -> None:
    coverage = Coverage()
    with coverage.recording():
        report = fuzz(fuzz_rules, examples=30, seed=1)
    assert report.ok, report.render()
    assert [(r.campaign, r.rule) for r in coverage.never_fired] == [("Never", "below zero")]
    big, never = coverage.rule("Big", "from 100"), coverage.rule("Never", "below zero")
    assert big.fired > 0
    assert never.evaluated > 0  # reached by the run, and stopped at its only condition
    assert never.failed_at == {0: never.evaluated}


def test_fuzz_dash_dash_coverage_prints_the_same_verdicts(
    fuzz_rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["fuzz", str(fuzz_rules), "--examples", "20", "--seed", "1", "--coverage", "--no-database"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Never / below zero: NEVER FIRED" in out
    assert re.search(r"Big / from 100: fired [1-9]\d* of", out)
