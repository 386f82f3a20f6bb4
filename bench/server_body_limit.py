"""Memory: what large request bodies cost the server process (`python -m sandbox serve`).

Two cases from the hardening issue, each on a fresh server in its own process:

- one 200 MiB body;
- four 50 MiB bodies sent at once, from four threads.

Each body is a well-formed `IntegrationRequest` whose session carries one long string
attribute (so a server without a body limit reads, decodes and parses all of it). The
bodies go with a `Content-Length` by default, or chunked with `--chunked` (no length: the
server must count as it reads). Prints the server's resident memory at rest (VmRSS after
start), its peak (VmHWM, from /proc/<pid>/status) and what it still holds after the
answers (VmRSS), with the status codes it answered. Linux only (reads /proc).

Run from a checkout (the server is started from `sys.executable -m sandbox`, so run it
with the PYTHONPATH of the checkout to measure):

    python bench/server_body_limit.py [--chunked] [--rules examples/xmas.py]

Results are recorded in bench/README.md. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
MIB = 1024 * 1024
CHUNK = 64 * 1024


def body(size: int) -> bytes:
    """A JSON IntegrationRequest of exactly ``size`` bytes."""
    head = b'{"customerSession": {"profileId": "p1", "attributes": {"note": "'
    tail = b'"}}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield bytes(view[start : start + CHUNK])


def send(port: int, n: int, data: bytes, *, chunked: bool, statuses: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"ApiKey-v1 {KEY}", "Content-Type": "application/json"}
    try:
        if chunked:
            connection.request(
                "PUT",
                f"/v2/customer_sessions/big-{n}",
                body=chunks(data),
                headers=headers,
                encode_chunked=True,
            )
        else:
            connection.request("PUT", f"/v2/customer_sessions/big-{n}", body=data, headers=headers)
        answer = connection.getresponse()
        answer.read()
        statuses.append(answer.status)
    except OSError as exc:  # a server that closes early: record it, keep measuring
        statuses.append(-1)
        print(f"  client: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        connection.close()


@dataclass
class Run:
    rest_kib: int  # VmRSS once the server has started
    peak_kib: int  # VmHWM after the answers: the process's peak resident memory
    held_kib: int  # VmRSS after the answers
    statuses: list[int]
    seconds: float


def measure(rules: str, sizes: list[int], *, chunked: bool) -> Run:
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", rules, "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        time.sleep(0.5)
        rest = status_kib(server.pid, "VmRSS")
        payloads = [body(size) for size in sizes]
        statuses: list[int] = []
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=send, args=(port, n, p), kwargs={"chunked": chunked, "statuses": statuses}
            )
            for n, p in enumerate(payloads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        return Run(
            rest,
            status_kib(server.pid, "VmHWM"),
            status_kib(server.pid, "VmRSS"),
            sorted(statuses),
            seconds,
        )
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="examples/xmas.py")
    parser.add_argument("--chunked", action="store_true", help="send the bodies chunked")
    args = parser.parse_args()
    print(f"bodies sent {'chunked' if args.chunked else 'with Content-Length'}")
    print("| case | at rest | peak (VmHWM) | held after | answers | seconds |")
    print("|---|---|---|---|---|---|")
    for name, sizes in (
        ("one 200 MiB body", [200 * MIB]),
        ("four 50 MiB bodies at once", [50 * MIB] * 4),
    ):
        r = measure(args.rules, sizes, chunked=args.chunked)
        print(
            f"| {name} | {r.rest_kib / 1024:.0f} MiB | {r.peak_kib / 1024:.0f} MiB | "
            f"{r.held_kib / 1024:.0f} MiB | {r.statuses} | {r.seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
