"""What Talon.One's OpenAPI spec, run through schemathesis (``bench/spec_check.py``),
found wrong in the server, one regression test per fix.

The tests start one server on a free port for the module and speak raw HTTP: these
are HTTP-level facts (headers, query parameters) that the SDK does not expose.
Expected values come from the HTTP standard (RFC 9110 for ``Allow``) and from the
spec's parameter definitions, not from the server's own output.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox.server import TalonServer, running


def _build() -> Sandbox:
    return Sandbox(now="2026-12-01T10:00:00Z")


@pytest.fixture(scope="module")
def server() -> Iterator[TalonServer]:
    with running(_build) as live:
        yield live


def _call(
    server: TalonServer, method: str, path: str, body: Any = None
) -> tuple[int, Message, Any]:
    request = urllib.request.Request(
        server.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"ApiKey-v1 {server.api_key}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            return answer.status, answer.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, error.headers, json.loads(raw) if raw else None


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        # one path served by two routes (PUT and GET): Allow lists both (and HEAD, which
        # every GET route answers)
        ("TRACE", "/v2/customer_sessions/s1", {"GET", "HEAD", "PUT"}),
        ("DELETE", "/v2/customer_sessions/s1/reopen", {"PUT"}),
        ("GET", "/v2/customer_sessions/s1/returns", {"POST"}),
        ("PATCH", "/v2/customer_profiles/p1", {"PUT"}),
        ("GET", "/v2/events", {"POST"}),
        ("POST", "/v1/customer_profiles/p1/inventory", {"GET", "HEAD"}),
        ("GET", "/v1/referrals", {"POST"}),
    ],
)
def test_405_lists_the_allowed_methods_of_the_path(
    server: TalonServer, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 section 15.5.6: a 405 answer MUST carry ``Allow`` with the target's methods
    (schemathesis ST204 on every served operation before the fix)."""
    status, headers, body = _call(server, method, path)
    assert status == 405
    assert {m.strip() for m in headers["Allow"].split(",")} == allowed
    assert body["StatusCode"] == 405  # still Talon.One's error body


def test_track_event_refuses_a_force_complete_evaluation_that_is_not_a_boolean(
    server: TalonServer,
) -> None:
    """``forceCompleteEvaluation`` is a boolean in the spec; any other value was accepted
    (schemathesis ST201) and is now a 400 naming the parameter, storing nothing."""
    body = {"profileId": "p-force", "type": "signup"}
    status, _, answer = _call(server, "POST", "/v2/events?forceCompleteEvaluation=null", body)
    assert status == 400
    assert answer["errors"] == [
        {
            "title": "'forceCompleteEvaluation' must be true or false, got 'null'",
            "source": {"parameter": "forceCompleteEvaluation"},
        }
    ]
    status, _, _ = _call(server, "GET", "/sandbox/profiles/p-force")
    assert status == 404  # the refused event created no profile
    for value in ("true", "false"):
        status, _, _ = _call(
            server, "POST", f"/v2/events?forceCompleteEvaluation={value}&dry=true", body
        )
        assert status == 204
