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


def test_demo_is_short_and_its_story_holds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 80
    assert "campaign -1" not in out  # CouponNotFound belongs to no campaign
    # After the cancel, the re-sent second session gets the coupon (not a new rejection).
    resent = out.split("limit has room again")[1].split("==")[0]
    assert "coupon 'xmas-2021' accepted" in resent
    assert "rolled back what the close committed" in out
    assert "no campaigns" not in out


def test_demo_with_another_rules_file_dry_runs_each_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--rules", str(EXAMPLES / "planted_bug.py")]) == 0
    out = capsys.readouterr().out
    assert "XMAS-2021" not in out
    assert "coupon 'VIP25' accepted" in out
    assert "[dry run]" in out


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_eval_explain_prints_why_rules_fired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = write_lines(
        tmp_path / "s.jsonl", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}
    )
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(sessions), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "s.jsonl:1: session 'line-1' (open)" in out
    assert "fired: discount '10% off' 8.00" in out


def test_eval_replays_the_lifecycle_steps_fuzz_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = {
        "customerSessionId": "a",
        "customerSession": {
            "profileId": "p1",
            "coupon": "XMAS-2021",
            "cartItems": [{"sku": "A", "quantity": 2, "price": 40}],
            "state": "closed",
        },
    }
    sessions = write_lines(
        tmp_path / "steps.jsonl",
        closed,
        {"returnItems": "a", "returnedCartItems": [{"position": 0, "quantity": 1}]},
        {"advance": {"days": 2}},
        {"customerSessionId": "b", "customerSession": {**closed["customerSession"]}},  # type: ignore[dict-item]
        {"reopen": "b"},
    )
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(sessions)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [[e["effectType"] for e in a["effects"]] for a in answers]
    assert len(answers) == 4  # the clock move answers nothing
    assert kinds[1] == ["rollbackDiscount"]
    assert answers[1]["customerSession"]["state"] == "partially_returned"
    assert answers[3]["customerSession"]["state"] == "open"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ([1, 2], "expected a JSON object, got list"),
        (
            {"customerSessionId": "s", "customerSession": {}, "dry": "yes"},
            "/dry: 'dry' must be true or false",
        ),
        (
            {"customerSessionId": 5, "customerSession": {}},
            "'customerSessionId' must be a string, got 5",
        ),
        ({"customerSession": 3}, "'customerSession' must be an object, got 3"),
        ({"customerSessionID": "s", "customerSession": {}}, "did you mean 'customerSessionId'?"),
        ({"advance": {"fortnights": 1}}, "'advance' must map"),
    ],
)
def test_eval_explains_a_malformed_request_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: object, expected: str
) -> None:
    sessions = write_lines(tmp_path / "bad.jsonl", line)
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(sessions)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1:" in err
    assert expected in err
    assert "1 line(s) refused" in err


def test_the_readme_sessions_file_replays_the_demo_story(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["eval", str(EXAMPLES / "xmas.py"), str(EXAMPLES / "sessions.jsonl")]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reasons = [
        [(e["effectType"], e["props"].get("rejectionReason")) for e in a["effects"]]
        for a in answers
    ]
    # examples/xmas.py allows one XMAS-2021 per profile: the second session is refused
    # until the first is cancelled (which rolls back), then accepted.
    assert ("rejectCoupon", "ProfileLimitReached") in reasons[2]
    assert [t for t, _ in reasons[3]][:1] == ["rollbackCoupon"]
    assert ("acceptCoupon", None) in reasons[4]
    assert ("rejectCoupon", "CouponNotFound") in reasons[5]
