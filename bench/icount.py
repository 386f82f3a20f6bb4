"""Instructions per session, counted by valgrind's callgrind: engine.py's workload, the
same on a loaded machine as on an idle one.

Timings on a shared 2-core machine move with whatever else runs; instruction counts do
not (they ignore cache misses and the garbage collector's timing, so their ratios are
lower than the timed ratios of ``engine.py``, but each step of a change shows in them).
Each figure is one run of N sessions minus one run of none, both after the same
warm-up (decode plans, the compiled rule plan, cattrs hooks, imports), so one-time costs
and the workload's own generation are not counted.

Run: ``python bench/icount.py [--sessions 200]`` (needs ``valgrind``; about 5 minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("hand", "wire", "parsed", "decode")

CHILD = """
import sys
sys.path.insert(0, {bench!r})
import engine as b
from sandbox import NewCustomerSessionV2, from_wire
mode, n = sys.argv[1], int(sys.argv[2])
sessions = b.workload(200)[:n]
warm = b.workload(30, seed=99)
b.run_sandbox(warm)()
b.run_hand(warm)()
for s in warm:
    from_wire(NewCustomerSessionV2, s)
parsed = [from_wire(NewCustomerSessionV2, s) for s in sessions] if mode == "parsed" else []
if mode == "hand":
    b.run_hand(sessions)()
elif mode == "wire":
    b.run_sandbox(sessions)()
elif mode == "parsed":
    b.run_sandbox(parsed)()
elif mode == "decode":
    for s in sessions:
        from_wire(NewCustomerSessionV2, s)
"""


def instructions(mode: str, sessions: int) -> int:
    code = CHILD.format(bench=str(HERE))
    # The interpreter itself, not a launcher script (pyenv's shims are shell scripts).
    python = os.path.realpath(sys.executable)
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            "-c",
            code,
            mode,
            str(sessions),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    per: dict[str, float] = {}
    for mode in MODES:
        # In "parsed", the parsing happens before the measured part but is counted: take
        # the decode figure off below.
        counted = instructions(mode, args.sessions) - instructions(mode, 0)
        per[mode] = counted / args.sessions / 1000
    per["parsed"] -= per["decode"]
    hand = per["hand"]
    print(f"instructions per session (thousands), {args.sessions} sessions of engine.py's workload")
    print(f"  hand-written            {hand:8.1f}k")
    print(f"  sandbox, wire dicts     {per['wire']:8.1f}k   ratio {per['wire'] / hand:5.2f}x")
    print(f"  sandbox, pre-parsed     {per['parsed']:8.1f}k   ratio {per['parsed'] / hand:5.2f}x")
    print(f"  of which decoding       {per['decode']:8.1f}k")


if __name__ == "__main__":
    main()
