"""Memory: what a sandbox holds per stored session, open and closed.

Prints the tracemalloc growth per session for 5,000 open and 5,000 closed
sessions (5-line carts, a coupon each) and the peak. Run:
    python bench/bench_memory.py
Results are recorded in bench/README.md. Not a test: nothing here asserts.
"""

from __future__ import annotations

import gc
import tracemalloc

from bench_engine import PAYLOAD, build

from sandbox import NewCustomerSession, from_wire

N = 5_000


def grow(state: str) -> tuple[float, float]:
    sb = build()
    xmas = sb.get_campaign("Xmas")
    for i in range(N):
        xmas.coupon(f"CODE-{i:05d}")
    payloads = [{**PAYLOAD, "coupon": f"CODE-{i:05d}", "state": state} for i in range(N)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, payload in enumerate(payloads):
        # The stored model is built here, so it counts: what a session costs end to end.
        sb.update(f"s{i}", from_wire(NewCustomerSession, payload))
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (after - before) / N, (peak - before) / 2**20


def main() -> None:
    for state in ("open", "closed"):
        per_session, peak = grow(state)
        print(
            f"{state:6} sessions: {per_session / 1024:6.1f} KiB each, peak {peak:6.1f} MiB for {N}"
        )


if __name__ == "__main__":
    main()
