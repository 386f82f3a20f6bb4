"""The command line: ``python -m sandbox demo | eval | fuzz``.

- ``demo [--rules FILE]``: the embedded default rules file
  (``examples/xmas.py``, or the copy inside the wheel) in a few seconds: a
  table of a dozen sessions drawn from ``strategies.valid_sessions`` and
  ``invalid_sessions`` with a fixed seed (the same every run), each a dry
  run, with their codes' outcomes, discounts and totals; a per-profile limit
  reached and released by a cancel; then a short ``fuzz`` and its verdict.
  With another rules file, a dry run per code of the file instead of the
  story. Exits 1 when the fuzz finds a violation, as ``fuzz`` does.
- ``eval RULES.py SESSIONS.jsonl [--dry] [--out FILE] [--strict] [--explain]
  [--jobs N | --dask ADDRESS [--dask-timeout S]] [--coverage]``:
  one call per line, in order, against one sandbox. A line is a session dict
  (session id ``line-N``), ``{"customerSessionId", "customerSession", "dry"}``,
  or one of the lifecycle steps ``fuzz`` prints (``{"reopen": ID}``,
  ``{"returnItems": ID, "returnedCartItems": [...]}``, ``{"advance": {"days":
  N}}``, at most a century a line). Output line N answers input line N, so
  the two files join line by line: an IntegrationState in wire JSON; for a
  clock move ``{"line": N, "now": ISO-TIME}``; for a refused line
  ``{"line": N, "error": {"message", "errors": [{"title", "source"}]}}``
  (Talon.One's ErrorResponse; ``source`` is ``{"pointer"}`` into the line, or
  ``{"line", "column"}`` for a line that is not UTF-8 or not JSON, as the
  decoder found it); a blank line for a blank line. Each refusal is also said
  on stderr as ``FILE:N: ...`` (``FILE:N:COLUMN: ...``). The run goes on past
  a refused line and exits 2 at the end, or stops there with ``--strict``.
  The file is UTF-8 (a UTF-8 byte-order mark is fine; a UTF-16 or UTF-32 file
  is refused at once). It is read, evaluated and written line by line, so
  memory stays flat however long the file; only what the sandbox stores grows
  (every session id it has seen: reuse ids, or use ``--dry``, for huge files).
  ``--dry`` evaluates every line as a dry run (a clock move still moves the
  clock); ``--out FILE`` writes the answers there; ``--explain`` prints why
  each rule fired or not instead of JSON. On a terminal, a progress bar
  (tqdm) is drawn on stderr unless the answers scroll past on that terminal.
  With ``--dry``, ``--jobs N`` evaluates in N local worker processes and
  ``--dask ADDRESS`` on a Dask cluster (:mod:`sandbox.parallel`): each worker
  builds the sandbox from the rules file, and the output (stdout, the stderr
  messages, the exit code) is the sequential run's, in input order. Clock moves
  are applied in order in this process; the lines after one are evaluated at
  the new time. Without ``--dry`` both are refused (exit 2): a run that stores
  sessions carries state from line to line, so it stays sequential. A worker
  process that dies, a Dask scheduler lost, or no live Dask worker for
  ``--dask-timeout`` seconds (default 30) ends the run with exit 69; the answers
  written before it are the first lines of the full run's.
  ``--coverage`` prints the rule coverage of the run (:mod:`sandbox.coverage`)
  on stderr at the end, the same with ``--jobs``/``--dask`` (each worker counts
  its shards and sends the counts back); a ``--strict`` stop prints none.
- ``fuzz RULES.py [--examples N] [--seed S]``: checks the built-in invariants
  and the file's own ``property_*`` functions on generated sessions and
  lifecycles; prints each shrunk counterexample as replayable JSON.
- ``diff OLD.py NEW.py [--sessions FILE [--dry] [--jobs N | --dask ADDRESS]]
  [--examples N] [--version 1|2] [--seed S] [--json FILE]``: the same traffic
  fed to both rule versions, each carrying its own state as ``eval`` does
  (recorded lines, or generated lifecycles), every answer compared
  (:mod:`sandbox.diff`); the differing sessions by id, what each version changed
  by source and whether the traffic exercised it. Exits 1 when an answer
  differs, 3 when none does but a change was never exercised.

- ``serve RULES.py [--host H] [--port P] [--api-key KEY] [--max-body BYTES]
  [--state FILE]``: the rules as a local Talon.One Integration API
  (:mod:`sandbox.server`, the ``server`` extra), until Ctrl-C; the API key is
  printed at start. Request bodies over ``--max-body`` (default 1MiB) are
  answered 413. ``--state FILE`` keeps the whole state across restarts. Each
  setting may come from the environment instead (``PROMO_SANDBOX_RULES``,
  ``_HOST``, ``_PORT``, ``_API_KEY``, ``_MAX_BODY``, ``_STATE``); a flag wins.

Exit codes: 0 ok; 1 an invariant or property was violated (``fuzz``, ``demo``),
or the two rule versions answer differently (``diff``); 3 (``diff``) no answer
differs but a change was never exercised by the traffic; 2 bad usage or input (a
message on stderr, never a traceback; an unexpected error on one ``eval`` line
is reported as that line's error, as a bug to report); 69 (sysexits'
EX_UNAVAILABLE) the ``--jobs`` or ``--dask`` workers went away; 74 (EX_IOERR)
output could not be written: a full disk, a closed pipe (``eval ... | head``),
an ``--out``, ``--json`` or ``--junit`` file that cannot be created, said in one
line naming the file (or stdout) and the system's reason, the lines written
before it left as they are; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TextIO, cast

import attrs

from sandbox.codec import dumps
from sandbox.core import Sandbox
from sandbox.errors import SandboxError, ValidationError
from sandbox.models import NewCustomerSession
from sandbox.state import IntegrationState, ProfileState
from sandbox.steps import TextError, decode_line, parse_line, read_step, short
from sandbox.talon import EffectType

DEFAULT_RULES = "examples/xmas.py"


EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE
EXIT_OUTPUT = 74  # sysexits.h EX_IOERR
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
EXIT_NOT_EXERCISED = 3  # diff: no difference seen, but a change was never exercised
DIFF_EXAMPLES = 100
_NOT_EXERCISED = (
    "no answer differs, but a change (a rule, limit, code, window or group) was never "
    "exercised by the compared traffic (a condition never seen both true and false, a "
    "limit never reached): not an all-clear"
)


class UsageError(SandboxError):
    """Bad command-line input; exit code 2."""


class OutputError(SandboxError, OSError):
    """Output that could not be written (a full disk, a closed pipe, a file that cannot
    be created), naming where it was going and the OS's reason; exit code 74.

    Still an OSError, so that code which knows output can fail keeps its own policy:
    logging (uvicorn's warnings under ``serve``) drops a record it cannot write and
    goes on, as it does for any OSError.
    """

    def __init__(self, target: str, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror)
        self.target = target
        self.reason = exc.strerror or str(exc)

    def __str__(self) -> str:
        return f"cannot write {self.target}: {self.reason}"


class _Guarded:
    """A text stream whose write, flush and close raise OutputError naming ``target``
    instead of an OSError; everything else is the stream's own."""

    def __init__(self, stream: IO[str], target: str) -> None:
        self.stream = stream
        self.target = target

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            raise OutputError(self.target, exc) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise OutputError(self.target, exc) from None

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError as exc:
            raise OutputError(self.target, exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def default_rules_path() -> Path:
    """The embedded default: the checkout's examples/, or the copy inside the wheel."""
    checkout = Path(__file__).resolve().parent.parent / DEFAULT_RULES
    if checkout.is_file():
        return checkout
    packaged = Path(__file__).resolve().parent / "_examples" / "xmas.py"
    if packaged.is_file():
        return packaged
    raise UsageError(f"the default rules file {DEFAULT_RULES} is missing from this installation")


def _load(path: str | Path) -> Callable[[], Sandbox]:
    from sandbox.fuzzing import load_rules

    factory, _ = load_rules(path)
    return factory


# ---------------------------------------------------------------------------
# demo

_CODE_OUTCOMES = (
    EffectType.ACCEPT_COUPON,
    EffectType.REJECT_COUPON,
    EffectType.ACCEPT_REFERRAL,
    EffectType.REJECT_REFERRAL,
)
DEMO_SEED = 2026
DEMO_SESSIONS = 12
DEMO_FUZZ_EXAMPLES = 25


def _demo(args: argparse.Namespace) -> int:
    path = Path(args.rules) if args.rules else default_rules_path()
    sb = _load(path)()
    print(f"rules: {path}  ({len(sb.campaigns)} campaigns, clock {sb.now.isoformat()})")
    _demo_generated(sb)
    if args.rules and not _has_coupon(sb, "XMAS-2021"):
        _demo_codes(sb)
    else:
        _demo_story(sb)
    return _demo_fuzz(path)


def _demo_generated(sb: Sandbox) -> None:
    """A table of sessions drawn from the strategies with a fixed seed, each a dry run."""
    sessions = _draw_sessions(sb, DEMO_SESSIONS, DEMO_SEED)
    print(
        f"\n{len(sessions)} generated sessions (strategies.valid_sessions and "
        f"invalid_sessions, seed {DEMO_SEED}), each a dry run:"
    )
    rows = []
    for number, session in enumerate(sessions, start=1):
        state = sb.update(f"demo-{number}", session, dry=True)
        rows.append(_row(str(number), session.profile_id or "-", state))
    _table(("#", "profile", "total", "codes: outcome", "discounts", "to pay"), rows)


def _draw_sessions(sb: Sandbox, count: int, seed: int) -> list[NewCustomerSession]:
    """``count`` sessions, half valid and half with one planted flaw, the same every run."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from strategies import invalid_sessions, reachable_flaws, valid_sessions

    strategy = valid_sessions(sb)
    if reachable_flaws(sb):
        strategy = st.one_of(strategy, invalid_sessions(sb).map(lambda flawed: flawed.session))
    drawn: list[NewCustomerSession] = []

    # Drawn as Hypothesis draws a test's examples, seeded: strategy.example() is
    # neither repeatable nor meant for use outside an interactive session.
    @hypothesis_seed(seed)
    @settings(
        max_examples=count * 3,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(session: NewCustomerSession) -> None:
        if len(drawn) < count and session not in drawn:
            drawn.append(session)

    collect()
    return drawn


def _row(first: str, profile: str, state: IntegrationState) -> tuple[str, ...]:
    """One answer as table cells: codes with their outcome, discounts by name, totals."""
    session = state.session
    outcomes = [
        f"{e.value}: {e.rejection_reason or 'accepted'}"
        for e in state.effects
        if e.effect_type in _CODE_OUTCOMES
    ]
    discounts: dict[str, Decimal] = {}
    for effect in state.effects:
        if effect.effect_type.is_discount:
            # A per-item discount is one effect per cart line, named "NAME#POSITION".
            name = str(effect.name).removesuffix(f"#{effect.props.get('position')}")
            discounts[name] = discounts.get(name, Decimal(0)) + effect.props["value"]
    return (
        first,
        profile,
        str(session.effective_total),
        "; ".join(outcomes) or "-",
        ", ".join(f"{name} {value}" for name, value in discounts.items()) or "-",
        str(state.discounted_total),
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, widest: int = 44) -> None:
    """Rows in aligned columns, numbers right-aligned, long cells cut with an ellipsis."""
    cells = [[c if len(c) <= widest else c[: widest - 1] + "…" for c in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(head)]
    numeric = [all(_is_number(row[i]) for row in cells) for i in range(len(head))]

    def line(row: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                c.rjust(w) if num else c.ljust(w)
                for c, w, num in zip(row, widths, numeric, strict=True)
            ).rstrip()
        )

    print(line(head))
    for row in cells:
        print(line(row))


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _demo_story(sb: Sandbox) -> None:
    """The embedded rules' lifecycle: a per-profile limit reached, then freed by a cancel."""
    print("\nA limit reached and released (examples/xmas.py: one XMAS-2021 per profile):")
    cart = [
        {"sku": "SWEATER-1", "name": "Sweater", "quantity": 1, "price": 45, "category": "clothes"},
        {"sku": "SHOE-9", "name": "Boots", "quantity": 1, "price": 30, "category": "shoes"},
    ]
    first = {"profileId": "p1", "coupon": "XMAS-2021", "cartItems": cart}
    second = {"profileId": "p1", "coupon": "xmas-2021", "cartItems": [{**cart[0], "quantity": 2}]}
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("s1", "p1 opens a session with XMAS-2021", first),
        ("s1", "p1 closes it: the answer is committed", {**first, "state": "closed"}),
        ("s2", "p1 tries XMAS-2021 again, second session", second),
        ("s1", "p1 cancels the first order", {"state": "cancelled"}),
        ("s2", "p1's second session, re-sent", second),
    ]
    rows = []
    refused: IntegrationState | None = None
    for session_id, title, payload in steps:
        state = sb.update(session_id, payload)
        row = list(_row(session_id, title, state))
        if state.rollbacks:
            kinds = [e.effect_type.value.removeprefix("rollback").lower() for e in state.rollbacks]
            row[3] = "rolled back: " + ", ".join(
                f"{kinds.count(k)} {k}" + ("s" if kinds.count(k) > 1 else "")
                for k in dict.fromkeys(kinds)
            )
        row.append(str(sb.get_coupon("XMAS-2021").usage_counter))
        rows.append(row)
        if state.rejected_coupons and refused is None:
            refused = state
    _table(("session", "step", "total", "outcome", "discounts", "to pay", "XMAS-2021 used"), rows)
    if refused is not None:
        print("\nexplain() of the refused one:")
        print("  " + refused.explain().replace("\n", "\n  "))


def _has_coupon(sb: Sandbox, code: str) -> bool:
    try:
        sb.get_coupon(code)
    except SandboxError:
        return False
    return True


def _demo_codes(sb: Sandbox) -> None:
    """A rules file of the user's own: a dry run without a code, then one per code."""
    sessions: list[tuple[str, dict[str, Any]]] = [("no code", {"profileId": "p1", "total": 100})]
    for campaign in sb.campaigns:
        for code in campaign.coupons:
            sessions.append((f"coupon {code}", {"profileId": "p1", "coupon": code, "total": 100}))
        for code in campaign.referrals:
            sessions.append(
                (f"referral {code}", {"profileId": "p1", "referral": code, "total": 100})
            )
    print("\nA cart of 100 for p1 with each code of the file, each a dry run:")
    rows = [
        _row(title, "p1", sb.update(f"demo-code-{number}", payload, dry=True))
        for number, (title, payload) in enumerate(sessions, start=1)
    ]
    _table(("with", "profile", "total", "codes: outcome", "discounts", "to pay"), rows)


def _demo_fuzz(path: Path) -> int:
    from sandbox.fuzzing import fuzz

    report = fuzz(path, examples=DEMO_FUZZ_EXAMPLES, seed=1)
    print(f"\nA short fuzz ({DEMO_FUZZ_EXAMPLES} examples a check; `fuzz` runs 200 by default):")
    print(report.render())
    print(
        f"\nnext: python -m sandbox eval {path} SESSIONS.jsonl   (one answer per line)"
        f"\n      python -m sandbox fuzz {path} --examples 500"
    )
    return 1 if report.violations else 0


# ---------------------------------------------------------------------------
# eval

_UNICODE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"


@attrs.frozen
class _LineEvaluator:
    """One input line to its output text and, for a refused line, what to say on
    stderr. A module-level class, so the parallel runner can ship it to workers."""

    name: str
    dry: bool
    explain: bool

    def __call__(self, sb: Sandbox, number: int, raw: bytes) -> tuple[str, str | None]:
        try:
            text = decode_line(raw)
            if not text.strip():
                # An empty output line, so that output line N still answers input line N.
                return ("" if self.explain else "\n"), None
            return self._answer(number, read_step(parse_line(text), number)(sb, self.dry)), None
        except TextError as exc:
            return self._refuse(number, exc, f"{exc.title} at line {number}, column {exc.column}")
        except SandboxError as exc:
            return self._refuse(number, exc, str(exc))
        except Exception as exc:
            # A bug of the sandbox, not of the input; still no traceback, and not exit 1.
            message = (
                f"internal error: {type(exc).__name__}: {short(str(exc))} "
                "(a bug in promo-sandbox, not in your input: please report it with this line)"
            )
            return self._refuse(number, exc, message)

    def _answer(self, number: int, result: IntegrationState | ProfileState | datetime) -> str:
        where = f"{self.name}:{number}"
        if isinstance(result, datetime):  # a clock move answers with the new time
            if self.explain:
                return f"{where}: clock now {result.isoformat()}\n\n"
            return json.dumps({"line": number, "now": result.isoformat()}) + "\n"
        if self.explain:
            return f"{where}: {result.explain()}\n\n"
        return json.dumps(result.to_wire(), allow_nan=False) + "\n"

    def _refuse(self, number: int, exc: Exception, message: str) -> tuple[str, str]:
        """Line ``number``'s output line (an error record) and why it was refused."""
        if isinstance(exc, TextError):  # file:line:column, as compilers say it
            said = f"{self.name}:{number}:{exc.column}: {exc.title}"
        else:
            said = f"{self.name}:{number}: {message}"
        if self.explain:
            return "", said
        return json.dumps({"line": number, "error": _error_body(number, exc, message)}) + "\n", said


class _Eval:
    """One ``eval`` run: reads, evaluates and writes line by line, so memory stays
    flat however long the input (only what the sandbox itself stores grows)."""

    def __init__(self, args: argparse.Namespace, sb: Sandbox, out: IO[str]) -> None:
        self.sb = sb
        self.out = out
        self.evaluate = _LineEvaluator(args.sessions, args.dry, args.explain)
        self.progress: Any = None  # a tqdm bar, when stderr is a terminal

    def say(self, message: str) -> None:
        """A message on stderr, drawn above the progress bar if there is one."""
        if self.progress is not None:
            self.progress.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def line(self, number: int, raw: bytes) -> bool:
        """Evaluate one input line and write its output line; False if it was refused."""
        return self.write(self.evaluate(self.sb, number, raw))

    def write(self, record: tuple[str, str | None]) -> bool:
        """Write one line's answer (and say why it was refused); False if it was."""
        answer, refusal = record
        if refusal is not None:
            self.say(refusal)
        self.out.write(answer)
        return refusal is None


def _error_body(number: int, exc: Exception, message: str) -> dict[str, Any]:
    """Talon.One's ErrorResponse: ``message`` and ``errors`` of ``{title, source}``."""
    errors: list[dict[str, Any]]
    if isinstance(exc, ValidationError):
        errors = [{"title": p.message, "source": {"pointer": p.pointer}} for p in exc.errors]
    elif isinstance(exc, TextError):
        errors = [{"title": exc.title, "source": {"line": number, "column": exc.column}}]
    else:
        errors = [{"title": message, "source": {"line": number}}]
    return {"message": message.splitlines()[0], "errors": errors}


def _eval(args: argparse.Namespace) -> int:
    parallel = args.jobs is not None or args.dask is not None
    if parallel and not args.dry:
        option = "--jobs" if args.jobs is not None else "--dask"
        raise UsageError(
            f"{option} runs dry evaluations only: add --dry. A run that stores its sessions "
            "carries state from line to line (limit counters, stored sessions, profiles, "
            "created codes), so each line depends on the ones before it and the run stays "
            "sequential"
        )
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    sb = _load(args.rules)()  # a broken rules file is exit 2 before any work
    # What is loaded now (the rules, the library) lives as long as the run: out of the
    # garbage collector's sight, so its passes over a long run's sessions stay short.
    gc.freeze()
    coverage = _coverage(args)
    with contextlib.ExitStack() as files:
        source, size = _open_input(args.sessions, files)
        run = _Eval(args, sb, _open_output(args.out, args.sessions, files))
        if _wants_progress(args):
            from tqdm import tqdm

            run.progress = files.enter_context(
                tqdm(
                    total=size,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc="eval",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )
            )
        lines = _numbered(source, args.sessions, run.progress)
        records: Iterator[tuple[int, tuple[str, str | None]]]
        if parallel:
            records = _parallel(args, sb, run, lines, files, coverage)
        else:
            if coverage is not None:
                coverage.know(sb)  # every rule listed, in the file's order, reached or not
                files.enter_context(coverage.recording(sandbox=sb))
            records = ((number, run.evaluate(sb, number, raw)) for number, raw in lines)
        refused = 0
        for number, record in records:
            if not run.write(record):
                refused += 1
                if args.strict:
                    run.say(f"stopped at line {number}, the first refused line (--strict)")
                    if coverage is not None:
                        run.say("no rule coverage report: the run stopped before the end")
                    return 2
    if refused:
        print(f"{refused} line(s) refused, nothing stored for them", file=sys.stderr)
    if coverage is not None:
        # On stderr: stdout stays one answer per input line.
        print(f"\n{coverage.report()}", file=sys.stderr)
    return 2 if refused else 0


def _numbered(source: IO[bytes], path: str, progress: Any) -> Iterator[tuple[int, bytes]]:
    """The input's lines with their numbers, the first without its byte-order mark."""
    for number, raw in enumerate(source, start=1):
        if progress is not None:
            progress.update(len(raw))
        yield number, (_first_line(raw, path) if number == 1 else raw)


def _parallel(
    args: argparse.Namespace,
    sb: Sandbox,
    run: _Eval,
    lines: Iterator[tuple[int, bytes]],
    files: contextlib.ExitStack,
    coverage: Any = None,
) -> Iterator[tuple[int, tuple[str, str | None]]]:
    """``--jobs N`` / ``--dask ADDRESS``: the same records as the sequential run, in the
    same order, evaluated by workers that each build the sandbox from the rules file.
    Clock moves are applied here in order; each shard is handed out at the clock of
    its place in the file. With ``coverage``, each shard's rule coverage comes back
    with its records and is merged into it."""
    from sandbox.parallel import RulesSource, evaluate_dry

    rules = RulesSource.read(args.rules)
    runner = _runner(args, files)
    records = evaluate_dry(
        rules,
        lines,
        run.evaluate,
        runner=runner,
        sandbox=sb,
        moves_clock=_moves_clock,
        coverage=coverage,
    )
    files.callback(records.close)  # before the runner closes: cancels what has not started
    # One record a line, in input order, and the lines are numbered from 1.
    return enumerate(records, start=1)


def _moves_clock(raw: bytes) -> bool:
    """Whether a line is a clock move (``{"advance": ...}``), which a parallel dry run
    applies in order here. Only a line that can spell the key is parsed: without
    ``advance`` or a ``\\u`` escape in its bytes, it cannot."""
    if b"advance" not in raw and b"\\u" not in raw:
        return False
    try:
        data = parse_line(decode_line(raw))
    except SandboxError:
        return False  # a refused line: the worker refuses it the same way
    return isinstance(data, dict) and set(data) == {"advance"}


def _wants_progress(args: argparse.Namespace) -> bool:
    # On a terminal only, and not when the records scroll past on that same terminal.
    return sys.stderr.isatty() and (args.out is not None or not sys.stdout.isatty())


def _open_input(path: str, files: contextlib.ExitStack) -> tuple[IO[bytes], int | None]:
    """The sessions file as bytes (decoded line by line, so a bad line is one error),
    and its size when it is a regular file (for the progress bar)."""
    if path == "-":
        return sys.stdin.buffer, None
    try:
        source = files.enter_context(open(path, "rb"))  # noqa: SIM115 - the ExitStack closes it
    except OSError as exc:
        raise UsageError(f"cannot read sessions file {path!r}: {exc.strerror}") from None
    info = os.fstat(source.fileno())
    return source, info.st_size if stat.S_ISREG(info.st_mode) else None


def _open_output(out: str | None, sessions: str, files: contextlib.ExitStack) -> IO[str]:
    if out is None:
        return sys.stdout
    if sessions != "-" and os.path.exists(out) and os.path.samefile(out, sessions):
        raise UsageError(f"--out {out!r} is the sessions file itself: writing would erase it")
    target = f"the --out file {out!r}"
    try:
        handle = open(out, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(target, exc) from None
    guarded = _Guarded(handle, target)
    files.callback(guarded.close)  # a full disk may show only when the last buffer goes out
    return cast(IO[str], guarded)


def _first_line(raw: bytes, path: str) -> bytes:
    for bom, encoding in _UNICODE_BOMS:
        if raw.startswith(bom):
            raise UsageError(
                f"{path}:1: the file is {encoding} (it starts with a {encoding} byte-order "
                f"mark), not UTF-8: convert it, e.g. `iconv -f {encoding} -t UTF-8 {path}`"
            )
    return raw.removeprefix(_UTF8_BOM)  # UTF-8 all the same, as some editors write it


# ---------------------------------------------------------------------------
# fuzz


_STARTED = time.monotonic()
"""When the command line was loaded: ``fuzz --time-budget`` counts from here."""
_REPORT_RESERVE = 0.5
"""Seconds of ``--time-budget`` kept for writing the report after the searches."""


def _fuzz(args: argparse.Namespace) -> int:
    from sandbox.fuzzing import fuzz, replay

    if args.replay is not None:
        with _open_text(args.replay) as lines:
            report = replay(args.rules, lines)
        print(report.render())
        return 1 if report.violations else 0
    if args.examples < 1:
        raise UsageError(f"--examples must be at least 1, got {args.examples}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError(f"--time-budget must be seconds > 0, got {args.time_budget}")
    database = None
    if not args.no_database:
        from hypothesis.database import DirectoryBasedExampleDatabase

        database = DirectoryBasedExampleDatabase(str(Path(".hypothesis") / "examples"))
    budget = args.time_budget
    if budget is not None:
        # The budget is the whole command's: what starting took is spent, and the report
        # still has to be written once the searches end.
        budget = max(budget - (time.monotonic() - _STARTED) - _REPORT_RESERVE, 0.1)
    coverage = _coverage(args)
    with coverage.recording() if coverage is not None else contextlib.nullcontext():
        report = fuzz(
            args.rules,
            examples=args.examples,
            seed=args.seed,
            time_budget=budget,
            database=database,
            checks=args.check,
        )
    report = _save_replays(report, args.rules)
    print(report.render())
    if coverage is not None:
        print()
        print(coverage.report())
    if args.json is not None:
        _write(args.json, json.dumps(report.to_json(), indent=2) + "\n", "--json")
    if args.junit is not None:
        _write(args.junit, report.junit_xml() + "\n", "--junit")
    return 1 if report.violations else 0


def _coverage(args: argparse.Namespace) -> Any:
    if not getattr(args, "coverage", False):
        return None
    from sandbox.coverage import Coverage

    return Coverage()


def _save_replays(report: Any, rules: str) -> Any:
    """Each counterexample as a file ``fuzz --replay`` takes, named in the report."""
    if not report.violations:
        return report
    folder = Path(".hypothesis") / "promo-sandbox" / "replays"
    saved: dict[str, str] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for violation, label in zip(report.violations, report.labels(), strict=True):
            if not violation.replay:
                continue
            target = folder / f"{Path(rules).stem}-{label}.jsonl"
            target.write_text("".join(dumps(step) + "\n" for step in violation.replay))
            saved[label] = str(target)
    except OSError as exc:  # a read-only folder: the lines are printed all the same
        print(f"note: could not save the counterexamples: {exc.strerror}", file=sys.stderr)
    return attrs.evolve(report, replay_files=saved)


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[Iterator[str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            yield iter(handle)
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path!r} is not UTF-8 text (byte {exc.start})") from None


def _write(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"the {option} file {path!r}", exc) from None


# ---------------------------------------------------------------------------
# diff


def _diff(args: argparse.Namespace) -> int:
    from sandbox.diff import compare_lines, probings, search

    old, new = _load(args.old), _load(args.new)
    if args.sessions is None:
        if args.jobs is not None or args.dask is not None:
            raise UsageError("--jobs and --dask compare recorded sessions: give --sessions FILE")
        if args.dry:
            raise UsageError("--dry compares recorded sessions: give --sessions FILE")
        if args.examples < 1:
            raise UsageError(f"--examples must be at least 1, got {args.examples}")
        report = search(old, new, examples=args.examples, seed=args.seed, version=args.version or 2)
        bad: list[Any] = []
    else:
        if args.version is not None:
            raise UsageError(
                "--version is for generated sessions; recorded ones are V1 or V2 as written"
            )
        if (args.jobs is not None or args.dask is not None) and not args.dry:
            raise UsageError(
                "--jobs and --dask need --dry: without it each version carries state from "
                "line to line (as eval does), so the comparison is sequential"
            )
        with contextlib.ExitStack() as files:
            if args.jobs is not None or args.dask is not None:
                runner = _runner(args, files)  # one pool for both rule sets
                streams = [
                    _parallel_lines(args, rules, sb, files, runner)
                    for rules, sb in ((args.old, old()), (args.new, new()))
                ]
            else:
                asking = probings(old(), new())
                streams = [
                    _sequential_lines(sb, args.sessions, files, dry=args.dry, probing=probing)
                    for sb, probing in zip((old(), new()), asking, strict=True)
                ]
            parallel = args.jobs is not None or args.dask is not None
            report, bad = compare_lines(*streams, rules=(old(), new()), probed=not parallel)
        for line in bad:
            column = f":{line.column}" if line.column is not None else ""
            print(f"{args.sessions}:{line.number}{column}: {line.bad}", file=sys.stderr)
    print(report.render())
    if args.json is not None:
        _write(args.json, json.dumps(report.to_json(), indent=2) + "\n", "--json")
    if bad:
        print(f"{len(bad)} line(s) could not be compared", file=sys.stderr)
        return 2
    return int(report.exit_code)


def _sequential_lines(
    sb: Sandbox, path: str, files: contextlib.ExitStack, *, dry: bool, probing: Any
) -> Iterator[Any]:
    from sandbox.diff import line_outcome

    return (line_outcome(sb, number, raw, dry, probing) for number, raw in _lines(path, files))


def _lines(path: str, files: contextlib.ExitStack) -> Iterator[tuple[int, bytes]]:
    source, _ = _open_input(path, files)
    for number, raw in enumerate(source, start=1):
        if raw.strip():
            yield number, raw


def _runner(args: argparse.Namespace, files: contextlib.ExitStack) -> Any:
    """The ``--jobs`` pool or the ``--dask`` client, closed when ``files`` is."""
    from sandbox.parallel import DASK_HINT, DASK_TIMEOUT, DaskRunner, LocalRunner

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    timeout = args.dask_timeout
    if timeout is not None and args.dask is None:
        raise UsageError("--dask-timeout goes with --dask ADDRESS")
    if timeout is not None and not 0 < timeout < float("inf"):
        raise UsageError(f"--dask-timeout must be seconds > 0, got {timeout:g}")
    if args.dask is None:
        return files.enter_context(LocalRunner(args.jobs))
    try:
        import distributed  # noqa: F401 - a missing extra is bad usage (2), as for serve
    except ImportError:
        raise UsageError(
            f"--dask needs Dask's distributed scheduler, which is not installed: {DASK_HINT}"
        ) from None
    _quiet_dask_logs(files)
    return files.enter_context(
        DaskRunner(args.dask, timeout=DASK_TIMEOUT if timeout is None else timeout)
    )


def _quiet_dask_logs(files: contextlib.ExitStack) -> None:
    """Silence distributed's loggers until ``files`` closes: a lost scheduler or worker
    is logged there with tracebacks, and the run says it in one line of its own."""
    import logging

    names = ["distributed"] + [
        name for name in logging.root.manager.loggerDict if name.startswith("distributed.")
    ]
    for name in names:
        log = logging.getLogger(name)
        if name == "distributed" or log.level != logging.NOTSET:
            files.callback(log.setLevel, log.level)
            log.setLevel(logging.CRITICAL)


def _parallel_lines(
    args: argparse.Namespace,
    rules: str,
    sb: Sandbox,
    files: contextlib.ExitStack,
    runner: Any,
) -> Iterator[Any]:
    from sandbox.diff import line_outcome
    from sandbox.parallel import RulesSource, evaluate_dry

    records = evaluate_dry(
        RulesSource.read(rules),
        _lines(args.sessions, files),
        line_outcome,
        runner=runner,
        sandbox=sb,
        moves_clock=_moves_clock,
    )
    files.callback(records.close)
    return records


# ---------------------------------------------------------------------------
# serve

SERVER_HINT = "pip install 'promo-sandbox[server]'"
_SIZE_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def _byte_size(text: str, source: str = "--max-body") -> int:
    """``--max-body``: a number of bytes, optionally with KiB, MiB or GiB (``1MiB``)."""
    compact = text.strip()
    digits = compact[: len(compact) - len(compact.lstrip("0123456789"))]
    scale = _SIZE_UNITS.get(compact[len(digits) :].strip().upper())
    if not 0 < len(digits) <= 15 or scale is None or int(digits) == 0:
        raise UsageError(
            f"{source} must be a positive number of bytes, optionally with KiB, MiB or GiB "
            f"(e.g. 1048576 or 1MiB), got {text!r}"
        )
    return int(digits) * scale


SERVE_ENVIRONMENT = {
    "rules": "PROMO_SANDBOX_RULES",
    "host": "PROMO_SANDBOX_HOST",
    "port": "PROMO_SANDBOX_PORT",
    "api_key": "PROMO_SANDBOX_API_KEY",
    "state": "PROMO_SANDBOX_STATE",
    "max_body": "PROMO_SANDBOX_MAX_BODY",
}
"""``serve``'s settings read from the environment when the flag is not given."""

_SERVE_DEFAULTS = {"host": "127.0.0.1", "port": "9000", "max_body": "1MiB"}


def _setting(args: argparse.Namespace, name: str) -> tuple[str | None, str]:
    """A ``serve`` setting: the flag if given, else its environment variable, else the
    default; with where it came from, for messages."""
    given = getattr(args, name)
    if given is not None:
        return str(given), ("RULES" if name == "rules" else "--" + name.replace("_", "-"))
    variable = SERVE_ENVIRONMENT[name]
    if os.environ.get(variable):
        return os.environ[variable], variable
    return _SERVE_DEFAULTS.get(name), "--" + name.replace("_", "-")


def _serve(args: argparse.Namespace) -> int:
    """``serve RULES.py``: the rules as a local Integration API (:mod:`sandbox.server`)."""
    rules, _ = _setting(args, "rules")
    if rules is None:
        raise UsageError(
            "serve needs a rules file: python -m sandbox serve RULES.py, or set "
            "PROMO_SANDBOX_RULES=RULES.py"
        )
    host, _ = _setting(args, "host")
    port_text, port_from = _setting(args, "port")
    try:
        port = int(port_text or "")
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"{port_from} must be a port from 0 to 65535, got {port_text!r}")
    api_key, key_from = _setting(args, "api_key")
    if api_key is not None and (not api_key or any(c.isspace() for c in api_key)):
        raise UsageError(f"{key_from} must be a non-empty key without spaces, got {api_key!r}")
    size, size_from = _setting(args, "max_body")
    max_body = _byte_size(size or "", size_from)
    state, _ = _setting(args, "state")
    try:
        from sandbox import server
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        raise UsageError(
            f"serve needs the server extra ({missing} is not installed): {SERVER_HINT}"
        ) from None
    from sandbox.persist import StateError

    factory = _load(rules)  # a broken rules file is exit 2 before listening
    started = False

    def announce(text: str) -> None:
        nonlocal started
        started = True
        print(text, flush=True)

    try:
        server.serve(
            factory,
            host=host or "127.0.0.1",
            port=port,
            api_key=api_key,
            max_body=max_body,
            state=state,
            rules_name=rules,
            announce=announce,
        )
    except OutputError:
        raise  # the announcement could not be written: exit 74, not a listening problem
    except StateError as exc:
        if not started:
            raise UsageError(str(exc)) from None  # a state file it cannot load: exit 2
        print(f"error: {exc}", file=sys.stderr)  # the state could not be saved at the end
        return EXIT_OUTPUT
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return 0


_SERVE_EPILOG = (
    "environment (a flag given wins over its variable):\n"
    + "\n".join(
        f"  {variable:<24} {'RULES' if name == 'rules' else '--' + name.replace('_', '-')}"
        for name, variable in SERVE_ENVIRONMENT.items()
    )
    + "\n\nGET /sandbox/health and GET /sandbox/openapi.json answer without the API key; "
    "each\nrequest is logged on stderr (method, path, status, milliseconds).\n\n"
)

_DASK_TIMEOUT_HELP = (
    "with --dask: give up (exit 69) when the scheduler cannot be reached, or no worker "
    "is alive, for this long (default 30); a lost scheduler ends the run at once"
)

_EXIT_CODES = {
    0: "ok",
    2: "bad usage or input (a message on stderr, never a traceback)",
    EXIT_UNAVAILABLE: "the workers went away: a --jobs process died, or the Dask cluster "
    "was unreachable, lost its scheduler, or had no live worker for --dask-timeout seconds",
    EXIT_OUTPUT: "the output could not be written (a full disk, a closed pipe, a file "
    "that cannot be created), said in one line on stderr",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def _exit_codes(
    violated: str | None, *, parallel: bool, extra: dict[int, str] | None = None
) -> str:
    """The help's list of exit codes of one command (``violated``: what its 1 means)."""
    codes = dict(_EXIT_CODES)
    if violated is not None:
        codes[1] = violated
    codes.update(extra or {})
    if not parallel:
        del codes[EXIT_UNAVAILABLE]
    lines = ["exit codes:"]
    for code in sorted(codes):
        lines += textwrap.wrap(
            codes[code],
            width=79,
            initial_indent=f"  {code:<4} ",
            subsequent_indent=" " * 7,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Test Talon.One-style promotion rules locally.",
        epilog=_exit_codes(
            "fuzz and demo: an invariant or a property_* was violated; "
            "diff: the two rule versions answer differently (it differs)",
            parallel=True,
            extra={EXIT_NOT_EXERCISED: "diff: " + _NOT_EXERCISED},
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{demo,eval,fuzz,diff,serve}"
    )
    demo = commands.add_parser(
        "demo",
        help="run the embedded example rules end to end",
        epilog=_exit_codes("the short fuzz found a violation", parallel=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--rules", help="a rules file instead of the embedded default")
    demo.set_defaults(run=_demo)
    ev = commands.add_parser(
        "eval",
        help="evaluate sessions from a JSONL file, one answer per line",
        epilog=_exit_codes(None, parallel=True).replace(
            "bad usage or input", "a refused line, or bad usage or input", 1
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("rules", help="a rules file defining `sandbox` or `build()`")
    ev.add_argument("sessions", help="a UTF-8 JSONL file of sessions ('-' for stdin)")
    ev.add_argument(
        "--dry", action="store_true", help="evaluate every line as a dry run: store nothing"
    )
    ev.add_argument("--out", metavar="FILE", help="write the answers to FILE instead of stdout")
    ev.add_argument("--strict", action="store_true", help="stop at the first refused line (exit 2)")
    ev.add_argument(
        "--explain",
        action="store_true",
        help="print why each rule fired or not instead of the wire JSON",
    )
    scale = ev.add_mutually_exclusive_group()
    scale.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="with --dry: evaluate in N local worker processes, answers in input order",
    )
    scale.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="with --dry: evaluate on the Dask cluster whose scheduler is at ADDRESS "
        "(needs promo-sandbox[dask])",
    )
    ev.add_argument("--dask-timeout", type=float, metavar="SECONDS", help=_DASK_TIMEOUT_HELP)
    ev.add_argument(
        "--coverage",
        action="store_true",
        help="print rule coverage over the run at the end, on stderr (with --jobs/--dask "
        "too: the workers send their counts back)",
    )
    ev.set_defaults(run=_eval)
    fz = commands.add_parser(
        "fuzz",
        help="check invariants and property_* functions on generated sessions",
        epilog=_exit_codes(
            "an invariant or a property_* was violated (with --replay: the counterexample "
            "still fails)",
            parallel=False,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fz.add_argument(
        "rules", help="a rules file defining `sandbox` or `build()` and property_* functions"
    )
    fz.add_argument(
        "--examples",
        type=int,
        default=200,
        help="sessions to try, every check looking at each (default 200); the lifecycle "
        "runs half as many lifecycles",
    )
    fz.add_argument("--seed", type=int, default=None, help="a seed, to replay a run")
    fz.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check (a built-in invariant, a property_* or lifecycle); "
        "repeat for several",
    )
    fz.add_argument(
        "--replay",
        metavar="FILE",
        help="replay a counterexample (the JSONL fuzz saved or printed) and check it again: "
        "exit 1 if it still fails, 0 if it is fixed",
    )
    fz.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="end the whole run after this many seconds, shrinking included (for CI); "
        "what was found by then is reported, shrunk as far as it got",
    )
    fz.add_argument("--junit", metavar="FILE", help="write a JUnit XML report (one case per check)")
    fz.add_argument("--json", metavar="FILE", help="write the report as JSON")
    fz.add_argument(
        "--no-database",
        action="store_true",
        help="do not keep failing examples in .hypothesis/ (by default a failure found once "
        "is tried first next time)",
    )
    fz.add_argument(
        "--coverage", action="store_true", help="print rule coverage over the run at the end"
    )
    fz.set_defaults(run=_fuzz)
    df = commands.add_parser(
        "diff",
        help="compare two rule versions on the same traffic: what the change does to customers",
        description="Feed the same traffic to both rule versions, each carrying its own "
        "state, and compare every answer; list what each version changed by source and "
        "whether the traffic exercised it.",
        epilog=_exit_codes(
            "the two rule versions answer differently",
            parallel=True,
            extra={
                0: "no answer differs, and every change by source was exercised",
                EXIT_NOT_EXERCISED: _NOT_EXERCISED,
            },
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    df.add_argument("old", help="the rules file as it is")
    df.add_argument("new", help="the changed rules file")
    df.add_argument(
        "--sessions",
        metavar="FILE",
        help="recorded traffic: a JSONL file of any line eval takes (sessions, closes, "
        "reopen, returnItems, profile updates, events, advance), fed in order to one sandbox per "
        "version, each carrying its own state; without it, lifecycles are generated from "
        "both files' rules and each kind of difference is shrunk",
    )
    df.add_argument(
        "--dry",
        action="store_true",
        help="with --sessions: evaluate every line dry and alone (no state carried), "
        "which --jobs and --dask need",
    )
    df.add_argument(
        "--examples",
        type=int,
        default=DIFF_EXAMPLES,
        help=f"generated lifecycles to compare (default {DIFF_EXAMPLES})",
    )
    df.add_argument(
        "--version",
        type=int,
        choices=(1, 2),
        default=None,
        help="the Integration API version of generated sessions (default 2)",
    )
    df.add_argument("--seed", type=int, default=None, help="a seed, to repeat a search")
    where = df.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs", type=int, metavar="N", help="with --sessions --dry: compare in N processes"
    )
    where.add_argument(
        "--dask", metavar="ADDRESS", help="with --sessions --dry: compare on a Dask cluster"
    )
    df.add_argument("--dask-timeout", type=float, metavar="SECONDS", help=_DASK_TIMEOUT_HELP)
    df.add_argument("--json", metavar="FILE", help="write the report as JSON, for CI")
    df.set_defaults(run=_diff)
    sv = commands.add_parser(
        "serve",
        help="serve the rules as a local Talon.One Integration API (needs promo-sandbox[server])",
        description="Serve the rules as a local Talon.One Integration API, until Ctrl-C.",
        epilog=_SERVE_EPILOG + _exit_codes(None, parallel=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sv.add_argument(
        "rules",
        nargs="?",
        help="a rules file defining `sandbox` or `build()` (default: $PROMO_SANDBOX_RULES)",
    )
    sv.add_argument("--host", help="the address to listen on (default 127.0.0.1)")
    sv.add_argument(
        "--port", help="the port to listen on (default 9000; 0: a free one)", metavar="PORT"
    )
    sv.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key clients send as 'Authorization: ApiKey-v1 KEY' (default: a new random "
        "key, printed at start)",
    )
    sv.add_argument(
        "--max-body",
        metavar="BYTES",
        help="the largest request body accepted, in bytes or with KiB, MiB or GiB (default "
        "1MiB); a larger one is answered 413",
    )
    sv.add_argument(
        "--state",
        metavar="FILE",
        help="keep the whole state in FILE: loaded at start when it exists (a file that is "
        "not a state of these rules is exit 2), written at the end and on POST /sandbox/save",
    )
    sv.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (``sys.argv[1:]`` by default); the exit code."""
    stdout, stderr = sys.stdout, sys.stderr
    for stream in (stdout, stderr):
        # A user's string that the terminal cannot show is escaped, not a traceback.
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    # Every print goes through these, so an output error anywhere is one message.
    sys.stdout = cast(TextIO, _Guarded(stdout, "to stdout"))
    sys.stderr = cast(TextIO, _Guarded(stderr, "to stderr"))
    try:
        code = _main(argv)
        sys.stdout.flush()  # a full disk may show only when the last buffer goes out
        sys.stderr.flush()
    except OutputError as exc:
        return _cannot_write(exc, stdout, stderr)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage message
        return 0 if exc.code == 0 else 2
    try:
        code: int = args.run(args)
    except OutputError:
        raise
    except SandboxError as exc:
        from sandbox.parallel import ParallelError

        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(exc, ParallelError) else 2
    except KeyboardInterrupt:  # Ctrl-C: the shell's convention, 128 + SIGINT
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _cannot_write(exc: OutputError, stdout: TextIO, stderr: TextIO) -> int:
    """Say once that output failed, and keep the interpreter from saying it again."""
    failed = {"to stdout": stdout, "to stderr": stderr}.get(exc.target)
    if failed is not None:
        # The recipe of Python's signal docs for a closed pipe (a full disk is alike):
        # what is left in the stream's buffer would fail again at the flush on exit,
        # with a second message and exit code 120. The lines written stay as they are.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, failed.fileno())
            os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        print(f"error: {exc}", file=stderr, flush=True)
    return EXIT_OUTPUT


__all__ = ["main"]
