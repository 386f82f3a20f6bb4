"""The bug zoo: does a default `fuzz` run find each planted bug, and nothing on its fix?

Each file in examples/zoo/ plants one rule bug and states, as a ``property_*``,
what the team meant; examples/zoo/fixed/ holds the fixed twins of the newer ones. For
every file and seed this runs the library call behind ``python -m sandbox fuzz FILE
--seed SEED`` with the default example budget and records where the property was first
broken: how many examples the search that caught it had tried (for single sessions,
generated sessions; for the lifecycle, generated lifecycles). On a fixed twin any
violation at all is a false positive.
Run:
    python bench/bug_zoo.py [--seeds 1 2 3 4 5] [--examples 200] [--jobs 2] [--only NAME ...]
Results are recorded in bench/README.md. Not a test: it asserts nothing, but it
exits 1 when some bug was missed on some seed or a fixed twin was flagged, so a
regression is loud.
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


def _hunt(job: tuple[str, int, int]) -> tuple[str, int, str | None, list[str], float, float]:
    """One fuzz run: (file, seed, where the property was found as 'N sessions' or
    'N lifecycle', every violated check, CPU seconds, wall seconds)."""
    from sandbox.fuzzing import fuzz, load_rules

    path, seed, examples = job
    _, properties = load_rules(path)
    cpu, wall = time.process_time(), time.perf_counter()
    report = fuzz(path, examples=examples, seed=seed)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    where = None
    for violation in report.violations:
        name = violation.invariant if violation.check == "lifecycle" else violation.check
        if name in properties and where is None:
            kind = "lifecycle" if violation.check == "lifecycle" else "sessions"
            where = f"{violation.found_after} {kind}"
    flagged = [
        violation.check + (f": {violation.invariant}" if violation.invariant else "")
        for violation in report.violations
    ]
    return path, seed, where, flagged, cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--examples", type=int, default=200, help="fuzz's default budget")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--only", nargs="*", default=None, help="zoo file stems to run")
    parser.add_argument("--no-twins", action="store_true", help="skip the fixed twins")
    args = parser.parse_args(argv)
    files = sorted(p for p in ZOO.glob("*.py") if args.only is None or p.stem in args.only)
    twins = [] if args.no_twins else [ZOO / "fixed" / f.name for f in files]
    twins = [t for t in twins if t.is_file()]
    jobs = [(str(f), seed, args.examples) for f in (*files, *twins) for seed in args.seeds]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"commit {commit}, {platform.python_implementation()} {platform.python_version()}")
    print(f"examples budget {args.examples}, seeds {args.seeds}, {len(files)} bugs")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_hunt, jobs))
    found: dict[tuple[str, int], str | None] = {}
    flagged: dict[tuple[str, int], list[str]] = {}
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    for path, seed, where, checks, took_cpu, took_wall in results:
        key = str(Path(path).relative_to(ZOO).with_suffix(""))
        found[key, seed] = where
        flagged[key, seed] = checks
        cpu.setdefault(key, []).append(took_cpu)
        wall.setdefault(key, []).append(took_wall)
    header = ["bug", *(f"seed {s}" for s in args.seeds), "CPU s/run", "wall s/run", "fixed twin"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    missed = false_positives = 0
    for f in files:
        cells = []
        for seed in args.seeds:
            where = found[f.stem, seed]
            missed += where is None
            cells.append(where or "**missed**")
        twin = f"fixed/{f.stem}"
        if (twin, args.seeds[0]) in flagged:
            bad = [
                f"seed {s}: {', '.join(flagged[twin, s])}" for s in args.seeds if flagged[twin, s]
            ]
            false_positives += len(bad)
            verdict = "**" + "; ".join(bad) + "**" if bad else "clean"
        else:
            verdict = "-"
        mean_cpu = sum(cpu[f.stem]) / len(cpu[f.stem])
        mean_wall = sum(wall[f.stem]) / len(wall[f.stem])
        print(
            f"| `{f.stem}` | "
            + " | ".join(cells)
            + f" | {mean_cpu:.1f} | {mean_wall:.1f} | {verdict} |"
        )
    total = len(files) * len(args.seeds)
    print(
        f"found {total - missed}/{total}, {false_positives} false positive(s) on the fixed twins, "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 1 if missed or false_positives else 0


if __name__ == "__main__":
    sys.exit(main())
