"""`eval --dry --jobs N` and `--dask ADDRESS`: the sequential run's output, byte for byte.

The oracle is the sequential `eval --dry` of the same file (one sandbox, line after
line); a few outcomes are also checked against what the rules file says (the coupon
expires on 2026-12-24, so it is accepted before a 30-day clock move and expired after).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import _LineEvaluator, _moves_clock, main
from sandbox.core import Sandbox
from sandbox.fuzzing import RulesFileError, load_rules
from sandbox.parallel import (
    FIRST_SHARD,
    MAX_SHARD,
    DaskRunner,
    LocalRunner,
    ParallelError,
    RulesSource,
    evaluate_dry,
)

ROOT = Path(__file__).parent.parent
XMAS = ROOT / "examples" / "xmas.py"
TIMEOUT = 120  # a hung run fails the test instead of hanging the suite
# A scheduler serves HTTP (health, metrics) even without a dashboard, on port 8787
# unless told otherwise.
FREE_HTTP_PORT = {"dashboard_address": "127.0.0.1:0"}


def _session_lines() -> list[bytes]:
    """Good and refused lines of every kind, and clock moves, across several shards."""
    lines = [
        b'{"profileId": "p1", "coupon": "XMAS-2021", "total": 80}',
        b'{"customerSessionId": "v2", "customerSession": {"profileId": "p2", '
        b'"couponCodes": ["XMAS-2021", "NOPE-1"], "cartItems": [{"sku": "SHOE-9", '
        b'"quantity": 2, "price": 30, "category": "shoes"}]}}',
        b"",
        b'{"profileId": "p1", "total": 80',  # not JSON
        b'{"profileId": "p1", "cartItems": [{"sku": "A", "quantity": 0, "price": 1}]}',
        b'{"profileId": "caf\xe9", "total": 1}',  # not UTF-8
        b'{"reopen": 7}',
    ]
    lines += [
        f'{{"profileId": "p{i}", "referral": "REF-2740", "total": {10 + i}}}'.encode()
        for i in range(20)
    ]
    lines.append(b'{"advance": {"days": 30}}')  # line 28: the coupon expires meanwhile
    lines.append(b'{"profileId": "p1", "coupon": "XMAS-2021", "total": 80}')  # line 29
    lines.append(b'{"advance": {"dayz": 1}}')  # a refused clock move
    lines.append(b'{"adv\\u0061nce": {"hours": 5}}')  # a clock move all the same
    lines += [
        f'{{"customerSessionId": "s{i}", "customerSession": {{"profileId": "p{i}", '
        f'"couponCodes": ["xmas-2021"]}}}}'.encode()
        for i in range(25)
    ]
    return lines


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "sessions.jsonl"
    path.write_bytes(b"\n".join(_session_lines()) + b"\n")
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "eval", *args],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def sequential(sessions: Path) -> subprocess.CompletedProcess[bytes]:
    return _cli(str(XMAS), str(sessions), "--dry")


def test_the_sequential_dry_run_is_a_fair_oracle(
    sequential: subprocess.CompletedProcess[bytes],
) -> None:
    # Facts of the rules file, not of the engine: the coupon is good until 2026-12-24.
    assert sequential.returncode == 2  # refused lines
    out = sequential.stdout.decode().split("\n")
    assert len(out) == len(_session_lines()) + 1  # one answer a line, and the final newline
    first, after_move = json.loads(out[0]), json.loads(out[28])
    assert first["effects"][0]["effectType"] == "acceptCoupon"
    assert json.loads(out[27]) == {"line": 28, "now": "2026-12-31T10:00:00+00:00"}
    assert after_move["effects"][0]["props"]["rejectionReason"] == "CouponExpired"
    assert json.loads(out[30]) == {"line": 31, "now": "2026-12-31T15:00:00+00:00"}
    refused = [
        n for n, line in enumerate(out, 1) if line.startswith('{"line": ') and "error" in line
    ]
    assert refused == [4, 5, 6, 7, 30]


def test_jobs_2_writes_the_sequential_output_byte_for_byte(
    sessions: Path, sequential: subprocess.CompletedProcess[bytes]
) -> None:
    parallel = _cli(str(XMAS), str(sessions), "--dry", "--jobs", "2")
    assert parallel.returncode == sequential.returncode
    assert parallel.stdout == sequential.stdout
    assert parallel.stderr == sequential.stderr  # each refusal said, in the same order
    assert b"Traceback" not in parallel.stderr


def test_jobs_with_strict_stops_at_the_first_refused_line_as_the_sequential_run(
    sessions: Path,
) -> None:
    sequential = _cli(str(XMAS), str(sessions), "--dry", "--strict")
    parallel = _cli(str(XMAS), str(sessions), "--dry", "--strict", "--jobs", "2")
    assert parallel.returncode == sequential.returncode == 2
    assert parallel.stdout == sequential.stdout
    assert len(parallel.stdout.splitlines()) == 4  # lines 1-3 and line 4's error record
    assert b"stopped at line 4" in parallel.stderr


def _evaluate_in_order(lines: list[bytes]) -> list[tuple[str, str | None]]:
    sb = load_rules(XMAS)[0]()
    evaluate = _LineEvaluator("api", True, False)
    return [evaluate(sb, n, raw) for n, raw in enumerate(lines, start=1)]


def test_evaluate_dry_on_local_processes_gives_the_records_of_a_sequential_loop() -> None:
    lines = _session_lines()
    with LocalRunner(jobs=2) as runner:
        records = list(
            evaluate_dry(
                XMAS,
                enumerate(lines, start=1),
                _LineEvaluator("api", True, False),
                runner=runner,
                moves_clock=_moves_clock,
            )
        )
    assert records == _evaluate_in_order(lines)


class _InlineRunner:
    """Runs each shard at once in this process; counts what was submitted."""

    in_flight = 3

    def __init__(self) -> None:
        self.shards: list[int] = []

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Future[Any]:
        self.shards.append(len(arg.lines))
        future: Future[Any] = Future()
        future.set_result(fn(arg))
        return future

    def broken(self, exc: BaseException) -> ParallelError | None:
        return None


def _line_number(sb: Sandbox, number: int, raw: bytes) -> int:
    return number


def test_evaluate_dry_reads_a_bounded_stretch_ahead_of_what_it_yields() -> None:
    read = 0

    def endless() -> Iterator[tuple[int, bytes]]:
        nonlocal read
        for number in itertools.count(1):
            read = number
            yield number, b"{}"

    runner = _InlineRunner()
    records = evaluate_dry(XMAS, endless(), _line_number, runner=runner)
    taken = list(itertools.islice(records, 5000))
    records.close()
    assert taken == list(range(1, 5001))
    # At most `in_flight` shards of at most MAX_SHARD lines beyond what was yielded.
    assert read <= 5000 + runner.in_flight * MAX_SHARD
    assert runner.shards[:3] == [FIRST_SHARD, 2 * FIRST_SHARD, 4 * FIRST_SHARD]
    assert max(runner.shards) == MAX_SHARD


def test_a_broken_rules_file_raises_before_any_shard_is_submitted(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    runner = _InlineRunner()
    with pytest.raises(RulesFileError, match="syntax error"):
        next(evaluate_dry(broken, [(1, b"{}")], _line_number, runner=runner))
    assert runner.shards == []


def test_jobs_with_a_broken_rules_file_is_exit_2_before_any_output(
    tmp_path: Path, sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    assert main(["eval", str(broken), str(sessions), "--dry", "--jobs", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "broken.py:1: syntax error" in captured.err


def test_jobs_without_dry_is_bad_usage_saying_why(
    sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(XMAS), str(sessions), "--jobs", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--jobs runs dry evaluations only: add --dry" in captured.err
    assert "stays sequential" in captured.err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--dry", "--jobs", "0"], "--jobs must be at least 1, got 0"),
        (["--dry", "--jobs", "2", "--dask-timeout", "5"], "--dask-timeout goes with --dask"),
        (
            ["--dry", "--dask", "tcp://127.0.0.1:1", "--dask-timeout", "0"],
            "--dask-timeout must be seconds > 0, got 0",
        ),
        (
            ["--dry", "--dask", "tcp://127.0.0.1:1", "--dask-timeout", "nan"],
            "--dask-timeout must be seconds > 0, got nan",
        ),
        (["--dask", "tcp://127.0.0.1:1"], "--dask runs dry evaluations only"),
        (["--dry", "--jobs", "2", "--dask", "tcp://127.0.0.1:1"], "not allowed with"),
    ],
)
def test_bad_parallel_options_are_exit_2_with_a_message(
    sessions: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert main(["eval", str(XMAS), str(sessions), *argv]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "dies",
    ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)"],
    ids=["a-rule-exits-the-process", "killed"],
)
def test_a_worker_that_dies_ends_the_run_with_exit_69_and_a_prefix_not_a_hang(
    tmp_path: Path, sessions: Path, dies: str
) -> None:
    rules = tmp_path / "crash.py"
    rules.write_text(
        "import os, signal\n"
        "from sandbox import Sandbox, effects as e\n"
        "def build():\n"
        "    sb = Sandbox(now='2026-12-01T10:00:00Z')\n"
        "    sb.campaign('Crash').rule('dies on p13', when=[lambda ctx: ctx.profile_id == 'p13'"
        f" and {dies}], then=[e.set_discount('x', percent=1)])\n"
        "    return sb\n"
    )
    result = _cli(str(rules), str(sessions), "--dry", "--jobs", "2")
    assert result.returncode == 69
    assert b"error: a worker process ended abruptly" in result.stderr
    # p13 is line 21, in the second shard (lines 9-24): the answers stop at or before it.
    assert re.search(rb"no answers from line (1|9) on", result.stderr), result.stderr
    # The first shard's answers, or none: as the sequential run of the lines before it.
    first_shard = tmp_path / "first.jsonl"
    first_shard.write_bytes(b"".join(sessions.read_bytes().splitlines(keepends=True)[:8]))
    assert result.stdout in (b"", _cli(str(rules), str(first_shard), "--dry").stdout)
    assert b"Traceback" not in result.stderr


def test_dask_without_the_extra_is_exit_2_with_the_install_hint(
    sessions: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    assert main(["eval", str(XMAS), str(sessions), "--dry", "--dask", "tcp://127.0.0.1:1"]) == 2
    assert "pip install 'promo-sandbox[dask]'" in capsys.readouterr().err


def test_import_sandbox_and_its_cli_load_no_dask() -> None:
    code = (
        "import sys, sandbox, sandbox.cli, sandbox.parallel\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'})\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------
# Dask, on a LocalCluster started here: two worker threads in this process, on
# free loopback ports, reachable over TCP by the CLI in its own process.


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        scheduler_kwargs=FREE_HTTP_PORT,
    ) as started:
        yield started


def test_dask_writes_the_sequential_output_byte_for_byte(
    cluster: Any, sessions: Path, sequential: subprocess.CompletedProcess[bytes]
) -> None:
    result = _cli(str(XMAS), str(sessions), "--dry", "--dask", cluster.scheduler_address)
    assert result.returncode == sequential.returncode
    assert result.stdout == sequential.stdout
    assert result.stderr.endswith(sequential.stderr.splitlines(keepends=True)[-1])
    refusals = [line for line in sequential.stderr.splitlines() if b"sessions.jsonl:" in line]
    assert [line for line in result.stderr.splitlines() if b"sessions.jsonl:" in line] == refusals


def test_evaluate_dry_on_a_dask_client_gives_the_records_of_a_sequential_loop(
    cluster: Any,
) -> None:
    import distributed

    lines = _session_lines()
    with distributed.Client(cluster) as client, DaskRunner(client=client) as runner:
        records = list(
            evaluate_dry(
                XMAS,
                enumerate(lines, start=1),
                _LineEvaluator("api", True, False),
                runner=runner,
                moves_clock=_moves_clock,
            )
        )
        assert client.status == "running"  # a client it was given is left open
    assert records == _evaluate_in_order(lines)


def test_coverage_over_dask_worker_threads_counts_each_answer_once(cluster: Any) -> None:
    # The cluster's two workers are threads of this process: each counts its own
    # sandbox's answers only, or both would count every answer given meanwhile.
    import distributed

    from sandbox.coverage import Coverage

    lines = _session_lines()
    sb, sequential = load_rules(XMAS)[0](), Coverage()
    evaluate = _LineEvaluator("api", True, False)
    with sequential.recording(sandbox=sb):
        for number, raw in enumerate(lines, start=1):
            evaluate(sb, number, raw)
    merged = Coverage()
    with distributed.Client(cluster) as client, DaskRunner(client=client) as runner:
        list(
            evaluate_dry(
                XMAS,
                enumerate(lines, start=1),
                evaluate,
                runner=runner,
                moves_clock=_moves_clock,
                coverage=merged,
            )
        )
    assert merged.to_json() == sequential.to_json()
    assert merged.answers > 40


def test_an_unreachable_dask_scheduler_is_a_parallel_error_naming_it() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(
        ParallelError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"
    ):
        DaskRunner("tcp://127.0.0.1:9", timeout=1)


def test_the_workers_load_the_rules_text_they_were_sent_when_the_file_changed(
    tmp_path: Path,
) -> None:
    # A remote worker has no copy of the file; locally, a file edited mid-run.
    rules = tmp_path / "rules.py"
    rules.write_text(XMAS.read_text())
    source, sb = RulesSource.read(rules), load_rules(rules)[0]()
    rules.write_text("raise ValueError('not these rules')\n")
    line = b'{"profileId": "p1", "coupon": "XMAS-2021", "total": 80}'
    with LocalRunner(jobs=1) as runner:
        records = list(
            evaluate_dry(
                source, [(1, line)], _LineEvaluator("x", True, False), runner=runner, sandbox=sb
            )
        )
    [(answer, refusal)] = records
    assert refusal is None
    assert json.loads(answer)["effects"][0]["effectType"] == "acceptCoupon"


# ---------------------------------------------------------------------------
# A cluster that goes away mid-run: a one-line message, exit 69, and the answers
# written before it the first lines of the full run's. Each test starts its own
# cluster, so the one above stays whole.

_LONG_RUN = 6000  # lines: seconds of work for one worker thread, cut short within one


@pytest.fixture(scope="module")
def long_sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.jsonl"
    path.write_text(
        "".join(
            f'{{"profileId": "p{i % 50}", "coupon": "XMAS-2021", "total": {10 + i % 90}}}\n'
            for i in range(_LONG_RUN)
        )
    )
    return path


def _cut_short(args: list[str], stop: Callable[[], None]) -> tuple[int, bytes, bytes]:
    """Run eval; once its first answer is out, ``stop()`` the cluster. The exit code,
    stdout and stderr."""
    with subprocess.Popen(
        [sys.executable, "-m", "sandbox", "eval", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: communicate() reads on from the end of the first line
    ) as run:
        try:
            assert run.stdout is not None
            first = run.stdout.readline()
            stop()
            out, err = run.communicate(timeout=TIMEOUT)
        finally:
            run.kill()
    return run.returncode, first + out, err


def _is_a_prefix_of_the_sequential_answers(out: bytes, sessions: Path) -> bool:
    # The sequential dry run of as many lines as were answered: dry lines are independent.
    answered = out.decode().splitlines(keepends=True)
    lines = sessions.read_bytes().splitlines(keepends=True)[: len(answered)]
    expected = [answer for answer, _ in _evaluate_in_order(lines)]
    return bool(answered) and len(answered) < _LONG_RUN and answered == expected


_CLUSTER_SCRIPT = """
import sys, distributed
with distributed.LocalCluster(
    n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
    scheduler_port=0, dashboard_address=None,
    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
) as cluster:
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills this process
"""


def test_a_dask_scheduler_killed_mid_run_is_exit_69_with_one_line_and_a_prefix(
    long_sessions: Path,
) -> None:
    pytest.importorskip("distributed")
    with subprocess.Popen(
        [sys.executable, "-c", _CLUSTER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as cluster:
        try:
            assert cluster.stdout is not None
            address = cluster.stdout.readline().strip()
            assert address.startswith("tcp://"), address
            code, out, err = _cut_short(
                [str(XMAS), str(long_sessions), "--dry", "--dask", address], cluster.kill
            )
        finally:
            cluster.kill()
    assert code == 69, err
    said = err.decode()
    assert said.count("\n") == 1, said  # one line: distributed's own logs are quiet
    assert said.startswith(f"error: lost the connection to the Dask scheduler at '{address}'")
    assert re.search(r"no answers from line \d+ on$", said.strip())
    assert _is_a_prefix_of_the_sequential_answers(out, long_sessions)


def test_no_live_dask_worker_for_the_timeout_is_exit_69_with_one_line_and_a_prefix(
    long_sessions: Path,
) -> None:
    # A worker without a nanny is not restarted: once it is killed, the scheduler
    # holds the shards with nowhere to run them.
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        scheduler_kwargs=FREE_HTTP_PORT,
    ) as cluster:
        address = cluster.scheduler_address
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "distributed.cli.dask_worker", address),
                *("--no-nanny", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            cluster.wait_for_workers(1, timeout=TIMEOUT)
            code, out, err = _cut_short(
                [
                    str(XMAS),
                    str(long_sessions),
                    "--dry",
                    "--dask",
                    address,
                    "--dask-timeout",
                    "1.5",
                ],
                worker.kill,
            )
        finally:
            worker.kill()
            worker.wait()
    assert code == 69, err
    said = err.decode()
    assert said.count("\n") == 1, said  # one line: distributed's own logs are quiet
    assert said.startswith(
        f"error: the Dask cluster at '{address}' had no live worker for 1.5 s (--dask-timeout)"
    )
    assert _is_a_prefix_of_the_sequential_answers(out, long_sessions)
