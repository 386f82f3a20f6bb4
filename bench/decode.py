"""Decoding a wire session: the codec's fast path against its exact path and its parts.

engine.py's 1,000 V2 sessions (about 10 cart items each). Rows, median microseconds of
CPU per session over the rounds:

- ``from_wire`` (what ``Sandbox.update`` runs on a dict): msgspec validates the payload
  against a Struct in one pass, then the generated builders make the attrs models;
- ``msgspec.convert`` alone: the validating pass, without the models;
- the exact path (cattrs with every check, what a refused payload takes to word its
  problems), for scale.

Run: ``python bench/decode.py [--rounds 9]``; results in bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import workload  # bench/ is not a package

from sandbox import NewCustomerSessionV2, from_wire
from sandbox._decode import wire_struct
from sandbox.codec import converter


def per_session(fn: Callable[[Any], Any], sessions: list[Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for session in sessions:
            fn(session)
        times.append((time.process_time() - start) / len(sessions) * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sessions = workload()
    struct = wire_struct(NewCustomerSessionV2)
    rows = [
        ("from_wire (msgspec pass + builders)", lambda s: from_wire(NewCustomerSessionV2, s)),
        ("msgspec.convert alone", lambda s: msgspec.convert(s, struct)),
        ("exact path (cattrs)", lambda s: converter.structure(s, NewCustomerSessionV2)),
    ]
    for label, fn in rows:
        print(f"{label:<40} {per_session(fn, sessions, args.rounds):8.1f} us/session")


if __name__ == "__main__":
    main()
