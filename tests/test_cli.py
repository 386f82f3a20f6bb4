"""`python -m sandbox demo | eval | fuzz`: output, exit codes, and no tracebacks on bad input."""

import errno
import importlib.metadata
import inspect
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import IO

import pytest
from packaging.requirements import Requirement

from sandbox.cli import DEMO_SEED, _draw_sessions, default_rules_path, main
from sandbox.fuzzing import load_rules

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


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
    assert len(answers) == 5  # one output line per input line
    # The clock move answers with the new time: examples/xmas.py starts at 2026-12-01T10:00Z.
    assert answers[2] == {"line": 3, "now": "2026-12-03T10:00:00+00:00"}
    kinds = [[e["effectType"] for e in a["effects"]] for a in (answers[1], answers[4])]
    assert kinds[0] == ["rollbackDiscount"]
    assert answers[1]["customerSession"]["state"] == "partially_returned"
    assert answers[4]["customerSession"]["state"] == "open"


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


XMAS = str(EXAMPLES / "xmas.py")


def test_eval_aligns_each_answer_with_its_input_line_and_goes_on_past_a_malformed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}
    broken = '{"profileId": "p2", "total": 80'  # no closing brace: the error is past its end
    sessions = tmp_path / "mixed.jsonl"
    sessions.write_text(
        json.dumps(good)
        + "\n"
        + broken
        + "\n\n"
        + json.dumps(
            {
                "customerSessionId": "s4",
                "customerSession": {"cartItems": [{"sku": "A", "quantity": 0, "price": 1}]},
            }
        )
        + "\n"
        + json.dumps({"profileId": "p5", "total": 10})
        + "\n"
    )
    assert main(["eval", XMAS, str(sessions)]) == 2
    captured = capsys.readouterr()
    out = captured.out.split("\n")
    assert out[-1] == ""  # every record ends its line
    records = out[:-1]
    assert len(records) == 5  # output line N answers input line N, the blank one included
    assert json.loads(records[0])["customerSession"]["integrationId"] == "line-1"
    column = len(broken) + 1
    assert json.loads(records[1]) == {
        "line": 2,
        "error": {
            "message": f"not valid JSON: Expecting ',' delimiter at line 2, column {column}",
            "errors": [
                {
                    "title": "not valid JSON: Expecting ',' delimiter",
                    "source": {"line": 2, "column": column},
                }
            ],
        },
    }
    assert records[2] == ""
    refused = json.loads(records[3])
    assert refused["line"] == 4
    # The pointer is into the input line, where the session sits under customerSession.
    assert [e["source"]["pointer"] for e in refused["error"]["errors"]] == [
        "/customerSession/cartItems/0/quantity"
    ]
    assert json.loads(records[4])["customerSession"]["integrationId"] == "line-5"
    assert f"mixed.jsonl:2:{column}: not valid JSON: Expecting ',' delimiter" in captured.err
    assert "mixed.jsonl:4: " in captured.err
    assert "/customerSession/cartItems/0/quantity" in captured.err
    assert "2 line(s) refused" in captured.err


def test_eval_strict_stops_at_the_first_refused_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = tmp_path / "s.jsonl"
    sessions.write_text('{"profileId": "p1", "total": 1}\n[1]\n{"profileId": "p3", "total": 3}\n')
    assert main(["eval", XMAS, str(sessions), "--strict"]) == 2
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 2
    assert records[1]["line"] == 2
    assert "stopped at line 2" in captured.err


def test_eval_dry_commits_nothing_so_a_per_profile_limit_never_fills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # examples/xmas.py allows one XMAS-2021 per profile: a real close uses it up.
    closing = {"profileId": "p1", "coupon": "XMAS-2021", "total": 80, "state": "closed"}
    sessions = write_lines(tmp_path / "s.jsonl", closing, {**closing, "state": "open"})
    assert main(["eval", XMAS, str(sessions)]) == 0
    real = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert real[1]["effects"][0]["props"]["rejectionReason"] == "ProfileLimitReached"
    assert main(["eval", XMAS, str(sessions), "--dry"]) == 0
    dry = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["effects"][0]["effectType"] for a in dry] == ["acceptCoupon", "acceptCoupon"]


def test_eval_out_writes_the_answers_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = write_lines(tmp_path / "s.jsonl", {"profileId": "p1", "total": 5})
    out = tmp_path / "answers.jsonl"
    assert main(["eval", XMAS, str(sessions), "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    (answer,) = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(answer)["customerSession"]["integrationId"] == "line-1"
    # Writing over the input would erase it before it is read.
    assert main(["eval", XMAS, str(sessions), "--out", str(sessions)]) == 2
    assert "is the sessions file itself" in capsys.readouterr().err
    assert sessions.read_text() != ""


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ('{"profileId": "p1", "total": 80 "coupon": "XMAS-2021"}', 33),
        # A raw carriage return inside a string: one line for JSONL, a control character for JSON.
        ('{"profileId": "p1", "attributes": {"note": "' + "x" * 56 + '\r"}, "total": 80}', 101),
    ],
)
def test_eval_reports_the_column_of_a_json_error_as_the_decoder_finds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, column: int
) -> None:
    sessions = tmp_path / "bad.jsonl"
    sessions.write_bytes(b'{"total": 1}\n' + line.encode() + b"\n")
    assert main(["eval", XMAS, str(sessions)]) == 2
    captured = capsys.readouterr()
    assert f"bad.jsonl:2:{column}: not valid JSON" in captured.err
    records = captured.out.splitlines()
    assert len(records) == 2  # the \r did not split the line
    assert json.loads(records[1])["error"]["errors"][0]["source"] == {"line": 2, "column": column}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"profileId": "p\u00e9", "total": 1}\n'.encode("latin-1"),
            "s.jsonl:1:17: not UTF-8 text",
        ),
        ('{"total": 1}\n'.encode("utf-16"), "s.jsonl:1: the file is UTF-16"),
        ('{"total": 1}\n'.encode("utf-32"), "s.jsonl:1: the file is UTF-32"),
        (b'{"total": 1}\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n', "s.jsonl:2:1: not UTF-8 text"),
        (b'{"total": 1}\n\x00\x01\x02\n', "s.jsonl:2:1: not valid JSON"),
    ],
    ids=["latin-1", "utf-16", "utf-32", "png", "control bytes"],
)
def test_eval_refuses_a_file_that_is_not_utf8_as_bad_input_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    sessions = tmp_path / "s.jsonl"
    sessions.write_bytes(content)
    assert main(["eval", XMAS, str(sessions)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_eval_accepts_a_utf8_file_that_starts_with_a_byte_order_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = tmp_path / "s.jsonl"
    sessions.write_bytes('{"profileId": "pé", "total": 1}\n'.encode("utf-8-sig"))
    assert main(["eval", XMAS, str(sessions)]) == 0
    (answer,) = capsys.readouterr().out.splitlines()
    assert json.loads(answer)["customerSession"]["profileId"] == "pé"


def test_a_binary_sessions_file_gives_exit_2_and_no_traceback_in_a_real_process(
    tmp_path: Path,
) -> None:
    sessions = tmp_path / "random.bin"
    sessions.write_bytes(bytes(range(256)) * 4 + b"\n\xff\xfe\x00{}\n")
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "eval", XMAS, str(sessions)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "random.bin:1:" in result.stderr


@pytest.mark.parametrize(
    ("advance", "expected"),
    [
        ({"days": 10**10}, "/advance/days: at most 36525 days (a century) a line, got 10000000000"),
        ({"days": 999999999}, "/advance/days: at most 36525 days"),
        ({"seconds": 10**12}, "/advance/seconds: at most 3155760000 seconds"),
        ({"days": -1}, "/advance/days: the clock moves forward only"),
        ({"days": 1.5}, "/advance/days: must be an integer, got 1.5"),
        ({"days": True}, "/advance/days: must be an integer, got true"),
        ({"weeks": 5000, "days": 10000}, "/advance: at most a century a line"),
        ({"dayz": 1}, "did you mean 'days'?"),
    ],
)
def test_eval_checks_an_advance_line_before_it_reaches_the_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], advance: object, expected: str
) -> None:
    sessions = write_lines(tmp_path / "s.jsonl", {"advance": advance})
    assert main(["eval", XMAS, str(sessions)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_eval_stops_the_clock_short_of_the_year_9999(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2026 + 80 centuries is past 9999: the 80th move is refused, not an OverflowError.
    sessions = write_lines(tmp_path / "s.jsonl", *[{"advance": {"days": 36525}}] * 80)
    assert main(["eval", XMAS, str(sessions)]) == 2
    captured = capsys.readouterr()
    assert "s.jsonl:80: " in captured.err
    assert "the clock would pass the year 9999" in captured.err
    assert json.loads(captured.out.splitlines()[78])["now"].startswith("99")


def test_eval_reports_any_sandbox_error_of_a_line_as_that_lines_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = write_lines(
        tmp_path / "s.jsonl",
        {"reopen": "nobody"},
        {"customerSessionId": "a", "customerSession": {"total": 1}},
        {"reopen": "a"},
        {"reopen": 7},
    )
    assert main(["eval", XMAS, str(sessions)]) == 2
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r.get("line") for r in records] == [1, None, 3, 4]
    assert "s.jsonl:1: " in captured.err
    assert "cannot go from state 'open' to 'open'" in records[2]["error"]["message"]
    assert records[3]["error"]["errors"][0]["source"] == {"pointer": "/reopen"}


def test_eval_reports_an_unexpected_error_as_the_lines_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.core import Sandbox

    real_update = Sandbox.update

    def update(self: Sandbox, session_id: str, *args: object, **kwargs: object) -> object:
        if session_id == "line-1":
            raise RuntimeError("a bug")
        return real_update(self, session_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Sandbox, "update", update)
    sessions = write_lines(tmp_path / "s.jsonl", {"total": 1}, {"total": 2})
    assert main(["eval", XMAS, str(sessions)]) == 2  # never 1: nothing was violated
    captured = capsys.readouterr()
    assert "s.jsonl:1: internal error: RuntimeError: a bug" in captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert records[0]["line"] == 1
    assert records[1]["customerSession"]["integrationId"] == "line-2"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_eval_draws_a_progress_bar_only_when_stderr_is_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = write_lines(tmp_path / "s.jsonl", *[{"total": n} for n in range(1, 30)])
    out = tmp_path / "answers.jsonl"
    assert main(["eval", XMAS, str(sessions), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""  # not a terminal: not a byte of progress
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["eval", XMAS, str(sessions), "--out", str(out)]) == 0
    drawn = terminal.getvalue()
    assert "eval: 100%" in drawn
    assert len(out.read_text().splitlines()) == 29  # the bar went to stderr, not into the answers


PEAK_MEMORY = """
import sys
from sandbox.cli import main
code = main(sys.argv[1:])
# VmHWM, the peak resident size of this program; ru_maxrss would count the forked parent.
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak.split()[1], code)
"""

SMALL_RULES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    promo = sb.campaign("Promo")
    promo.coupon("SAVE")
    promo.rule("5 off", when=[c.coupon_valid], then=[e.set_discount("5 off", 5)])
    return sb
"""


def _peak_memory(rules: Path, sessions: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, "eval", str(rules), str(sessions), "--out", os.devnull],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    peak, code = result.stdout.split()
    assert code == "0", result.stderr
    return int(peak)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the peak from Linux's /proc"
)
def test_eval_memory_stays_flat_from_2000_to_20000_lines(tmp_path: Path) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(SMALL_RULES)
    # Ten session ids and seven profiles, so the sandbox itself stores no more for a longer
    # file; each line carries 400 characters of attributes, so holding the input (4 MB and
    # more at 20,000 lines) or the answers would show in the peak.
    note = "x" * 400
    files = {}
    for count in (2_000, 20_000):
        path = files[count] = tmp_path / f"{count}.jsonl"
        with path.open("w") as out:
            for i in range(count):
                session = {
                    "profileId": f"p{i % 7}",
                    "coupon": "SAVE",
                    "total": 10 + i % 90,
                    "attributes": {"note": note},
                }
                out.write(
                    json.dumps({"customerSessionId": f"s{i % 10}", "customerSession": session})
                    + "\n"
                )
    small, large = _peak_memory(rules, files[2_000]), _peak_memory(rules, files[20_000])
    # The peak of a process is mostly the interpreter and the library: a tenfold input
    # may add a little (allocator slack), not megabytes.
    assert large <= small * 1.1, (small, large)


def test_eval_reads_stdin_as_utf8_bytes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"profileId": "p\xc3\xa9", "total": 3}\n\xe9\n'))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["eval", XMAS, "-"]) == 2
    captured = capsys.readouterr()
    first, second = (json.loads(line) for line in captured.out.splitlines())
    assert first["customerSession"]["profileId"] == "p\u00e9"
    assert second["line"] == 2
    assert "-:2:1: not UTF-8 text" in captured.err


# ---------------------------------------------------------------------------
# demo


def demo_output(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(["demo", *argv]) == code
    return capsys.readouterr().out


def table_rows(out: str, title: str) -> list[list[str]]:
    """The cells of the table printed under the line that starts with ``title``."""
    lines = out.split("\n" + title, 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[1:]]


def test_demo_tables_generated_sessions_then_a_limit_story_then_a_fuzz_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = demo_output(capsys)
    generated = table_rows(out, "12 generated sessions")
    assert len(generated) == 12
    assert f"seed {DEMO_SEED}" in out
    # Half the draws plant a flaw: some code of the table is rejected with a Talon reason.
    assert any("NotFound" in cell or "Required" in cell for row in generated for cell in row)
    story = table_rows(out, "A limit reached and released")
    # examples/xmas.py allows one XMAS-2021 per profile: used by the close, refused to the
    # second session, released by the cancel, then accepted on the re-send.
    assert [row[-1] for row in story] == ["0", "1", "1", "0", "0"]
    assert "xmas-2021: ProfileLimitReached" in story[2]
    assert "rolled back: 1 coupon, 2 discounts" in story[3]
    assert "xmas-2021: accepted" in story[4]
    assert "coupon 'xmas-2021' rejected: ProfileLimitReached" in out  # the explain() of it
    assert "A short fuzz" in out
    assert "\nno violations\n" in out.split("A short fuzz")[1]
    assert len(out.splitlines()) <= 80


def test_demo_is_the_same_every_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_output(capsys) == demo_output(capsys)


def test_demo_sessions_are_drawn_from_the_strategies_repeatably() -> None:
    factory, _ = load_rules(default_rules_path())
    first, second = _draw_sessions(factory(), 12, 1), _draw_sessions(factory(), 12, 1)
    assert first == second
    assert len(first) == 12
    assert len({json.dumps(str(s)) for s in first}) == 12  # no repeats
    assert _draw_sessions(factory(), 12, 2) != first


def test_demo_with_another_rules_file_dry_runs_each_code_and_fuzzes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # examples/planted_bug.py stacks two discounts past half off: the fuzz finds it, exit 1.
    out = demo_output(capsys, "--rules", str(EXAMPLES / "planted_bug.py"), code=1)
    assert "XMAS-2021" not in out
    codes = table_rows(out, "A cart of 100 for p1 with each code")
    assert [row[0] for row in codes] == ["no code", "coupon VIP25"]
    assert "VIP25: accepted" in codes[1]
    assert "VIOLATED property_at_most_half_off" in out


def test_demo_with_a_missing_rules_file_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--rules", "no/such/rules.py"]) == 2
    assert "not found" in capsys.readouterr().err


def _base_install(target: Path) -> None:
    """What ``pip install promo-sandbox`` puts on sys.path, without the dev extras.

    The wheel's packages, modules and force-included files as pyproject.toml lists
    them, and the installed distributions of the base dependencies (recursively,
    markers evaluated), linked from this environment.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    for name in wheel["only-include"]:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, target / name)
    for source, destination in wheel.get("force-include", {}).items():
        (target / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, target / destination)
    wanted = [Requirement(r) for r in project["project"]["dependencies"]]
    seen: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.name.lower() in seen:
            continue
        seen.add(requirement.name.lower())
        dist = importlib.metadata.distribution(requirement.name)
        wanted.extend(Requirement(r) for r in dist.requires or ())
        site = Path(str(dist.locate_file("")))
        for top in {
            f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")
        }:
            link = target / top
            if not link.exists():
                link.symlink_to(site / top)


def test_demo_exits_0_on_a_fresh_install(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _base_install(site)
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    result = subprocess.run(
        # -S: no site-packages, so nothing of this environment's dev tools is importable.
        [sys.executable, "-S", "-m", "sandbox", "demo"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # The wheel's own copy of the embedded rules, not the checkout's examples/.
    assert f"rules: {site / 'sandbox' / '_examples' / 'xmas.py'}" in result.stdout
    assert "no violations" in result.stdout


# ---------------------------------------------------------------------------
# fuzz: bad usage and rules that keep state


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        (
            "def property_x(state, sandbox, more):\n    return True\n",
            "property_x(state, sandbox, more) cannot",
        ),
        ("def property_x(state):\n    state.total_discount < 1\n", "property_x returned None"),
    ],
)
def test_fuzz_a_misused_property_is_bad_usage_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prop: str, expected: str
) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "def build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n" + prop
    )
    assert main(["fuzz", str(rules), "--examples", "5", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "property_NAME(state: IntegrationState) -> bool" in err


def test_fuzz_names_a_rule_that_keeps_state_in_a_module_level_set(tmp_path: Path) -> None:
    rules = tmp_path / "remembering.py"
    rules.write_text(
        "from sandbox import Sandbox, effects as e\n"
        "seen = set()\n"
        "def first_time(ctx):\n"
        "    new = (ctx.profile_id, ctx.total) not in seen\n"
        "    seen.add((ctx.profile_id, ctx.total))\n"
        "    return new\n"
        "def build():\n"
        "    sb = Sandbox(now='2026-12-01T10:00:00Z')\n"
        "    sb.campaign('Welcome').rule('first time', when=[first_time],\n"
        "                                then=[e.set_discount('hi', 5)])\n"
        "    return sb\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "fuzz", str(rules), "--seed", "1", "--examples", "40"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "rule 'first time' in campaign 'Welcome' answered differently for the same session "
        "and sandbox state: it keeps state outside the sandbox"
    ) in result.stdout
    assert "FAIL rules_keep_no_outside_state" in result.stdout


# Issue 8, item 11: the inputs of items 1, 4, 5, 6 and 9, each as a line of a sessions file.
HOSTILE_LINES = {
    "amount of 1e26 (item 1)": (
        '{"profileId": "p1", "coupon": "XMAS-2021", "total": 1e26}',
        "/total",
    ),
    "price of 9e999999 (item 2)": (
        '{"cartItems": [{"sku": "a", "quantity": 2, "price": 9e999999}], "total": 1}',
        "/cartItems/0/price",
    ),
    "a 4301-digit integer (item 4)": ('{"total": ' + "1" * 4301 + "}", ""),
    "1000 nested brackets (item 5)": ("[" * 1000 + "]" * 1000, ""),
    "attributes 450 deep (item 6)": (
        '{"attributes": ' + '{"a": ' * 450 + "1" + "}" * 450 + "}",
        "/attributes/a",
    ),
    "attributes 600 deep (item 6)": (
        '{"attributes": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}",
        "",
    ),
    "advance of 10**10 days (item 9)": ('{"advance": {"days": 10000000000}}', "/advance/days"),
    "advance of 999999999 days (item 9)": ('{"advance": {"days": 999999999}}', "/advance/days"),
    "advance of NaN days (item 9)": ('{"advance": {"days": NaN}}', ""),
}


@pytest.mark.parametrize("name", list(HOSTILE_LINES))
def test_eval_reports_each_hostile_line_as_that_lines_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    line, pointer = HOSTILE_LINES[name]
    sessions = tmp_path / "s.jsonl"
    sessions.write_text(line + '\n{"profileId": "p2", "total": 5}\n')
    assert main(["eval", XMAS, str(sessions)]) == 2
    captured = capsys.readouterr()
    assert "s.jsonl:1: " in captured.err
    assert "internal error" not in captured.err
    refused, answered = (json.loads(record) for record in captured.out.splitlines())
    assert refused["line"] == 1
    pointers = [e["source"].get("pointer") for e in refused["error"]["errors"]]
    assert any(p is not None and p.startswith(pointer) for p in pointers), pointers
    assert answered["customerSession"]["integrationId"] == "line-2"


# ---------------------------------------------------------------------------
# Output that cannot be written: one line on stderr naming where it was going and the
# system's reason, exit 74 (not 1, which says a property was violated), no traceback;
# the lines written before it left as they are.

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full here")
ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


class _Failing(io.StringIO):
    """A stream whose every write fails with ``errno``: a full disk, a closed pipe."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def write(self, text: str) -> int:
        raise OSError(self.code, os.strerror(self.code))


# One built-in check on three examples: a fuzz run to its report in a second or two.
FUZZ_ONE_CHECK = ["fuzz", XMAS, "--examples", "3", "--seed", "1", "--no-database"]
FUZZ_ONE_CHECK += ["--check", "rules_do_not_raise"]


def _long_sessions(path: Path, count: int = 3000) -> Path:
    return write_lines(
        path, *({"profileId": f"p{i % 40}", "total": 10 + i % 90} for i in range(count))
    )


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["eval", XMAS, "SESSIONS"],
        ["eval", XMAS, "SESSIONS", "--dry", "--explain"],
        FUZZ_ONE_CHECK,
        ["diff", XMAS, XMAS, "--sessions", "SESSIONS"],
        ["diff", XMAS, XMAS, "--examples", "3", "--seed", "1"],
    ],
    ids=lambda argv: " ".join(Path(a).name for a in argv),
)
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EPIPE], ids=["full-disk", "closed-pipe"])
def test_every_command_says_a_stdout_it_cannot_write_in_one_line_and_exits_74(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    code: int,
) -> None:
    sessions = write_lines(tmp_path / "s.jsonl", {"profileId": "p1", "total": 5})
    monkeypatch.setattr(sys, "stdout", _Failing(code))
    assert main([str(sessions) if a == "SESSIONS" else a for a in command]) == 74
    assert capsys.readouterr().err == f"error: cannot write to stdout: {os.strerror(code)}\n"


def test_a_stderr_that_cannot_be_written_is_exit_74_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = tmp_path / "s.jsonl"
    sessions.write_text("not json\n")  # a refused line: a message on stderr
    failing = _Failing(errno.ENOSPC)
    monkeypatch.setattr(sys, "stderr", failing)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert main(["eval", XMAS, str(sessions)]) == 74
    assert sys.stderr is failing  # main puts the streams back as it found them


@pytest.mark.parametrize(
    ("option", "target"),
    [
        (["eval", XMAS, "SESSIONS", "--out"], "the --out file"),
        ([*FUZZ_ONE_CHECK, "--junit"], "the --junit file"),
        ([*FUZZ_ONE_CHECK, "--json"], "the --json file"),
        (["diff", XMAS, XMAS, "--sessions", "SESSIONS", "--json"], "the --json file"),
    ],
    ids=["eval --out", "fuzz --junit", "fuzz --json", "diff --json"],
)
def test_a_file_the_cli_cannot_create_is_one_line_naming_it_and_exit_74(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], target: str
) -> None:
    sessions = write_lines(tmp_path / "s.jsonl", {"profileId": "p1", "total": 5})
    argv = [str(sessions) if a == "SESSIONS" else a for a in option] + [str(tmp_path)]
    assert main(argv) == 74
    reason = os.strerror(errno.EISDIR)
    assert capsys.readouterr().err == f"error: cannot write {target} {str(tmp_path)!r}: {reason}\n"


@pytest.mark.parametrize("where", ["a read-only folder", "/dev/full"])
def test_eval_out_on_a_full_disk_or_a_read_only_folder_is_one_line_and_exit_74(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    sessions = _long_sessions(tmp_path / "s.jsonl", 20)
    if where == "a read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder all the same")
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        path, reason = folder / "out.jsonl", os.strerror(errno.EACCES)
    else:
        if not DEV_FULL.exists():
            pytest.skip("no /dev/full here")
        path, reason = DEV_FULL, ENOSPC
    assert main(["eval", XMAS, str(sessions), "--out", str(path)]) == 74
    assert (
        capsys.readouterr().err == f"error: cannot write the --out file {str(path)!r}: {reason}\n"
    )


def _cli_into(stdout: IO[bytes], *argv: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m sandbox ARGV`` in its own process, writing its stdout to ``stdout``."""
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
    )


@needs_dev_full
@pytest.mark.parametrize(
    ("lines", "extra"),
    [(2, []), (3000, []), (3000, ["--dry", "--jobs", "2"])],
    ids=["at-the-last-flush", "mid-run", "mid-run-jobs-2"],
)
def test_eval_to_a_full_stdout_is_one_line_and_exit_74_in_a_real_process(
    tmp_path: Path, extra: list[str], lines: int
) -> None:
    # Two answers fit the buffer and fail only when it goes out at the end; 3,000 fill
    # it many times over.
    sessions = _long_sessions(tmp_path / "s.jsonl", lines)
    with DEV_FULL.open("wb") as full:
        result = _cli_into(full, "eval", XMAS, str(sessions), *extra)
    assert result.returncode == 74
    assert result.stderr.decode() == f"error: cannot write to stdout: {ENOSPC}\n"


@pytest.mark.parametrize("extra", [[], ["--dry", "--jobs", "2"]], ids=["sequential", "jobs-2"])
def test_eval_into_a_pipe_closed_early_is_one_line_exit_74_and_a_prefix(
    tmp_path: Path, extra: list[str]
) -> None:
    # `eval ... | head -1`: the reader takes one line and goes away.
    sessions = _long_sessions(tmp_path / "s.jsonl")
    with subprocess.Popen(
        [sys.executable, "-m", "sandbox", "eval", XMAS, str(sessions), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as run:
        assert run.stdout is not None
        assert run.stderr is not None
        first = run.stdout.readline()
        run.stdout.close()
        err = run.stderr.read()
        code = run.wait(timeout=120)
    assert code == 74
    assert err.decode() == f"error: cannot write to stdout: {os.strerror(errno.EPIPE)}\n"
    sb = load_rules(EXAMPLES / "xmas.py")[0]()
    expected = sb.update("line-1", {"profileId": "p0", "total": 10}, dry=True)
    assert json.loads(first) == json.loads(json.dumps(expected.to_wire()))


@needs_dev_full
def test_serve_with_a_full_stdout_stops_with_one_line_and_exit_74(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    with DEV_FULL.open("wb") as full:
        result = _cli_into(full, "serve", XMAS, "--port", "0")
    assert result.returncode == 74  # at its first line, the address and key: not serving blind
    assert result.stderr.decode() == f"error: cannot write to stdout: {ENOSPC}\n"


@needs_dev_full
def test_serve_with_a_full_stderr_drops_its_warnings_and_goes_on_serving() -> None:
    # uvicorn's warnings go through logging, which drops a record it cannot write (an
    # OSError) rather than stopping the program: a server is not stopped by its log.
    pytest.importorskip("uvicorn")
    with (
        DEV_FULL.open("wb") as full,
        subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", XMAS, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
        ) as server,
    ):
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split(" at ")[1].split()[0]
            host, port = url.removeprefix("http://").split(":")
            for _ in range(2):  # "Invalid HTTP request received.", a warning, each time
                with socket.create_connection((host, int(port)), timeout=30) as conn:
                    conn.sendall(b"NOT HTTP\r\n\r\n")
                    assert conn.recv(100).startswith(b"HTTP/1.1 400")
        finally:
            server.send_signal(signal.SIGINT)
            out, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "promo-sandbox: stopped" in out


def test_the_help_of_each_command_lists_the_exit_codes_it_can_end_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def codes(*argv: str) -> dict[int, str]:
        assert main([*argv, "--help"]) == 0
        epilog = capsys.readouterr().out.split("exit codes:\n")[1]
        listed: dict[int, str] = {}
        for line in epilog.splitlines():
            if line[:6].strip().isdigit():
                code, _, text = line.strip().partition(" ")
                listed[int(code)] = text.strip()
            else:
                listed[max(listed)] += " " + line.strip()
        return listed

    assert sorted(codes()) == [0, 1, 2, 3, 69, 74, 130]
    assert "diff: the two rule versions answer differently" in codes()[1]
    assert codes()[3].startswith("diff: no answer differs, but a change")
    assert sorted(codes("eval")) == [0, 2, 69, 74, 130]  # eval never says "violated"
    assert codes("eval")[2].startswith("a refused line")
    assert sorted(codes("diff")) == [0, 1, 2, 3, 69, 74, 130]
    assert codes("diff")[1] == "the two rule versions answer differently"
    assert "never exercised by the compared traffic" in codes("diff")[3]
    assert sorted(codes("fuzz")) == [0, 1, 2, 74, 130]
    assert sorted(codes("demo")) == [0, 1, 2, 74, 130]
    for command in ((), ("eval",), ("diff",)):
        assert "--dask-timeout seconds" in codes(*command)[69]
    for command in ((), ("eval",), ("fuzz",), ("diff",), ("demo",)):
        assert codes(*command)[74].startswith("the output could not be written")


def test_the_dask_timeout_help_states_the_runners_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sandbox.parallel import DASK_TIMEOUT, DaskRunner

    assert inspect.signature(DaskRunner).parameters["timeout"].default == DASK_TIMEOUT
    assert main(["eval", "--help"]) == 0
    assert f"(default {DASK_TIMEOUT:g})" in " ".join(capsys.readouterr().out.split())
