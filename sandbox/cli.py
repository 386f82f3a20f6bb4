"""The command line: ``python -m sandbox demo | eval | fuzz``.

Exit codes: 0 ok, 1 an invariant or property was violated, 2 bad usage or
input (a message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sandbox.codec import dumps, from_wire
from sandbox.errors import SandboxError
from sandbox.models import NewCustomerSession

SEED_EXAMPLE = {
    "profileId": "URNGV8294NV",
    "coupon": "XMAS-2021",
    "referral": "2740-tbjua-6720",
    "state": "open",
    "identifiers": ["91.11.156.141"],
}


def _demo(_: argparse.Namespace) -> int:
    session = from_wire(NewCustomerSession, SEED_EXAMPLE)
    print(dumps(session, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the embedded example end to end")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
