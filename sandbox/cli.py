"""The command line: ``python -m sandbox demo | eval | fuzz``.

- ``demo [--rules FILE]``: runs the embedded default rules file
  (``examples/xmas.py``) end to end: a few sessions, their effects, a limit
  reached and released by a cancel. With another rules file, a dry run per code.
- ``eval RULES.py SESSIONS.jsonl [--explain]``: one update per line, in order,
  against one sandbox; prints one IntegrationState (wire JSON, or with
  ``--explain`` why each rule fired or not) per line. A line is a session dict,
  ``{"customerSessionId", "customerSession", "dry"}``, or one of the lifecycle
  steps ``fuzz`` prints (``{"reopen": ID}``, ``{"returnItems": ID,
  "returnedCartItems": [...]}``, ``{"advance": {"days": N}}``).
- ``fuzz RULES.py [--examples N] [--seed S]``: checks the built-in invariants
  and the file's own ``property_*`` functions on generated sessions and
  lifecycles; prints each shrunk counterexample as replayable JSON.

Exit codes: 0 ok, 1 an invariant or property was violated, 2 bad usage or
input (a message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import difflib
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


def _demo(args: argparse.Namespace) -> int:
    path = Path(args.rules) if args.rules else default_rules_path()
    sb = _load(path)()
    print(f"rules: {path}  ({len(sb.campaigns)} campaigns, clock {sb.now.isoformat()})")
    if args.rules and not _has_coupon(sb, "XMAS-2021"):
        return _demo_codes(sb)
    cart = [
        {"sku": "SWEATER-1", "name": "Sweater", "quantity": 1, "price": 45, "category": "clothes"},
        {"sku": "SHOE-9", "name": "Boots", "quantity": 1, "price": 30, "category": "shoes"},
    ]
    first = {"profileId": "p1", "coupon": "XMAS-2021", "cartItems": cart}
    _show("p1 opens a session with XMAS-2021", sb.update("s1", first))
    closed = sb.update("s1", {**first, "state": "closed"})
    print("\n== p1 closes it: the same answer, now committed")
    print(f"   accepted {closed.accepted_coupons}, discounts {_money(closed.discounts)}")
    print(f"   XMAS-2021 usage counter: {sb.get_coupon('XMAS-2021').usage_counter}")
    second = {"profileId": "p1", "coupon": "xmas-2021", "cartItems": [{**cart[0], "quantity": 2}]}
    _show("p1 tries again in a second session: one redemption per profile", sb.update("s2", second))
    _show("p1 cancels the first order: counters roll back", sb.update("s1", {"state": "cancelled"}))
    print(f"   XMAS-2021 usage counter: {sb.get_coupon('XMAS-2021').usage_counter}")
    _show("p1's second session, re-sent: the limit has room again", sb.update("s2", second))
    last = sb.update(
        "s3", {"profileId": "friend-1", "referral": "REF-2740", "coupon": "XMAS-2012", "total": 20}
    )
    _show("a friend brings a referral code and a typo'd coupon", last)
    print("\nwire form of the last answer (Talon.One IntegrationStateV2), one JSON value a line:")
    for key, value in last.to_wire().items():
        if isinstance(value, list) and value:
            print(f"  {key}:")
            for entry in value:
                print(f"    {json.dumps(entry)}")
        else:
            print(f"  {key}: {json.dumps(value)}")
    return 0


def _has_coupon(sb: Sandbox, code: str) -> bool:
    try:
        sb.get_coupon(code)
    except SandboxError:
        return False
    return True


def _money(discounts: dict[str, Decimal]) -> str:
    return ", ".join(f"{name!r} {value}" for name, value in discounts.items()) or "none"


def _demo_codes(sb: Sandbox) -> int:
    """A rules file of the user's own: one dry run without a code, then one per code."""
    sessions: list[tuple[str, dict[str, Any]]] = [("no code", {"profileId": "p1", "total": 100})]
    for campaign in sb.campaigns:
        for code in campaign.coupons:
            sessions.append((f"coupon {code}", {"profileId": "p1", "coupon": code, "total": 100}))
        for code in campaign.referrals:
            sessions.append(
                (f"referral {code}", {"profileId": "p1", "referral": code, "total": 100})
            )
    for number, (title, payload) in enumerate(sessions, start=1):
        _show(
            f"a cart of 100 with {title} (dry run)", sb.update(f"demo-{number}", payload, dry=True)
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
                state = _step(line, number)(sb)
            except SandboxError as exc:
                failed += 1
                print(f"{args.sessions}:{number}: {exc}", file=sys.stderr)
                continue
            if state is None:  # a clock move answers nothing
                if args.explain:
                    print(f"{args.sessions}:{number}: clock now {sb.now.isoformat()}\n")
            elif args.explain:
                print(f"{args.sessions}:{number}: {state.explain()}\n")
            else:
                print(json.dumps(state.to_wire()))
    if failed:
        print(f"{failed} line(s) refused, nothing stored for them", file=sys.stderr)
    return 2 if failed else 0


def _open(path: str) -> Any:
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read sessions file {path!r}: {exc.strerror}") from None


_REQUEST_KEYS = ("customerSessionId", "customerSession", "dry")


def _close(key: str, known: Sequence[str]) -> list[str]:
    folded = {k.lower(): k for k in known}
    if key.lower() in folded:
        return [folded[key.lower()]]
    return difflib.get_close_matches(key, known, n=1)


def _step(line: str, number: int) -> Callable[[Sandbox], IntegrationState | None]:
    """One JSONL line as a call on the sandbox.

    A session dict, or ``{"customerSessionId", "customerSession", "dry"}``, is an
    update; the lifecycle steps ``fuzz`` prints replay too: ``{"reopen": ID}``,
    ``{"returnItems": ID, "returnedCartItems": [...]}``, ``{"advance": {"days": N}}``.
    """
    data = _parse(line)
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("reopen"), str):
        return lambda sb: sb.reopen(data["reopen"])
    if isinstance(data, dict) and set(data) == {"returnItems", "returnedCartItems"}:
        return lambda sb: sb.return_items(data["returnItems"], data["returnedCartItems"])
    if isinstance(data, dict) and set(data) == {"advance"}:
        return lambda sb: _advance(sb, data["advance"])
    session_id, payload, dry = _request(data, number)
    return lambda sb: sb.update(session_id, payload, dry=dry)


def _advance(sb: Sandbox, amount: Any) -> None:
    units = ("weeks", "days", "hours", "minutes", "seconds")
    if (
        not isinstance(amount, dict)
        or not amount
        or any(k not in units or type(v) is not int for k, v in amount.items())
    ):
        raise ValidationError(
            [
                Problem(
                    "/advance",
                    f"'advance' must map {', '.join(units)} to integers, such as "
                    f'{{"days": 1}}, got {json.dumps(amount, default=str)}',
                )
            ],
            subject="step",
        )
    sb.advance(**amount)


def _parse(line: str) -> Any:
    try:
        return json.loads(line, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            [Problem("", f"not valid JSON: {exc.msg} at column {exc.colno}")], subject="JSON"
        ) from None


def _request(data: Any, number: int) -> tuple[str, Any, bool]:
    """A session dict, or {"customerSessionId", "customerSession", "dry"}."""
    if not isinstance(data, dict):
        raise ValidationError(
            [
                Problem(
                    "",
                    f"expected a JSON object, got {type(data).__name__} {data!r}: write a "
                    'session such as {"profileId": "p1", "total": 80}, or '
                    '{"customerSessionId": "s1", "customerSession": {...}, "dry": false}',
                )
            ],
            subject="line",
        )
    if "customerSession" not in data:
        return f"line-{number}", data, False
    problems = [
        Problem(
            f"/{key}",
            f"unknown key {key!r} beside 'customerSession'"
            + "".join(f"; did you mean {m!r}?" for m in _close(key, _REQUEST_KEYS))
            + f"; the keys of a request are {', '.join(map(repr, _REQUEST_KEYS))}",
        )
        for key in data
        if key not in _REQUEST_KEYS
    ]
    session_id = data.get("customerSessionId", f"line-{number}")
    if not isinstance(session_id, str):
        problems.append(
            Problem(
                "/customerSessionId",
                f"'customerSessionId' must be a string, got {json.dumps(session_id)}",
            )
        )
    dry = data.get("dry", False)
    if not isinstance(dry, bool):
        problems.append(Problem("/dry", f"'dry' must be true or false, got {json.dumps(dry)}"))
    if problems:
        raise ValidationError(problems, subject="request")
    session = data["customerSession"]
    if not isinstance(session, dict):
        raise ValidationError(
            [
                Problem(
                    "/customerSession",
                    f"'customerSession' must be an object, got {json.dumps(session, default=str)}",
                )
            ],
            subject="request",
        )
    return session_id, session, dry


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
    ev.add_argument(
        "--explain",
        action="store_true",
        help="print why each rule fired or not instead of the wire JSON",
    )
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
