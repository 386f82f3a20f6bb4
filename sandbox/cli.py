"""The command line: ``python -m sandbox demo | eval | fuzz``.

- ``demo``: runs the embedded default rules file (``examples/xmas.py``) end to
  end: a few sessions, their effects, a limit reached and released by a cancel.
- ``eval RULES.py SESSIONS.jsonl``: one update per line, in order, against one
  sandbox; prints one IntegrationState (wire JSON) per line.
- ``fuzz RULES.py [--examples N] [--seed S]``: checks the built-in invariants
  and the file's own ``property_*`` functions on generated sessions and
  lifecycles; prints each shrunk counterexample as replayable JSON.

Exit codes: 0 ok, 1 an invariant or property was violated, 2 bad usage or
input (a message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.core import Sandbox
from sandbox.errors import Problem, SandboxError, ValidationError
from sandbox.state import IntegrationState

DEFAULT_RULES = "examples/xmas.py"


class UsageError(SandboxError):
    """Bad command-line input; exit code 2."""


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


def _show(title: str, state: IntegrationState) -> None:
    print(f"\n== {title}")
    print(state.explain())
    for effect in state.effects:
        print(f"   effect: {effect}")


def _demo(args: argparse.Namespace) -> int:
    path = Path(args.rules) if args.rules else default_rules_path()
    sb = _load(path)()
    print(f"rules: {path}  ({len(sb.campaigns)} campaigns, clock {sb.now.isoformat()})")
    cart = [
        {
            "sku": "SWEATER-1",
            "name": "Xmas sweater",
            "quantity": 1,
            "price": 45,
            "category": "clothes",
        },
        {"sku": "SHOE-9", "name": "Boots", "quantity": 1, "price": 30, "category": "shoes"},
    ]
    first = {"profileId": "p1", "coupon": "XMAS-2021", "cartItems": cart}
    _show("p1 opens a session with XMAS-2021", sb.update("s1", first))
    _show("p1 closes it: the coupon is redeemed", sb.update("s1", {**first, "state": "closed"}))
    print(f"   XMAS-2021 usage counter: {sb.get_coupon('XMAS-2021').usage_counter}")
    second = {"profileId": "p1", "coupon": "xmas-2021", "cartItems": cart[:1], "total": 45}
    _show("p1 tries again: one redemption per profile", sb.update("s2", second))
    _show("p1 cancels the first order: counters roll back", sb.update("s1", {"state": "cancelled"}))
    print(f"   XMAS-2021 usage counter: {sb.get_coupon('XMAS-2021').usage_counter}")
    _show("p1's second session, re-sent: the limit has room again", sb.update("s2", second))
    _show(
        "a friend brings a referral code and a typo'd coupon",
        sb.update(
            "s3",
            {"profileId": "friend-1", "referral": "REF-2740", "coupon": "XMAS-2012", "total": 20},
        ),
    )
    print("\nwire form of the last answer (Talon.One IntegrationStateV2):")
    print(
        json.dumps(
            sb.update(
                "s3", {"profileId": "friend-1", "referral": "REF-2740", "total": 20}
            ).to_wire(),
            indent=2,
        )
    )
    return 0


# ---------------------------------------------------------------------------
# eval


def _eval(args: argparse.Namespace) -> int:
    sb = _load(args.rules)()
    source = sys.stdin if args.sessions == "-" else _open(args.sessions)
    failed = 0
    with source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                session_id, payload, dry = _request(line, number)
                state = sb.update(session_id, payload, dry=dry)
            except SandboxError as exc:
                failed += 1
                print(f"{args.sessions}:{number}: {exc}", file=sys.stderr)
                continue
            print(json.dumps(state.to_wire()))
    return 2 if failed else 0


def _open(path: str) -> Any:
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read sessions file {path!r}: {exc.strerror}") from None


def _request(line: str, number: int) -> tuple[str, Any, bool]:
    """A JSONL line: a session dict, or {"customerSessionId", "customerSession", "dry"}."""
    try:
        data = json.loads(line, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            [Problem("", f"not valid JSON: {exc.msg} at column {exc.colno}")], subject="JSON"
        ) from None
    if isinstance(data, dict) and "customerSession" in data:
        session_id = data.get("customerSessionId", f"line-{number}")
        return str(session_id), data["customerSession"], bool(data.get("dry", False))
    return f"line-{number}", data, False


# ---------------------------------------------------------------------------
# fuzz


def _fuzz(args: argparse.Namespace) -> int:
    from sandbox.fuzzing import fuzz

    if args.examples < 1:
        raise UsageError(f"--examples must be at least 1, got {args.examples}")
    report = fuzz(args.rules, examples=args.examples, seed=args.seed)
    print(report.render())
    return 1 if report.violations else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Test Talon.One-style promotion rules locally.",
        epilog="Exit codes: 0 ok, 1 a property was violated, 2 bad usage or input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,eval,fuzz}")
    demo = commands.add_parser("demo", help="run the embedded example rules end to end")
    demo.add_argument("--rules", help="a rules file instead of the embedded default")
    demo.set_defaults(run=_demo)
    ev = commands.add_parser(
        "eval", help="evaluate sessions from a JSONL file, one answer per line"
    )
    ev.add_argument("rules", help="a rules file defining `sandbox` or `build()`")
    ev.add_argument("sessions", help="a JSONL file of sessions ('-' for stdin)")
    ev.set_defaults(run=_eval)
    fz = commands.add_parser(
        "fuzz", help="check invariants and property_* functions on generated sessions"
    )
    fz.add_argument(
        "rules", help="a rules file defining `sandbox` or `build()` and property_* functions"
    )
    fz.add_argument(
        "--examples", type=int, default=200, help="sessions to try per property (default 200)"
    )
    fz.add_argument("--seed", type=int, default=None, help="a seed, to replay a run")
    fz.set_defaults(run=_fuzz)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage message
        return 0 if exc.code == 0 else 2
    try:
        code: int = args.run(args)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed stdout
        return 0
    return code


__all__ = ["main"]
