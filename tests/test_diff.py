"""Differential testing of two rule versions (sandbox.diff and ``python -m sandbox diff``).

Two rule files differ in one threshold (10 off from 50, then from 60): the sessions whose
outcome changes are exactly those with a total in [50, 60), computed here by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.diff import compare, kinds_of, search
from sandbox.fuzzing import load_rules

RULES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    big = sb.campaign("Big")
    big.coupon("BIG-1")
    big.rule("10 off", when=[c.coupon_valid, c.total_at_least({threshold})],
             then=[e.set_discount("Big 10", 10)])
    return sb
"""
TOTALS = ["10", "49.99", "50", "50.01", "55", "59.99", "60", "75"]


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.py", tmp_path / "new.py"
    old.write_text(RULES.replace("{threshold}", "50"))
    new.write_text(RULES.replace("{threshold}", "60"))
    return old, new


def build(path: Path):  # type: ignore[no-untyped-def]
    factory, _ = load_rules(path)
    return factory


def test_a_raised_threshold_changes_exactly_the_sessions_between_the_two(
    rule_files: tuple[Path, Path],
) -> None:
    old, new = (build(p)() for p in rule_files)
    sessions = [
        {"couponCodes": ["BIG-1"], "cartItems": [{"sku": "a", "quantity": 1, "price": Decimal(t)}]}
        for t in TOTALS
    ]
    report = compare(old, new, sessions)
    between = [i for i, t in enumerate(TOTALS) if Decimal(50) <= Decimal(t) < Decimal(60)]
    assert [d.index for d in report.differences] == between
    assert set(report.groups) == {"code now rejected", "discount down", "effect removed"}
    assert report.total_discount_change == Decimal(-10) * len(between)
    for difference in report.differences:
        assert difference.old.codes == {"BIG-1": "accepted"}
        assert difference.new.codes == {"BIG-1": "CouponRejectedByCondition"}


def test_identical_rules_show_no_difference(rule_files: tuple[Path, Path]) -> None:
    old = build(rule_files[0])
    report = compare(old(), old(), [{"total": Decimal(t), "coupon": "BIG-1"} for t in TOTALS])
    assert report.ok
    assert report.compared == len(TOTALS)
    assert "no difference" in report.render()


def test_a_generated_search_shrinks_to_the_boundary(rule_files: tuple[Path, Path]) -> None:
    report = search(build(rule_files[0]), build(rule_files[1]), examples=60, seed=1)
    assert "discount down" in report.groups
    example = report.examples["discount down"]
    assert '"total": 50.00' in example or '"price": 50.00' in example  # the old threshold
    assert "BIG-1" in example


def test_kinds_are_named_from_the_two_outcomes() -> None:
    from sandbox.diff import Outcome

    before = Outcome(
        {"A": "accepted", "B": "CouponExpired"}, Decimal(5), (("setDiscount", "C", "d"),)
    )
    after = Outcome({"A": "CouponLimitReached", "B": "CouponNotFound"}, Decimal(0))
    assert kinds_of(before, after) == [
        "code now rejected",
        "reason changed",
        "discount down",
        "effect removed",
    ]
    assert kinds_of(after, before) == [
        "code now accepted",
        "reason changed",
        "discount up",
        "effect added",
    ]
    assert kinds_of(before, before) == []


def write_sessions(tmp_path: Path) -> Path:
    lines = [
        '{"coupon": "BIG-1", "total": 40}',
        '{"coupon": "BIG-1", "total": 50}',
        '{"customerSession": {"couponCodes": ["BIG-1"], "cartItems": [{"sku": "a", "quantity": 1, "price": 59.99}]}}',
        '{"advance": {"days": 1}}',
        '{"coupon": "BIG-1", "total": 60}',
    ]
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_cli_exits_1_on_a_difference_and_0_on_identical_rules(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old, new = (str(p) for p in rule_files)
    sessions = str(write_sessions(tmp_path))
    report = tmp_path / "report.json"
    assert main(["diff", old, new, "--sessions", sessions, "--json", str(report)]) == 1
    printed = capsys.readouterr().out
    assert "4 session(s) compared, 2 differ" in printed  # the clock move is not a session
    data = json.loads(report.read_text())
    assert data["groups"]["code now rejected"]["sessions"] == [2, 3]  # the input line numbers
    assert data["totalDiscountChange"] == "-20.00"
    assert main(["diff", old, old, "--sessions", sessions]) == 0
    assert "no difference" in capsys.readouterr().out


def test_diff_with_two_jobs_gives_the_sequential_report(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old, new = (str(p) for p in rule_files)
    sessions = str(write_sessions(tmp_path))
    assert main(["diff", old, new, "--sessions", sessions]) == 1
    sequential = capsys.readouterr().out
    assert main(["diff", old, new, "--sessions", sessions, "--jobs", "2"]) == 1
    assert capsys.readouterr().out == sequential


def test_diff_reports_bad_lines_and_exits_2(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"total": 50, "coupon": "BIG-1"}\n{not json\n')
    assert main(["diff", *(str(p) for p in rule_files), "--sessions", str(bad)]) == 2
    assert ":2:" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The README's and the notebook's example: examples/spring_sale.py, then the threshold
# raised from 50 to 60 in examples/spring_sale_raised.py, on examples/spring_sessions.jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPRING_OLD, SPRING_NEW = EXAMPLES / "spring_sale.py", EXAMPLES / "spring_sale_raised.py"
SPRING_SESSIONS = EXAMPLES / "spring_sessions.jsonl"


def between_the_thresholds() -> list[int]:
    """The lines with SPRING10 (any case) and a cart total in [50, 60), read by hand."""
    found = []
    for number, line in enumerate(SPRING_SESSIONS.read_text().splitlines(), start=1):
        data = json.loads(line, parse_float=Decimal)
        session = data.get("customerSession", data)
        codes = [session.get("coupon", ""), *session.get("couponCodes", [])]
        total = session.get("total")
        if total is None:
            total = sum(i["price"] * i["quantity"] for i in session["cartItems"])
        if "SPRING10" in (c.upper() for c in codes) and 50 <= total < 60:
            found.append(number)
    return found


def test_the_spring_example_files_differ_in_the_threshold_only() -> None:
    import re

    def code(path: Path) -> str:
        text = path.read_text()
        return re.sub(r'^""".*?"""', "", text, flags=re.S)  # past the docstring

    old, new = code(SPRING_OLD).splitlines(), code(SPRING_NEW).splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == [("SPRING_THRESHOLD = 50", "SPRING_THRESHOLD = 60  # raised from 50")]


def test_diff_of_the_spring_example_finds_the_recorded_lines_between_50_and_60(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    expected = between_the_thresholds()
    assert len(expected) >= 4  # a total, a cart, a V2 session, a lower-case code
    report = tmp_path / "report.json"
    argv = ["diff", str(SPRING_OLD), str(SPRING_NEW), "--sessions", str(SPRING_SESSIONS)]
    assert main([*argv, "--json", str(report)]) == 1
    capsys.readouterr()
    data = json.loads(report.read_text())
    assert data["compared"] == len(SPRING_SESSIONS.read_text().splitlines())
    assert set(data["groups"]) == {"code now rejected", "discount down", "effect removed"}
    for group in data["groups"].values():
        assert group["sessions"] == expected
    assert Decimal(data["totalDiscountChange"]) == -10 * len(expected)


def test_a_generated_diff_of_the_spring_example_shrinks_to_the_old_threshold() -> None:
    report = search(build(SPRING_OLD), build(SPRING_NEW), examples=60, seed=1)
    assert set(report.groups) == {"code now rejected", "discount down", "effect removed"}
    example = json.loads(report.examples["code now rejected"], parse_float=Decimal)
    items = example.get("cartItems", [])
    total = example.get("total", sum(i["price"] * i["quantity"] for i in items))
    assert total == 50  # the smallest cart the old rule took and the new one refuses
