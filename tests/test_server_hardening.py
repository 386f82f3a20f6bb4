"""The server under hostile requests: bounded bodies, paths that are not text, no bare 500.

From the third hardening issue (items 3 and 4): a request body over the limit is a 413
in Talon.One's error body, read no further than the limit and changing nothing; a path
parameter that is not UTF-8 is a 400 naming it; whatever a request sends, every route
answers in Talon.One's error body (never Starlette's plain-text 500) and a refused
request stores nothing. Each test starts its own server on a free port and stops it.
The last section pins the library fixes the routes led to (a clock whose UTC time is
past the year 9999, a created code expiring past it, an attribute effect that JSON
cannot write).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import sandbox.server
from sandbox import DefinitionError, Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.server import MAX_BODY, TalonServer, running

ROOT = Path(__file__).parent.parent
NOW = "2026-12-01T10:00:00Z"
MIB = 1024 * 1024


def build() -> Sandbox:
    sb = Sandbox(now=NOW)
    xmas = sb.campaign("Xmas")
    xmas.coupon("XMAS-2021", usage_limit=100)
    xmas.rule(
        "10% off carts of 50 or more",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10% off", percent=10)],
    )
    return sb


@pytest.fixture
def limited() -> Iterator[Callable[[int], TalonServer]]:
    """``limited(max_body)``: a server of ``build()`` with that body limit, stopped at
    the end of the test."""
    with contextlib.ExitStack() as servers:
        yield lambda max_body: servers.enter_context(running(build, max_body=max_body))


def call(
    server: TalonServer,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One plain HTTP request: (status, Content-Type, raw body). An iterable body goes
    chunked (no Content-Length), as http.client sends any iterable."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers={**server.headers, **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        connection.close()


def talon_error(status: int, content_type: str, raw: bytes) -> dict[str, Any]:
    """The body of a refusal, checked to be Talon.One's error shape for ``status``."""
    assert content_type == "application/json", (content_type, raw[:200])
    body: dict[str, Any] = json.loads(raw)
    assert set(body) == {"message", "errors", "StatusCode"}, body
    assert body["StatusCode"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    assert all("title" in error and "source" in error for error in body["errors"]), body
    return body


def snapshot(server: TalonServer) -> Any:
    status, _, raw = call(server, "GET", "/sandbox/snapshot")
    assert status == 200, raw[:300]
    return json.loads(raw)


def session_body(size: int) -> bytes:
    """A valid IntegrationRequest of exactly ``size`` bytes (padded with JSON whitespace),
    that a server without a body limit stores."""
    core = json.dumps(
        {"customerSession": {"profileId": "p1", "couponCodes": ["XMAS-2021"]}}
    ).encode()
    assert size >= len(core)
    return core[:-1] + b" " * (size - len(core)) + b"}"


def pieces(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ---------------------------------------------------------------------------
# 4: the request body limit


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_one_byte_over_the_limit_is_413_and_changes_nothing(
    limited: Callable[[int], TalonServer], chunked: bool
) -> None:
    server = limited(4096)
    before = snapshot(server)
    over = session_body(4097)
    status, kind, raw = call(
        server, "PUT", "/v2/customer_sessions/s1", pieces(over) if chunked else over
    )
    assert status == 413
    body = talon_error(413, kind, raw)
    assert "4,096 bytes (4 KiB)" in body["message"]  # the limit
    # The size: exact when declared; when streamed, only what was read.
    assert ("more than 4,096 bytes" if chunked else "4,097 bytes") in body["message"]
    assert "--max-body" in body["message"]
    assert body["errors"][0]["source"] == {"pointer": ""}
    assert snapshot(server) == before

    # The same request at exactly the limit is an ordinary update: the 413 was the size.
    at_limit = session_body(4096)
    status, _, raw = call(
        server, "PUT", "/v2/customer_sessions/s1", pieces(at_limit) if chunked else at_limit
    )
    assert status == 200, raw[:300]
    assert list(snapshot(server)["sessions"]) == ["s1"]


def test_the_talon_server_fixture_passes_max_body_on(
    talon_server: Callable[..., TalonServer],
) -> None:
    server = talon_server(build, max_body=2048)
    status, kind, raw = call(server, "PUT", "/v2/customer_sessions/s1", session_body(2049))
    assert "2,048 bytes (2 KiB)" in talon_error(413, kind, raw)["message"]
    assert status == 413


def test_the_default_limit_is_one_mib(talon_server: Callable[..., TalonServer]) -> None:
    assert MAX_BODY == MIB
    server = talon_server(build)
    status, kind, raw = call(server, "PUT", "/v2/customer_sessions/s1", session_body(MIB + 1))
    assert "1,048,576 bytes (1 MiB)" in talon_error(413, kind, raw)["message"]
    status, _, raw = call(server, "PUT", "/v2/customer_sessions/s1", session_body(MIB))
    assert status == 200, raw[:300]


def test_every_route_that_takes_a_body_is_limited(
    limited: Callable[[int], TalonServer],
) -> None:
    server = limited(100)
    big = b'{"pad": "' + b"x" * 200 + b'"}'
    routes = [
        ("PUT", "/v2/customer_sessions/s1"),
        ("POST", "/v2/customer_sessions/s1/returns"),
        ("PUT", "/v2/customer_profiles/p1"),
        ("PUT", "/sandbox/clock"),
        ("POST", "/sandbox/clock/advance"),
    ]
    before = snapshot(server)
    for method, path in routes:
        status, kind, raw = call(server, method, path, big)
        assert status == 413, (method, path, raw[:200])
        talon_error(413, kind, raw)
    assert snapshot(server) == before


def test_a_refused_body_is_freed_at_once_not_when_the_garbage_collector_runs(
    limited: Callable[[int], TalonServer],
) -> None:
    # A refusal raised out of the worker thread stayed in a reference cycle with the
    # future that carried it, its frames holding the body, until a collection ran: a
    # server seeing few other requests kept each large refused body. With the collector
    # off, what the refusal leaves behind is measured directly.
    server = limited(16 * MIB)
    big = b'["' + b"x" * (4 * MIB) + b'"]'  # JSON, but not an object: the server refuses it
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        status, kind, raw = call(server, "PUT", "/v2/customer_sessions/s1", big)
        # The server's side of the closed connection (its receive buffer) goes a moment
        # after the answer; what a cycle holds never goes while the collector is off.
        deadline = time.monotonic() + 5
        while (left := tracemalloc.get_traced_memory()[0] - before) >= MIB:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    finally:
        tracemalloc.stop()
        gc.enable()
    assert status == 400
    assert "must be a JSON object" in talon_error(400, kind, raw)["errors"][0]["title"]
    assert left < MIB, f"{left:,} bytes left after refusing a {len(big):,}-byte body"


def test_a_wrong_key_is_401_before_the_body_is_weighed(
    limited: Callable[[int], TalonServer],
) -> None:
    server = limited(100)
    status, kind, raw = call(
        server,
        "PUT",
        "/v2/customer_sessions/s1",
        session_body(1000),
        headers={"Authorization": "ApiKey-v1 wrong"},
    )
    talon_error(401, kind, raw)
    assert status == 401


@pytest.mark.parametrize("max_body", [0, -1, 1.5, True, "1MiB"])
def test_a_limit_that_is_not_a_positive_integer_is_refused_at_creation(max_body: Any) -> None:
    with pytest.raises(ValueError, match="max_body must be a positive number of bytes"):
        sandbox.server.create_app(build, api_key="k", max_body=max_body)


def _start(*args: str) -> tuple[subprocess.Popen[str], TalonServer, str]:
    """``python -m sandbox serve ARGS`` on a free port: the process, a handle, and the
    first line it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", *args, "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert " at " in first, process.stderr.read() if process.stderr else first
    url = first.split(" at ")[1].split()[0]
    return process, TalonServer(url, "k", None), first  # type: ignore[arg-type]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


_HEAD = b'{"customerSession": {"profileId": "p1", "attributes": {"note": "'
_TAIL = b'"}}}'
_BLOCK = b"a" * (256 * 1024)


def _stream(blocks: int) -> Iterator[bytes]:
    """A JSON object around ``blocks`` blocks of 256 KiB, produced as it is sent."""
    yield _HEAD
    for _ in range(blocks):
        yield _BLOCK
    yield _TAIL


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_large_bodies_do_not_raise_the_server_process_peak_memory() -> None:
    """Four 32 MiB bodies, two declared and two chunked, two of them at once: the server
    process's peak resident memory (VmHWM) stays within a few MiB of its size at rest.
    Reading any one of them whole would add at least 32 MiB."""
    process, server, _ = _start("examples/xmas.py")
    blocks = 128  # 32 MiB
    size = len(_HEAD) + blocks * len(_BLOCK) + len(_TAIL)
    try:
        assert call(server, "GET", "/sandbox/clock")[0] == 200  # the first answer's imports
        rest = _status_kib(process.pid, "VmRSS")
        statuses: list[int] = []

        def send(chunked: bool) -> None:
            headers = {} if chunked else {"Content-Length": str(size)}
            answer = call(
                server, "PUT", "/v2/customer_sessions/s1", _stream(blocks), headers=headers
            )
            statuses.append(answer[0])

        for pair in ([False, True], [False, True]):
            threads = [threading.Thread(target=send, args=(chunked,)) for chunked in pair]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        peak = _status_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert statuses == [413] * 4
    assert peak - rest < 8 * 1024, f"peak {peak} KiB, at rest {rest} KiB"


def test_serve_max_body_sets_the_limit_and_refuses_a_size_it_cannot_read() -> None:
    process, server, first = _start("examples/xmas.py", "--max-body", "2KiB")
    try:
        assert "request bodies up to 2,048 bytes (2 KiB)" in first
        status, kind, raw = call(server, "PUT", "/v2/customer_sessions/s1", session_body(2049))
        assert "2,048 bytes (2 KiB)" in talon_error(413, kind, raw)["message"]
        status, _, raw = call(server, "PUT", "/v2/customer_sessions/s1", session_body(2048))
        assert status == 200, raw[:300]
    finally:
        process.terminate()
        process.communicate(timeout=30)

    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "examples/xmas.py", "--max-body", "1MB"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "--max-body must be a positive number of bytes" in result.stderr
    assert "'1MB'" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# 3: path parameters that are not text

# Every route with a path parameter, and a body it would accept.
PARAMETER_ROUTES = [
    ("PUT", "/v2/customer_sessions/{}", "customerSessionId", b'{"customerSession": {}}'),
    ("GET", "/v2/customer_sessions/{}", "customerSessionId", None),
    ("PUT", "/v2/customer_sessions/{}/reopen", "customerSessionId", None),
    (
        "POST",
        "/v2/customer_sessions/{}/returns",
        "customerSessionId",
        b'{"return": {"returnedCartItems": [{"position": 0, "quantity": 1}]}}',
    ),
    ("PUT", "/v2/customer_profiles/{}", "integrationId", b'{"attributes": {}}'),
    ("GET", "/sandbox/coupons/{}", "code", None),
    ("GET", "/sandbox/referrals/{}", "code", None),
    ("GET", "/sandbox/profiles/{}", "integrationId", None),
]


@pytest.mark.parametrize("encoded", ["%ED%A0%80", "p%FF1", "%C3"])
@pytest.mark.parametrize(
    ("method", "template", "parameter", "body"),
    PARAMETER_ROUTES,
    ids=[f"{m} {t}" for m, t, _, _ in PARAMETER_ROUTES],
)
def test_a_path_parameter_that_is_not_utf8_is_400_naming_it_and_changes_nothing(
    talon_server: Callable[..., TalonServer],
    method: str,
    template: str,
    parameter: str,
    body: bytes | None,
    encoded: str,
) -> None:
    # %ED%A0%80 is the UTF-8-style encoding of the surrogate U+D800; %FF and a lone %C3
    # are not UTF-8 at all. The ASGI server would turn each into U+FFFD.
    server = talon_server(build)
    before = snapshot(server)
    status, kind, raw = call(server, method, template.format(encoded), body)
    error = talon_error(400, kind, raw)
    assert status == 400
    assert [e["source"] for e in error["errors"]] == [{"parameter": parameter}]
    assert "must be UTF-8" in error["errors"][0]["title"]
    assert encoded in error["errors"][0]["title"]  # the path as sent
    assert snapshot(server) == before


def test_path_parameters_in_percent_encoded_utf8_are_ids_like_any_other(
    talon_server: Callable[..., TalonServer],
) -> None:
    # The check refuses only what is not UTF-8: an encoded U+FFFD itself, and accents,
    # are text and name the session they spell.
    server = talon_server(build)
    for encoded, session_id in (("caf%C3%A9", "café"), ("%EF%BF%BD", "\ufffd")):
        status, _, raw = call(
            server, "PUT", f"/v2/customer_sessions/{encoded}", b'{"customerSession": {}}'
        )
        assert status == 200, raw[:300]
        status, _, raw = call(server, "GET", f"/v2/customer_sessions/{encoded}")
        assert status == 200, raw[:300]
        assert json.loads(raw)["customerSession"]["integrationId"] == session_id
    assert sorted(snapshot(server)["sessions"]) == ["café", "\ufffd"]


def test_a_surrogate_in_a_path_parameter_from_any_asgi_server_is_400_naming_it() -> None:
    # uvicorn never hands the app a surrogate (it decodes with replacement), but the
    # ASGI spec leaves decoding to the server: a path holding one, with no raw_path,
    # is refused by the app itself, before the sandbox sees it.
    app = sandbox.server.create_app(build, api_key="k")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/v2/customer_sessions/s\ud800",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", b"ApiKey-v1 k")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"customerSession": {}}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    error = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert error["errors"][0]["source"] == {"parameter": "customerSessionId"}
    assert "unpaired surrogate" in error["errors"][0]["title"]
    assert app.state.live.sandbox.sessions == {}


# ---------------------------------------------------------------------------
# 3: unpaired surrogates in bodies

# Each body holds the JSON escape of an unpaired surrogate where a string goes; the
# pointer is where it is. The first is the reproduction: the session was stored,
# then the answer (asking for the session back) failed, a plain-text 500.
SURROGATE_BODIES = [
    (
        "PUT",
        "/v2/customer_sessions/s1",
        r'{"customerSession": {"profileId": "p\ud800"}, "responseContent": ["customerSession"]}',
        "/customerSession/profileId",
    ),
    (
        "PUT",
        "/v2/customer_sessions/s1",
        r'{"customerSession": {"couponCodes": ["XMAS-2021", "X\udc00"]}}',
        "/customerSession/couponCodes/1",
    ),
    (
        "PUT",
        "/v2/customer_sessions/s1",
        r'{"customerSession": {"cartItems": [{"sku": "\udbff", "quantity": 1, "price": 5}]}}',
        "/customerSession/cartItems/0/sku",
    ),
    (
        "PUT",
        "/v2/customer_sessions/s1",
        r'{"customerSession": {"attributes": {"note": ["ok", "\ud800x"]}}}',
        "/customerSession/attributes/note/1",
    ),
    (
        "PUT",
        "/v2/customer_profiles/p1",
        r'{"attributes": {"name": "\udfff"}, "responseContent": ["customerProfile"]}',
        "/attributes/name",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "pointer"), SURROGATE_BODIES, ids=[b[3] for b in SURROGATE_BODIES]
)
def test_a_body_string_with_an_unpaired_surrogate_is_400_at_its_pointer_and_stores_nothing(
    talon_server: Callable[..., TalonServer], method: str, path: str, body: str, pointer: str
) -> None:
    server = talon_server(build)
    before = snapshot(server)
    status, kind, raw = call(server, method, path, body.encode())
    error = talon_error(400, kind, raw)
    assert status == 400
    assert [e["source"] for e in error["errors"]] == [{"pointer": pointer}]
    assert "unpaired surrogate" in error["errors"][0]["title"]
    assert snapshot(server) == before  # and the snapshot still answers


def test_a_surrogate_in_an_attribute_key_is_400_and_stores_nothing(
    talon_server: Callable[..., TalonServer],
) -> None:
    server = talon_server(build)
    before = snapshot(server)
    status, kind, raw = call(
        server,
        "PUT",
        "/v2/customer_sessions/s1",
        rb'{"customerSession": {"attributes": {"k\ud800": 1}}}',
    )
    error = talon_error(400, kind, raw)
    assert status == 400
    (problem,) = error["errors"]
    # The pointer names the key as it is, so the error body holds the surrogate too: it
    # goes out as its JSON escape (it used to make the 400 itself a plain-text 500).
    assert problem["source"] == {"pointer": "/customerSession/attributes/k\ud800"}
    assert b'"/customerSession/attributes/k\\ud800"' in raw
    assert "unpaired surrogate" in problem["title"]
    assert snapshot(server) == before


# ---------------------------------------------------------------------------
# 3: no bare 500


def test_a_route_that_fails_unexpectedly_answers_talon_ones_error_body(
    talon_server: Callable[..., TalonServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = talon_server(build)
    before = snapshot(server)

    def broken(*args: Any) -> bool:
        raise RuntimeError("a bug outside the request's work")

    # Before the work is handed to the sandbox (outside the route's own error handling).
    monkeypatch.setattr(sandbox.server, "_flag", broken)
    status, kind, raw = call(server, "PUT", "/v2/customer_sessions/s1", b'{"customerSession": {}}')
    error = talon_error(500, kind, raw)
    assert status == 500
    assert "RuntimeError: a bug outside the request's work" in error["message"]
    assert "please report it" in error["message"]
    assert snapshot(server) == before


def test_an_answer_json_cannot_write_is_500_in_talon_ones_body(
    talon_server: Callable[..., TalonServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = talon_server(build)
    monkeypatch.setattr(sandbox.server, "snapshot_wire", lambda sb: {"now": float("nan")})
    status, kind, raw = call(server, "GET", "/sandbox/snapshot")
    error = talon_error(500, kind, raw)
    assert status == 500
    assert "ValueError" in error["message"]


def test_strings_json_escapes_but_utf8_cannot_hold_are_written_back_as_escapes(
    talon_server: Callable[..., TalonServer],
) -> None:
    # An unpaired surrogate that reached the state (here, a rule's own text) is written
    # back as the JSON escape for it, in every answer that carries it, and never turns
    # an answer into a 500.
    sb = Sandbox(now=NOW)
    sb.campaign("Odd").rule(
        "odd text",
        when=[lambda ctx: ctx.profile_id == "odd"],
        then=[e.show_notification("Odd", "x\udc00y")],
    )
    sb.campaign("Accent").rule(
        "accent",
        when=[lambda ctx: ctx.profile_id == "accent"],
        then=[e.show_notification("Accent", "crème")],
    )
    server = talon_server(sb)
    status, _, raw = call(
        server,
        "PUT",
        "/v2/customer_sessions/s1",
        b'{"customerSession": {"profileId": "odd"}, "responseContent": ["customerSession"]}',
    )
    assert status == 200, raw[:300]
    assert b"x\\udc00y" in raw  # the escape, not bytes that UTF-8 gives no meaning
    (effect,) = json.loads(raw)["effects"]
    assert effect["props"]["body"] == "x\udc00y"
    for path in ("/v2/customer_sessions/s1", "/sandbox/snapshot"):
        status, _, raw = call(server, "GET", path)
        assert status == 200, (path, raw[:300])
    # Text UTF-8 can hold goes out as UTF-8.
    status, _, raw = call(
        server, "PUT", "/v2/customer_sessions/s2", b'{"customerSession": {"profileId": "accent"}}'
    )
    assert status == 200, raw[:300]
    assert "crème".encode() in raw


# ---------------------------------------------------------------------------
# 3: the control surface's bodies and the clock's edges


@pytest.mark.parametrize(
    ("body", "pointer", "words"),
    [
        (b'{"days": true}', "/days", "'days' must be a number, got True"),
        (b'{"days": "1"}', "/days", "'days' must be a number, got '1'"),
        (b'{"days": null}', "/days", "'days' must be a number, got None"),
        (b'{"fortnights": 1}', "/fortnights", "unknown unit 'fortnights'"),
        (b'{"a/b": 1}', "/a~1b", "unknown unit 'a/b'"),
        (b'{"days": 1e400}', "", "not a usable time span"),
        (b'{"days": -1}', "", "moves forward only"),
        (b'{"days": 4000000}', "", "past the year 9999"),
    ],
)
def test_a_clock_advance_it_cannot_make_is_400_with_a_pointer_and_keeps_the_clock(
    talon_server: Callable[..., TalonServer], body: bytes, pointer: str, words: str
) -> None:
    server = talon_server(build)
    status, kind, raw = call(server, "POST", "/sandbox/clock/advance", body)
    error = talon_error(400, kind, raw)
    assert status == 400
    assert [e["source"] for e in error["errors"]] == [{"pointer": pointer}]
    assert words in error["errors"][0]["title"]
    assert snapshot(server)["now"] == NOW


def test_a_clock_advance_in_several_units_adds_them(
    talon_server: Callable[..., TalonServer],
) -> None:
    server = talon_server(build)
    status, _, raw = call(server, "POST", "/sandbox/clock/advance", b'{"weeks": 1, "hours": 2.5}')
    assert status == 200, raw[:300]
    assert json.loads(raw) == {"now": "2026-12-08T12:30:00Z"}


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_clock_whose_utc_time_is_past_the_calendar_is_400_and_nothing_moves(
    talon_server: Callable[..., TalonServer], moment: str
) -> None:
    # In its own offset the moment is a valid date; in UTC, which every answer writes,
    # it is in the year 10000 (or 0). It used to be stored, and every later answer
    # carrying the clock was a 500 until a reset.
    server = talon_server(build)
    before = snapshot(server)
    status, kind, raw = call(server, "PUT", "/sandbox/clock", json.dumps({"now": moment}).encode())
    error = talon_error(400, kind, raw)
    assert status == 400
    assert "within the years 1 to 9999 in UTC" in error["message"]
    query = "dry=true&now=" + moment.replace("+", "%2B")
    status, kind, raw = call(
        server,
        "PUT",
        f"/v2/customer_sessions/s1?{query}",
        b'{"customerSession": {}, "responseContent": ["customerSession"]}',
    )
    error = talon_error(400, kind, raw)
    assert [e["source"] for e in error["errors"]] == [{"parameter": "now"}]
    assert snapshot(server) == before


def test_the_clock_cannot_advance_to_a_local_time_whose_utc_is_past_the_calendar() -> None:
    sb = Sandbox(now="9999-12-31T09:00:00-14:00")  # 23:00 UTC
    with pytest.raises(DefinitionError, match="past the year 9999"):
        sb.advance(hours=2)
    assert sb.now.isoformat() == "9999-12-31T09:00:00-14:00"


def test_a_code_created_days_after_the_last_day_expires_at_the_calendars_end(
    talon_server: Callable[..., TalonServer],
) -> None:
    # The clock cannot pass 9999-12-31T23:59:59.999999Z, so a code valid for 30 days
    # from 9999-12-31 is valid until then. It used to be an OverflowError (a 500).
    sb = Sandbox(now="9999-12-31T10:00:00Z")
    sb.campaign("Next order")
    sb.campaign("Reward").rule(
        "a code per order",
        when=[lambda ctx: True],
        then=[e.create_coupon(pattern="NEXT-####", valid_days=30, campaign="Next order")],
    )
    server = talon_server(sb)
    status, _, raw = call(
        server,
        "PUT",
        "/v2/customer_sessions/s1",
        b'{"customerSession": {"profileId": "p1", "state": "closed"}}',
    )
    assert status == 200, raw[:300]
    (created,) = json.loads(raw)["createdCoupons"]
    assert created["expiryDate"] == "9999-12-31T23:59:59.999999Z"
    assert created["recipientIntegrationId"] == "p1"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "must be a JSON value (got float nan)"),
        (Decimal("1E+400"), "must be below 1E+30"),
        ({"when": {1, 2}}, "'value.when' must be a JSON value (got set"),
        ({1: "one"}, "keys must be strings"),
        (object(), "must be a JSON value (got object"),
        ("a\ud800", "unpaired surrogate"),
    ],
)
def test_an_attribute_effect_json_cannot_write_is_refused_when_the_rule_is_written(
    value: Any, words: str
) -> None:
    # It used to be stored with the session on the first update, and every answer
    # carrying the effect then failed.
    with pytest.raises(DefinitionError, match="update_attribute") as info:
        e.update_attribute("Session.Attributes.x", value)
    assert words in str(info.value)


def test_a_reset_whose_rebuild_fails_is_500_and_keeps_the_served_sandbox(
    talon_server: Callable[..., TalonServer],
) -> None:
    calls = []

    def flaky() -> Sandbox:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the rules' data file is gone")
        return build()

    server = talon_server(flaky)
    call(server, "PUT", "/v2/customer_sessions/s1", b'{"customerSession": {}}')
    before = snapshot(server)
    status, kind, raw = call(server, "POST", "/sandbox/reset")
    error = talon_error(500, kind, raw)
    assert status == 500
    assert "rebuilding the sandbox failed, so the served one is unchanged" in error["message"]
    assert "RuntimeError: the rules' data file is gone" in error["message"]
    assert snapshot(server) == before
