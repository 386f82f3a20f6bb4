"""The bug zoo: how many examples `fuzz` needs to find each planted bug.

Each file in examples/zoo/ plants one rule bug and states, as a ``property_*``,
what the team meant. For every file and seed this runs the library call behind
``python -m sandbox fuzz FILE --seed SEED`` with the default example budget and
records how many examples the search that caught the bug had tried when it first
failed: for a session check, generated sessions; for the lifecycle, generated
lifecycles (each up to 20 steps of update, close, return, reopen, cancel).
Run:
    python bench/bug_zoo.py [--seeds 1 2 3 4 5] [--examples 200] [--jobs 2]
Results are recorded in bench/README.md. Not a test: it asserts nothing, but it
exits 1 when some bug was missed on some seed, so a regression is loud.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"


def _hunt(job: tuple[str, int, int]) -> tuple[str, int, str | None, float]:
    """One fuzz run: (file, seed, where it was found as 'check:count', seconds)."""
    from sandbox.fuzzing import fuzz, load_rules

    path, seed, examples = job
    _, properties = load_rules(path)
    started = time.perf_counter()
    report = fuzz(path, examples=examples, seed=seed)
    seconds = time.perf_counter() - started
    for violation in report.violations:
        name = violation.invariant if violation.check == "lifecycle" else violation.check
        if name in properties:
            where = "lifecycle" if violation.check == "lifecycle" else "sessions"
            return path, seed, f"{violation.found_after} {where}", seconds
    return path, seed, None, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--examples", type=int, default=200, help="fuzz's default budget")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--only", nargs="*", default=None, help="zoo file stems to run")
    args = parser.parse_args(argv)
    files = sorted(p for p in ZOO.glob("*.py") if args.only is None or p.stem in args.only)
    jobs = [(str(f), seed, args.examples) for f in files for seed in args.seeds]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"commit {commit}, {platform.python_implementation()} {platform.python_version()}")
    print(f"examples budget {args.examples}, seeds {args.seeds}, {len(files)} bugs")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_hunt, jobs))
    found: dict[tuple[str, int], str | None] = {}
    seconds: dict[str, float] = {}
    for path, seed, where, took in results:
        found[Path(path).stem, seed] = where
        seconds[Path(path).stem] = seconds.get(Path(path).stem, 0.0) + took
    header = ["bug", *(f"seed {s}" for s in args.seeds), "s/run"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    missed = 0
    for f in files:
        cells = []
        for seed in args.seeds:
            where = found[f.stem, seed]
            missed += where is None
            cells.append(where or "**missed**")
        per_run = seconds[f.stem] / len(args.seeds)
        print(f"| `{f.stem}` | " + " | ".join(cells) + f" | {per_run:.1f} |")
    total = len(files) * len(args.seeds)
    print(f"found {total - missed}/{total} in {time.perf_counter() - started:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
