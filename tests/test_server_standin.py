"""The server as a stand-in a team leaves running: health, its OpenAPI document, one log
line per request, configuration by environment, and a state file that a restart
loses nothing of.

Servers are started by the tests on free ports (one per module where the tests only
read, one per restart where they need it) and driven by the official ``talon_one``
SDK; raw HTTP only for the ``/sandbox`` control surface. Expected values are worked out
by hand from the rules below.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import talon_one
from talon_one.models.integration_event_v2_request import IntegrationEventV2Request
from talon_one.models.integration_request import IntegrationRequest
from talon_one.models.new_customer_session_v2 import NewCustomerSessionV2
from talon_one.models.new_referral import NewReferral
from talon_one.models.return_integration_request import ReturnIntegrationRequest

from sandbox import _openapi
from sandbox.cli import main
from sandbox.server import PUBLIC, TalonServer, running

ROOT = Path(__file__).parent.parent

RULES = """
from decimal import Decimal

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021", usage_limit=100)
    nxt = sb.campaign("Next order")
    nxt.rule("5 off the next order", when=[c.coupon_valid], then=[e.set_discount("next", 5)])
    xmas.rule(
        "10% off with the coupon, and a coupon for the next order",
        when=[c.coupon_valid],
        then=[
            e.set_discount("10% off", percent=10),
            e.create_coupon(pattern="NEXT-####", campaign="Next order"),
        ],
    )
    gold = sb.campaign("Gold")
    gold.rule(
        "greet gold members",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.show_notification("Welcome", "Hello, gold member")],
    )
    return sb
"""

OTHER_RULES = """
from sandbox import Sandbox


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Spring")
    return sb
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.py"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(rules: Path) -> Iterator[TalonServer]:
    with running(rules) as started:
        yield started


def client(server: TalonServer) -> Any:
    configuration = talon_one.Configuration(host=server.url)
    configuration.api_key["api_key_v1"] = server.api_key
    configuration.api_key_prefix["api_key_v1"] = "ApiKey-v1"
    return talon_one.IntegrationApi(talon_one.ApiClient(configuration))


def http(
    server: TalonServer, method: str, path: str, body: Any = None, *, key: bool = True
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(server.headers if key else {})}
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def order(profile: str, *codes: str, state: str = "open") -> IntegrationRequest:
    """Two trees of 50 (total 100) for ``profile``, with ``codes``."""
    return IntegrationRequest(
        customer_session=NewCustomerSessionV2(
            profile_id=profile,
            coupon_codes=list(codes),
            cart_items=[{"sku": "tree", "quantity": 2, "price": 50}],
            state=state,
        )
    )


# ---------------------------------------------------------------------------
# health, the OpenAPI document, the request log


def test_health_answers_without_a_key_and_counts_what_requests_made(
    server: TalonServer, rules: Path
) -> None:
    status, before = http(server, "GET", "/sandbox/health", key=False)
    assert status == 200
    assert before["status"] == "ok"
    assert before["rules"] == str(rules)
    assert before["state"] is None
    assert before["campaigns"] == 3
    assert before["now"] == "2026-12-01T10:00:00Z"
    assert re.fullmatch(r"\d+\.\d+.*", before["version"])
    client(server).update_customer_session_v2("health-1", order("health-p"))
    _, after = http(server, "GET", "/sandbox/health", key=False)
    assert after["sessions"] == before["sessions"] + 1
    assert after["profiles"] >= 1


def test_the_openapi_document_lists_exactly_the_served_routes(server: TalonServer) -> None:
    status, document = http(server, "GET", "/sandbox/openapi.json", key=False)
    assert status == 200
    app = _app_routes(server)
    listed = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    assert listed == app
    # The Talon.One operations under their operation ids, as the sandbox describes them.
    talon = _openapi.talon_operations()
    for key in listed & set(talon):
        method, path = key.split(" ")
        assert document["paths"][path][method.lower()] == talon[key]
    assert {
        "PUT /v2/customer_sessions/{customerSessionId}",
        "PUT /v1/customer_sessions/{customerSessionId}",
        "PUT /v1/customer_profiles/{integrationId}",
    } <= listed & set(talon)
    # The control surface: health and this document answer without a key, the rest need it.
    for key in listed - set(talon):
        method, path = key.split(" ")
        operation = document["paths"][path][method.lower()]
        assert operation["security"] == ([] if key in PUBLIC else [{"api_key_v1": []}]), key
        assert operation["summary"], key


def _app_routes(server: TalonServer) -> set[str]:
    """What a server routes: the Starlette app's routes (method and path)."""
    from sandbox.server import create_app

    app = create_app(server.sandbox, api_key="x")
    return {
        f"{method} {route.path}"
        for route in app.routes
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}
    }


def test_the_openapi_operations_are_those_the_sdk_calls(server: TalonServer) -> None:
    """Every served Talon.One operation the SDK still has is there under the SDK's name
    (the SDK is generated from the same operation ids)."""
    _, document = http(server, "GET", "/sandbox/openapi.json", key=False)
    ids = {
        op["operationId"]
        for ops in document["paths"].values()
        for op in ops.values()
        if not op["operationId"].startswith("sandbox_")
    }
    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", i).lower().replace("_v_2", "_v2") for i in ids}
    sdk = set(dir(talon_one.IntegrationApi))
    assert {
        "update_customer_session_v2",
        "get_customer_session",
        "reopen_customer_session",
        "return_cart_items",
        "update_customer_profile_v2",
    } <= snake & sdk
    # The two legacy operations are the ones the SDK no longer has.
    assert snake - sdk == {"update_customer_session", "update_customer_profile"}


def test_the_openapi_document_is_a_valid_openapi_3_1_document(server: TalonServer) -> None:
    """The paths, operations, parameters and references."""
    validator = pytest.importorskip("openapi_spec_validator")
    _, document = http(server, "GET", "/sandbox/openapi.json", key=False)
    schemas = document["components"]["schemas"]
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert referenced <= set(schemas)
    validator.validate(document)


def test_each_request_is_one_log_line_with_method_path_status_and_ms(
    server: TalonServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sandbox.server.access"):
        client(server).update_customer_session_v2("log-1", order("log-p"))
        http(server, "GET", "/sandbox/clock", key=False)  # 401
        http(server, "GET", "/v2/nowhere%0Aforged%20200")  # 404; the newline stays escaped
        http(server, "PUT", "/v2/customer_sessions/log-2?dry=maybe", {})  # 400
    lines = [r.getMessage() for r in caplog.records if r.name == "sandbox.server.access"]
    assert len(lines) == 4
    pattern = r"(PUT|GET) (\S+) (\d{3}) \d+\.\dms"
    found = [re.fullmatch(pattern, line) for line in lines]
    assert all(found), lines
    assert [(m[1], m[2], m[3]) for m in found if m] == [
        ("PUT", "/v2/customer_sessions/log-1", "200"),
        ("GET", "/sandbox/clock", "401"),
        ("GET", "/v2/nowhere%0Aforged%20200", "404"),
        ("PUT", "/v2/customer_sessions/log-2?dry=maybe", "400"),
    ]


# ---------------------------------------------------------------------------
# the state file: a restart loses nothing


def give_back_one_tree(server: TalonServer) -> dict[str, Any]:
    """One tree of s1 returned, with an Idempotency-Key (the SDK sends it as a header)."""
    answer = client(server).return_cart_items(
        "s1",
        ReturnIntegrationRequest(
            var_return={"returnedCartItems": [{"position": 0, "quantity": 1}]}
        ),
        _headers={"Idempotency-Key": "return-1"},
    )
    wire: dict[str, Any] = answer.to_dict()
    return wire


def work(server: TalonServer) -> dict[str, Any]:
    """Requests that move every kind of state: a closed order with the coupon (10 off,
    and a NEXT- coupon created for p1), a tree of it returned with an idempotency key, a
    gold profile, an open session, a referral made by the API, an event's new profile,
    and the clock an hour on. Returns what a client reads afterwards."""
    api = client(server)
    closed = api.update_customer_session_v2("s1", order("p1", "XMAS-2021", state="closed"))
    [created] = closed.created_coupons
    returned = give_back_one_tree(server)
    api.update_customer_profile_v2("p2", {"attributes": {"tier": "gold"}})
    api.update_customer_session_v2("s2", order("p2", "XMAS-2021"))
    referral = api.create_referral(NewReferral(campaign_id=2, advocate_profile_integration_id="p1"))
    api.track_event_v2(IntegrationEventV2Request(profile_id="p9", type="page_view"))
    assert http(server, "POST", "/sandbox/clock/advance", {"hours": 1})[0] == 200
    return {"created": created.value, "returned": returned, "referral": referral.code}


def reads(server: TalonServer, created: str) -> dict[str, Any]:
    api = client(server)
    _, snapshot = http(server, "GET", "/sandbox/snapshot")
    return {
        "snapshot": snapshot,
        "s1": api.get_customer_session("s1").to_dict(),
        "s2": api.get_customer_session("s2").to_dict(),
        "created": http(server, "GET", f"/sandbox/coupons/{created}"),
        "limits": http(server, "GET", "/sandbox/limits"),
        "p2": http(server, "GET", "/sandbox/profiles/p2"),
        "p9": http(server, "GET", "/sandbox/profiles/p9"),
        "inventory": api.get_customer_inventory("p1", coupons=True, referrals=True).to_dict(),
    }


def test_a_restart_with_a_state_file_loses_nothing(rules: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with running(rules, state=state) as first:
        made = work(first)
        before = reads(first, made["created"])
        status, saved = http(first, "POST", "/sandbox/save")
        assert status == 200
        assert saved["saved"] == str(state)
        assert saved["sessions"] == 2
    with running(rules, state=state) as second:
        after = reads(second, made["created"])
        assert after == before
        # What the hand-worked rules say, read back after the restart:
        snapshot = after["snapshot"]
        assert snapshot["now"] == "2026-12-01T11:00:00Z"
        assert {i: s["customerSession"]["state"] for i, s in snapshot["sessions"].items()} == {
            "s1": "partially_returned",
            "s2": "open",
        }
        coupon = after["created"][1]
        assert (coupon["recipient"], coupon["usageCounter"]) == ("p1", 0)
        assert after["p2"][1]["attributes"] == {"tier": "gold"}
        assert after["p9"][0] == 200  # made by the event
        inventory = after["inventory"]
        assert [c["value"] for c in inventory["coupons"]] == [made["created"]]
        assert [r["code"] for r in inventory["referrals"]] == [made["referral"]]
        # The same return with the same key answers the first answer and changes nothing.
        assert give_back_one_tree(second) == made["returned"]
        assert http(second, "GET", "/sandbox/snapshot")[1] == snapshot
        _, health = http(second, "GET", "/sandbox/health", key=False)
        assert (health["sessions"], health["state"]) == (2, str(state))
        # It goes on as if never stopped: p1 redeemed XMAS-2021 (limit 1 per profile),
        # and the coupon made for p1 works once.
        api = client(second)
        again = api.update_customer_session_v2("s3", order("p1", "XMAS-2021", "NEXT-0000"))
        rejected = {
            e.props["value"]: e.props["rejectionReason"]
            for e in again.effects
            if e.effect_type == "rejectCoupon"
        }
        assert rejected == {"XMAS-2021": "ProfileLimitReached", "NEXT-0000": "CouponNotFound"}
        used = api.update_customer_session_v2("s4", order("p1", made["created"], state="closed"))
        assert [e.effect_type for e in used.effects][:1] == ["acceptCoupon"]


def test_a_new_state_file_is_written_at_start_and_its_saves_are_atomic(
    rules: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    with running(rules, state=state) as server:
        assert json.loads(state.read_text())["sessions"] == []  # written at start
        client(server).update_customer_session_v2("a1", order("p1"))
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    assert [s["session_id"] for s in json.loads(state.read_text())["sessions"]] == ["a1"]


def test_save_without_a_state_file_is_400_saying_how_to_get_one(server: TalonServer) -> None:
    status, body = http(server, "POST", "/sandbox/save")
    assert status == 400
    assert "start it with --state FILE (or PROMO_SANDBOX_STATE=FILE)" in body["message"]


def test_a_save_that_cannot_be_written_is_500_naming_the_file(rules: Path, tmp_path: Path) -> None:
    place = tmp_path / "gone"
    place.mkdir()
    state = place / "state.json"
    with running(rules, state=state) as server:
        state.unlink()
        place.rmdir()
        status, body = http(server, "POST", "/sandbox/save")
        assert status == 500
        assert f"cannot write the state file {str(state)!r}" in body["message"]
        place.mkdir()  # so that the save at the end works


def serve_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def started(process: subprocess.Popen[str]) -> tuple[str, str, str]:
    """The URL and the API key a ``serve`` process printed, and all it printed."""
    assert process.stdout is not None
    lines = []
    while not lines or lines[-1] not in ("Ctrl-C stops.\n", ""):
        lines.append(process.stdout.readline())
    first, second = lines[:2]
    assert " at " in first, first + (process.stderr.read() if process.stderr else "")
    return first.split(" at ")[1].split()[0], second.split()[2], "".join(lines)


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out, err


def test_serve_takes_its_settings_from_the_environment_flags_win_and_logs_each_request(
    rules: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    env = {
        "PROMO_SANDBOX_RULES": str(rules),
        "PROMO_SANDBOX_PORT": "0",
        "PROMO_SANDBOX_HOST": "127.0.0.1",
        "PROMO_SANDBOX_API_KEY": "from-the-environment",
        "PROMO_SANDBOX_STATE": str(state),
    }
    process = serve_process("--api-key", "from-the-flag", env=env)
    try:
        url, key, announced = started(process)
        assert key == "from-the-flag"
        server = TalonServer(url, key, None)  # type: ignore[arg-type]
        client(server).update_customer_session_v2("e1", order("p1", "XMAS-2021", state="closed"))
    finally:
        out, err = stop(process)
    assert f"state: {state} (0 sessions, 0 profiles" in announced
    assert f"promo-sandbox: state saved to {state}" in out
    assert re.search(r"PUT /v2/customer_sessions/e1 200 \d+\.\dms", err), err
    assert "Traceback" not in err
    # The state the process saved at its end: the closed session, its coupon redeemed.
    saved = json.loads(state.read_text())
    assert saved["rules"] == str(rules)
    assert [s["state"] for s in saved["sessions"]] == ["closed"]

    # Started again from the environment alone, it has the session.
    process = serve_process(env={**env, "PROMO_SANDBOX_API_KEY": "again"})
    try:
        url, key, _ = started(process)
        server = TalonServer(url, key, None)  # type: ignore[arg-type]
        assert client(server).get_customer_session("e1").customer_session.state == "closed"
    finally:
        stop(process)


def test_a_corrupt_state_file_is_exit_2_with_one_clear_line(rules: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format": "promo-sandbox-state", "version": 1, "now": ', encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            str(rules),
            "--port",
            "0",
            "--state",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stdout == ""  # never announced, never listened
    assert result.stderr.startswith(
        f"error: state file {str(state)!r} is not a promo-sandbox state"
    )
    assert result.stderr.count("\n") == 1
    assert state.read_text().endswith('"now": ')  # left as it was


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1, 2]", 'not a promo-sandbox state (no "format": "promo-sandbox-state" in it)'),
        ('{"format": "promo-sandbox-state", "version": 9}', "a state of format version 9"),
    ],
)
def test_a_foreign_state_file_is_exit_2_naming_it(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    state = tmp_path / "state.json"
    state.write_text(text, encoding="utf-8")
    assert main(["serve", str(rules), "--port", "0", "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: state file {str(state)!r}: ")
    assert says in err


def test_a_state_file_of_other_rules_is_exit_2_naming_both(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    with running(rules, state=state):
        pass
    other = tmp_path / "other.py"
    other.write_text(OTHER_RULES, encoding="utf-8")
    assert main(["serve", str(other), "--port", "0", "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert (
        f"made for {rules} (application 1, codes insensitive-uppercase, campaigns 1 'Xmas'" in err
    )
    assert (
        "not for these rules (application 1, codes insensitive-uppercase, campaigns 1 'Spring')"
        in err
    )
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        (
            {},
            [],
            "serve needs a rules file: python -m sandbox serve RULES.py, or set PROMO_SANDBOX_RULES",
        ),
        (
            {"PROMO_SANDBOX_PORT": "ninety"},
            ["RULES"],
            "PROMO_SANDBOX_PORT must be a port from 0 to 65535, got 'ninety'",
        ),
        (
            {"PROMO_SANDBOX_PORT": "ninety"},
            ["RULES", "--port", "70000"],
            "--port must be a port from 0 to 65535, got '70000'",
        ),
        (
            {"PROMO_SANDBOX_API_KEY": "a key"},
            ["RULES"],
            "PROMO_SANDBOX_API_KEY must be a non-empty key without spaces",
        ),
        (
            {"PROMO_SANDBOX_MAX_BODY": "lots"},
            ["RULES"],
            "PROMO_SANDBOX_MAX_BODY must be a positive number of bytes",
        ),
        (
            {"PROMO_SANDBOX_STATE": "/no/such/dir/state.json"},
            ["RULES"],
            "cannot write the state file '/no/such/dir/state.json'",
        ),
    ],
)
def test_bad_settings_are_exit_2_naming_the_flag_or_variable(
    rules: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: list[str],
    says: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("PROMO_SANDBOX_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["serve", *(str(rules) if a == "RULES" else a for a in args)]
    assert main(argv) == 2
    assert says in capsys.readouterr().err
