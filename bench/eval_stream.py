"""Streaming eval: `python -m sandbox eval RULES --dry` on generated JSONL sessions.

Writes a realistic mix of sessions (V1 and V2 lines, carts of 1-8 items, valid,
expired-campaign and unknown coupon and referral codes, a few closed and a few
refused lines) to a file line by line, then runs the real command line in a
subprocess on 100,000 and 1,000,000 of them and prints sessions per second and
the child's peak memory (its VmHWM, read from /proc while it runs, and
ru_maxrss as a cross-check). Then `--jobs 2` on the same file, and a Dask
LocalCluster of 2 worker processes (`--dask ADDRESS`) on the 100,000 file.
Run:
    python bench/eval_stream.py [--sizes 100000 1000000] [--rules examples/xmas.py]
Results are recorded in bench/README.md. Not a test: nothing here asserts, but
it checks that each parallel run wrote exactly the sequential run's output.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import attrs

from sandbox.codec import dumps

ROOT = Path(__file__).resolve().parent.parent
SKUS = [
    ("SWEATER-1", "clothes", "45"),
    ("SCARF-2", "clothes", "19.90"),
    ("SHOE-9", "shoes", "30"),
    ("BOOT-3", "shoes", "89.5"),
    ("MUG-7", "home", "7.25"),
    ("LAMP-4", "home", "39"),
    ("BOOK-5", "books", "12.99"),
    ("SOCKS-6", "clothes", "4.5"),
]
# Valid (twice as likely, once in lower case), unknown, and a typo'd code.
COUPONS = ["XMAS-2021", "XMAS-2021", "xmas-2021", "NOPE-1", "XMAS-2012"]
DISTINCT_COUPONS = ["XMAS-2021", "NOPE-1", "XMAS-2012"]  # a V2 list sends each code once
REFERRALS = ["REF-2740", "REF-0000"]


def cart(rng: random.Random) -> tuple[list[dict[str, object]], Decimal]:
    """A cart of 1-8 lines and its total (price x quantity, exact)."""
    items: list[dict[str, object]] = []
    total = Decimal(0)
    for _ in range(rng.randint(1, 8)):
        sku, category, price = rng.choice(SKUS)
        quantity = rng.randint(1, 3)
        items.append(
            {"sku": sku, "quantity": quantity, "price": Decimal(price), "category": category}
        )
        total += Decimal(price) * quantity
    return items, total


def line(rng: random.Random, number: int) -> str:
    """One JSONL line: 45% V1, 50% V2, 4% V1 with attributes, 1% refused."""
    roll = rng.random()
    profile = f"p{rng.randint(1, 5000)}"
    if roll < 0.01:  # refused: a quantity of 0, or a line cut short (not JSON)
        if rng.random() < 0.5:
            return '{"profileId": "p1", "cartItems": [{"sku": "A", "quantity": 0, "price": 1}]}'
        return '{"profileId": "p1", "total": 80'
    if roll < 0.46:  # V1: a bare session dict, its client total matching the cart
        items, total = cart(rng)
        session: dict[str, object] = {"profileId": profile, "cartItems": items, "total": total}
        if rng.random() < 0.6:
            session["coupon"] = rng.choice(COUPONS)
        if rng.random() < 0.2:
            session["referral"] = rng.choice(REFERRALS)
        if rng.random() < 0.1:
            session["state"] = "closed"
        return dumps(session)
    if roll < 0.96:  # V2: a request with a session id, codes as lists
        items, _ = cart(rng)
        v2: dict[str, object] = {"profileId": profile, "cartItems": items}
        codes = rng.sample(DISTINCT_COUPONS, k=rng.randint(0, 2))
        if codes:
            v2["couponCodes"] = codes
        if rng.random() < 0.2:
            v2["referralCode"] = rng.choice(REFERRALS)
        if rng.random() < 0.3:
            v2["additionalCosts"] = {"shipping": {"price": Decimal("4.99")}}
        if rng.random() < 0.1:
            v2["state"] = "closed"
        return dumps({"customerSessionId": f"s{number}", "customerSession": v2})
    return dumps(
        {
            "profileId": profile,
            "coupon": rng.choice(COUPONS),
            "total": Decimal(rng.randint(1000, 30000)) / 100,
            "attributes": {"channel": rng.choice(["web", "app", "store"])},
            "identifiers": [f"device-{rng.randint(1, 999)}"],
        }
    )


def generate(paths: dict[int, Path], seed: int = 14) -> None:
    """Write the first ``n`` lines of one stream to ``paths[n]``, for every ``n``, in one
    pass and one line at a time (memory does not grow with the count)."""
    rng = random.Random(seed)
    files = {n: path.open("w", encoding="utf-8", newline="\n") for n, path in paths.items()}
    try:
        for number in range(1, max(paths) + 1):
            text = line(rng, number) + "\n"
            for n, out in files.items():
                if number <= n:
                    out.write(text)
    finally:
        for out in files.values():
            out.close()


@attrs.frozen
class Run:
    what: str
    sessions: int
    seconds: float
    code: int
    peak_kib: int  # the CLI process's VmHWM (its own peak resident memory)
    maxrss_kib: int  # the same from wait4's rusage, as a cross-check
    worker_peak_kib: int  # the largest worker process's VmHWM (0: no local workers)

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds


def _status_kib(pid: int, field: str = "VmHWM") -> int:
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # The field after the parenthesised command name is the state, then ppid.
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def run(what: str, argv: list[str], sessions: int, out: Path) -> Run:
    """Run the CLI, polling the peak memory of it and of its worker processes."""
    peaks: dict[int, int] = {}
    done = threading.Event()
    start = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)

        def poll() -> None:
            while not done.wait(0.25):
                for pid in {proc.pid} | _descendants(proc.pid):
                    peaks[pid] = max(peaks.get(pid, 0), _status_kib(pid))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    workers = [kib for pid, kib in peaks.items() if pid != proc.pid]
    return Run(
        what,
        sessions,
        seconds,
        proc.returncode,
        peaks.get(proc.pid, 0),
        usage.ru_maxrss,
        max(workers, default=0),
    )


def _vmhwm() -> int:
    return _status_kib(os.getpid())


def same(a: Path, b: Path) -> str:
    return "identical" if filecmp.cmp(a, b, shallow=False) else "DIFFERENT"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rules", default=str(ROOT / "examples" / "xmas.py"))
    parser.add_argument("--dask-size", type=int, default=100_000)
    parser.add_argument("--dir", help="where to write the files (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="eval-stream-"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = sorted(set(args.sizes) | {args.dask_size})
    inputs = {n: folder / f"sessions-{n}.jsonl" for n in sizes}
    start = time.perf_counter()
    generate(inputs)
    print(
        f"generated {', '.join(f'{n:,}' for n in sizes)} lines in "
        f"{time.perf_counter() - start:.0f} s ({inputs[sizes[-1]].stat().st_size / 2**20:,.0f} MiB "
        f"for {sizes[-1]:,}); generator peak {_vmhwm() / 1024:.0f} MiB"
    )
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    eval_ = [sys.executable, "-m", "sandbox", "eval", args.rules]
    runs: list[Run] = []
    for n in sizes:
        if n not in args.sizes:
            continue
        sequential = folder / f"out-{n}-seq.jsonl"
        runs.append(run(f"--dry, {n:,}", [*eval_, str(inputs[n]), "--dry"], n, sequential))
        _say(runs[-1])
        parallel = folder / f"out-{n}-jobs2.jsonl"
        runs.append(
            run(
                f"--dry --jobs 2, {n:,}",
                [*eval_, str(inputs[n]), "--dry", "--jobs", "2"],
                n,
                parallel,
            )
        )
        _say(
            runs[-1],
            f"output {same(sequential, parallel)} to the sequential run's; "
            f"speedup {runs[-1].rate / runs[-2].rate:.2f}x",
        )
        parallel.unlink()
        if n != args.dask_size:
            sequential.unlink()
    if args.dask_size:
        runs.append(_dask(eval_, inputs[args.dask_size], args.dask_size, folder))
    for path in folder.glob("out-*"):
        path.unlink()
    print("\n| run | sessions/s | CLI peak (VmHWM) | ru_maxrss | largest worker | exit |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        worker = f"{r.worker_peak_kib / 1024:.0f} MiB" if r.worker_peak_kib else "-"
        print(
            f"| {r.what} | {r.rate:,.0f} | {r.peak_kib / 1024:.0f} MiB | "
            f"{r.maxrss_kib / 1024:.0f} MiB | {worker} | {r.code} |"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def _say(r: Run, note: str = "") -> None:
    print(
        f"{r.what}: {r.seconds:.1f} s, {r.rate:,.0f} sessions/s, peak {r.peak_kib / 1024:.0f} MiB"
        + (f", workers {r.worker_peak_kib / 1024:.0f} MiB" if r.worker_peak_kib else "")
        + f", exit {r.code}"
        + (f"; {note}" if note else ""),
        flush=True,
    )


def _dask(eval_: list[str], sessions: Path, n: int, folder: Path) -> Run:
    """A LocalCluster of 2 worker processes (1 thread each) started here; the CLI
    connects to its scheduler over TCP as it would to a remote cluster."""
    from distributed import Client, LocalCluster

    out = folder / f"out-{n}-dask.jsonl"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        r = run(
            f"--dry --dask (LocalCluster, 2 workers), {n:,}",
            [*eval_, str(sessions), "--dry", "--dask", cluster.scheduler_address],
            n,
            out,
        )
        workers = client.run(_vmhwm)
    r = attrs.evolve(r, worker_peak_kib=max(workers.values()))
    sequential = folder / f"out-{n}-seq.jsonl"
    note = f"output {same(sequential, out)} to the sequential run's" if sequential.exists() else ""
    _say(r, note)
    return r


if __name__ == "__main__":
    main()
