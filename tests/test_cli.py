"""`python -m sandbox demo | eval | fuzz`: output, exit codes, and no tracebacks on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def test_demo_shows_a_limit_reached_and_released_by_a_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # The embedded rules allow one XMAS-2021 redemption per profile (examples/xmas.py).
    assert "ProfileLimitReached" in out
    assert "rollbackCoupon" in out
    counters = [line.split(":")[-1].strip() for line in out.splitlines() if "usage counter" in line]
    assert counters == ["1", "0"]
    assert out.count("coupon 'XMAS-2021' accepted") >= 1
    assert "CouponNotFound" in out  # the typo'd XMAS-2012


def test_python_dash_m_sandbox_demo_runs_as_a_new_user_would() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_eval_prints_one_integration_state_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"profileId": "p1", "coupon": "XMAS-2021", "total": 80},
        {
            "customerSessionId": "s9",
            "customerSession": {"profileId": "p1", "coupon": "NOPE-1", "total": 10},
        },
    ]
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(sessions)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 2
    first_types = [e["effectType"] for e in answers[0]["effects"]]
    assert first_types[:2] == ["acceptCoupon", "setDiscount"]
    assert answers[0]["effects"][1]["props"]["value"] == 8  # 10% of 80
    assert answers[1]["customerSession"]["integrationId"] == "s9"
    assert answers[1]["effects"][0]["props"]["rejectionReason"] == "CouponNotFound"


def test_eval_reports_a_bad_line_with_its_pointer_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = tmp_path / "bad.jsonl"
    sessions.write_text(
        '{"profileId": "p1", "cartItems": [{"sku": "A", "quantity": 0}]}\nnot json\n'
    )
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(sessions)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1" in err
    assert "/cartItems/0/quantity" in err
    assert "bad.jsonl:2" in err
    assert "not valid JSON" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "does/not/exist.py", "x.jsonl"],
        ["eval", str(EXAMPLES / "xmas.py"), "does/not/exist.jsonl"],
        ["fuzz", "does/not/exist.py"],
        ["fuzz", str(EXAMPLES / "xmas.py"), "--examples", "0"],
        ["frobnicate"],
        [],
    ],
)
def test_bad_usage_exits_2_with_a_message_not_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip()
    assert "Traceback" not in captured.err


def test_fuzz_finds_the_planted_bug_and_exits_1() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "fuzz",
            str(EXAMPLES / "planted_bug.py"),
            "--examples",
            "150",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "property_at_most_half_off" in result.stdout


def test_fuzz_passes_a_correct_rules_file_with_exit_0() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "fuzz",
            str(EXAMPLES / "half_off_ok.py"),
            "--examples",
            "100",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
