"""Session updates over HTTP: `python -m sandbox serve` driven by the official SDK client.

The server runs in its own process (`python -m sandbox serve RULES --port 0`), as an
integration's tests would run it; the clients are threads of this process, each with
its own `talon_one.IntegrationApi` (its own connection pool). Each request is
`update_customer_session_v2` with a 3-line cart and one or two coupon codes of the
rules file (examples/xmas.py by default), on sessions that each client cycles through
(open sessions, so the store stays small), asking for `customerSession` back.

Prints, for 1 and 8 concurrent clients: requests per second (all clients together, over
the wall time) and the p50 / p99 latency of one request. For scale, the same updates made
in process with `Sandbox.update` (no HTTP) give the median cost of the engine's part.
Run:
    python bench/server.py [--requests 2000] [--rules examples/xmas.py]
Results are recorded in bench/README.md. Not a test: nothing here asserts, but every
answer is checked to be a 200 that the SDK deserialized.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import talon_one
from talon_one.models.cart_item import CartItem
from talon_one.models.integration_request import IntegrationRequest
from talon_one.models.integration_state_v2 import IntegrationStateV2
from talon_one.models.new_customer_session_v2 import NewCustomerSessionV2

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
SESSIONS_PER_CLIENT = 20
WARMUP = 50


def payload(n: int) -> dict[str, Any]:
    codes = ["XMAS-2021"] if n % 2 else ["XMAS-2021", "UNKNOWN-1"]
    return {
        "customerSession": {
            "profileId": f"p{n % 97}",
            "couponCodes": codes,
            "cartItems": [
                {"sku": "shoe", "quantity": 1, "price": 40, "category": "shoes"},
                {"sku": "sock", "quantity": 2, "price": 5},
                {"sku": "hat", "quantity": 1, "price": 15},
            ],
        },
        "responseContent": ["customerSession"],
    }


def sdk_request(n: int) -> IntegrationRequest:
    wire = payload(n)
    s = wire["customerSession"]
    return IntegrationRequest(
        customer_session=NewCustomerSessionV2(
            profile_id=s["profileId"],
            coupon_codes=s["couponCodes"],
            cart_items=[CartItem(**item) for item in s["cartItems"]],
        ),
        response_content=wire["responseContent"],
    )


def start_server(rules: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", str(rules), "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    process.stdout.readline()  # the key line
    return process, first.split(" at ")[1].split()[0]


def client(url: str) -> Any:
    configuration = talon_one.Configuration(host=url)
    configuration.api_key["api_key_v1"] = KEY
    configuration.api_key_prefix["api_key_v1"] = "ApiKey-v1"
    return talon_one.IntegrationApi(talon_one.ApiClient(configuration))


def run(url: str, clients: int, requests: int, tag: str) -> tuple[float, list[float]]:
    """Requests per second over the wall time, and every request's latency (seconds)."""
    per_client = requests // clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            api = client(url)
            requests_made = [sdk_request(n) for n in range(per_client)]
            for n in range(WARMUP):  # connections open, code paths warm
                api.update_customer_session_v2(
                    f"warm-{tag}-{k}-{n % 5}", requests_made[n % per_client]
                )
            barrier.wait()
            mine = latencies[k]
            for n, request in enumerate(requests_made):
                started = time.perf_counter()
                answer = api.update_customer_session_v2(
                    f"{tag}-{k}-{n % SESSIONS_PER_CLIENT}", request
                )
                mine.append(time.perf_counter() - started)
                assert isinstance(answer, IntegrationStateV2)
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise failures[0]
    flat = [x for mine in latencies for x in mine]
    return len(flat) / wall, flat


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def in_process(rules: Path, count: int) -> float:
    """Median seconds of one `Sandbox.update` of the same payloads, without HTTP."""
    from sandbox.fuzzing import load_rules

    factory, _ = load_rules(rules)
    sb = factory()
    payloads = [payload(n) for n in range(count)]
    times = []
    for n, wire in enumerate(payloads):
        started = time.perf_counter()
        state = sb.update(f"s-{n % SESSIONS_PER_CLIENT}", wire)
        state.to_wire(response_content=wire["responseContent"])
        times.append(time.perf_counter() - started)
    return statistics.median(times[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per row")
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "xmas.py")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    print(
        f"commit {commit}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    engine = in_process(args.rules, args.requests)
    print(f"in process, Sandbox.update + to_wire: median {engine * 1e6:.0f} us")
    process, url = start_server(args.rules)
    try:
        print("| clients | requests/s | p50 | p99 |")
        print("|---|---|---|---|")
        for clients in (1, 8):
            rate, latencies = run(url, clients, args.requests, f"c{clients}")
            print(
                f"| {clients} | {rate:.0f} | {percentile(latencies, 50) * 1e3:.2f} ms "
                f"| {percentile(latencies, 99) * 1e3:.2f} ms |"
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
