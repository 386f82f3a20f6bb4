"""The local Integration API server, driven by the official ``talon_one`` SDK client.

Each test starts its own server on a free port (the ``talon_server`` fixture) and
stops it at the end. Expected values are worked out by hand from the rules below
and Talon.One's documented meaning (reference sections 2 and 9), not read back
from the engine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import talon_one
from talon_one.models.cart_item import CartItem
from talon_one.models.customer_profile_integration_request_v2 import (
    CustomerProfileIntegrationRequestV2,
)
from talon_one.models.customer_profile_integration_response_v2 import (
    CustomerProfileIntegrationResponseV2,
)
from talon_one.models.error_response import ErrorResponse
from talon_one.models.error_response_with_status import ErrorResponseWithStatus
from talon_one.models.integration_customer_session_response import (
    IntegrationCustomerSessionResponse,
)
from talon_one.models.integration_request import IntegrationRequest
from talon_one.models.integration_state_v2 import IntegrationStateV2
from talon_one.models.new_customer_session_v2 import NewCustomerSessionV2
from talon_one.models.reopen_session_response import ReopenSessionResponse
from talon_one.models.return_integration_request import ReturnIntegrationRequest

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.server import TalonServer, running

ROOT = Path(__file__).parent.parent

RULES = """
from decimal import Decimal

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
    xmas.rule(
        "10% off carts of 50 or more",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10% off", percent=10)],
    )
    ship = sb.campaign("Free shipping")
    ship.coupon("FREESHIP")
    ship.rule("5 off with FREESHIP", when=[c.coupon_valid], then=[e.set_discount("Shipping", Decimal(5))])
    solo = sb.campaign("Solo")
    solo.coupon("ONCE", usage_limit=1)
    solo.rule("1 off with ONCE", when=[c.coupon_valid], then=[e.set_discount("Once", Decimal(1))])
    gold = sb.campaign("Gold")
    gold.rule(
        "greet gold members",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.show_notification("Welcome", "Hello, gold member")],
    )
    return sb
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.py"
    path.write_text(RULES, encoding="utf-8")
    return path


def client(server: TalonServer, key: str | None = None, prefix: str = "ApiKey-v1") -> Any:
    """The official SDK's IntegrationApi, configured as an integration would be."""
    configuration = talon_one.Configuration(host=server.url)
    if key != "":
        configuration.api_key["api_key_v1"] = server.api_key if key is None else key
        configuration.api_key_prefix["api_key_v1"] = prefix
    return talon_one.IntegrationApi(talon_one.ApiClient(configuration))


def http(
    server: TalonServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A plain HTTP call (for the /sandbox control surface and payloads the SDK refuses)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method=method,
        headers={
            "Content-Type": "application/json",
            **(server.headers if headers is None else headers),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def session(**fields: Any) -> IntegrationRequest:
    content = fields.pop("response_content", None)
    return IntegrationRequest(
        customer_session=NewCustomerSessionV2(**fields), response_content=content
    )


def effects(answer: Any) -> list[tuple[str, Any]]:
    """(effectType, value or rejection reason) per effect, in order."""
    out = []
    for effect in answer.effects:
        props = effect.props if isinstance(effect.props, dict) else effect.props.to_dict()
        out.append((effect.effect_type, props.get("rejectionReason") or props.get("value")))
    return out


def usage(server: TalonServer, code: str) -> int:
    status, coupon = http(server, "GET", f"/sandbox/coupons/{code}")
    assert status == 200, coupon
    return int(coupon["usageCounter"])


def error_body(exc: talon_one.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


# ---------------------------------------------------------------------------
# the lifecycle, through the SDK


def test_a_session_lifecycle_through_the_sdk_moves_and_restores_the_counters(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    api = client(server)
    cart = [CartItem(sku="shoe", quantity=2, price=30), CartItem(sku="sock", quantity=1, price=10)]

    created = api.update_customer_session_v2(
        "s1", session(profile_id="p1", cart_items=cart[:1], response_content=["customerSession"])
    )
    assert isinstance(created, IntegrationStateV2)
    assert created.customer_session.update_count == 1
    assert created.customer_session.total == 60
    assert effects(created) == []

    # Several coupons, one unknown; the cart grows to 70. 10% of 70 is 7; FREESHIP 5.
    updated = api.update_customer_session_v2(
        "s1",
        session(
            coupon_codes=["XMAS-2021", "FREESHIP", "NOPE-1"],
            cart_items=cart,
            response_content=["customerSession", "ruleFailureReasons"],
        ),
    )
    assert sorted(effects(updated), key=str) == sorted(
        [
            ("acceptCoupon", "XMAS-2021"),
            ("setDiscount", 7),
            ("acceptCoupon", "FREESHIP"),
            ("setDiscount", 5),
            ("rejectCoupon", "CouponNotFound"),
        ],
        key=str,
    )
    assert updated.customer_session.update_count == 2
    assert updated.customer_session.profile_id == "p1"  # kept from the first update (merge)
    assert updated.rule_failure_reasons is not None
    assert usage(server, "XMAS-2021") == 0  # an open session redeems nothing

    closed = api.update_customer_session_v2(
        "s1", session(state="closed", response_content=["customerSession", "customerProfile"])
    )
    assert closed.customer_session.state == "closed"
    assert closed.customer_session.coupon_codes == ["XMAS-2021", "FREESHIP", "NOPE-1"]
    assert (usage(server, "XMAS-2021"), usage(server, "FREESHIP")) == (1, 1)
    assert server.sandbox.get_coupon("XMAS-2021").usage_counter == 1
    status, limits = http(server, "GET", "/sandbox/limits")
    assert status == 200
    assert [
        (x["campaignName"], x["action"], x["scope"], x["counter"], x["remaining"]) for x in limits
    ] == [("Xmas", "redeemCoupon", {"Profile": "p1"}, 1, 0)]
    status, profile = http(server, "GET", "/sandbox/profiles/p1")
    assert (profile["closedSessions"], profile["totalSales"]) == (1, 70)  # before discounts

    fetched = api.get_customer_session("s1")
    assert isinstance(fetched, IntegrationCustomerSessionResponse)
    assert fetched.customer_session.state == "closed"
    assert ("acceptCoupon", "XMAS-2021") in effects(fetched)

    reopened = api.reopen_customer_session("s1")
    assert isinstance(reopened, ReopenSessionResponse)
    assert sorted(effects(reopened), key=str) == sorted(
        [
            ("rollbackCoupon", "XMAS-2021"),
            ("rollbackCoupon", "FREESHIP"),
            ("rollbackDiscount", 7),
            ("rollbackDiscount", 5),
        ],
        key=str,
    )
    assert (usage(server, "XMAS-2021"), usage(server, "FREESHIP")) == (0, 0)
    assert api.get_customer_session("s1").customer_session.state == "open"

    api.update_customer_session_v2("s1", session(state="closed"))
    assert usage(server, "XMAS-2021") == 1

    # One shoe (30 of 70) back: 30/70 of each discount, 3 and 2.14 (rounded to cents).
    returned = api.return_cart_items(
        "s1",
        ReturnIntegrationRequest.from_dict(
            {
                "return": {"returnedCartItems": [{"position": 0, "quantity": 1}]},
                "responseContent": ["customerSession"],
            }
        ),
    )
    assert isinstance(returned, IntegrationStateV2)
    assert returned.customer_session.state == "partially_returned"
    assert sorted(effects(returned), key=str) == sorted(
        [("rollbackDiscount", 3), ("rollbackDiscount", 2.14)], key=str
    )
    assert returned.customer_session.cart_items[0].returned_quantity == 1
    assert usage(server, "XMAS-2021") == 1  # a return keeps the coupon redeemed
    again = api.return_cart_items(
        "s1",
        ReturnIntegrationRequest.from_dict(
            {
                "return": {"returnedCartItems": [{"position": 1}]},
                "responseContent": ["previousReturns"],
            }
        ),
    )
    assert [[i.position for i in r.returned_cart_items] for r in again.previous_returns] == [[0]]
    # The sock: its share of what is left (10 of the 40 still kept) of each discount still
    # committed, 4 and 2.86: 1 and 0.715, rounded half-even to 0.72.
    assert sorted(effects(again), key=str) == sorted(
        [("rollbackDiscount", 1), ("rollbackDiscount", 0.72)], key=str
    )

    cancelled = api.update_customer_session_v2(
        "s1", session(state="cancelled", response_content=["customerSession"])
    )
    assert cancelled.customer_session.state == "cancelled"
    assert ("rollbackCoupon", "XMAS-2021") in effects(cancelled)
    assert (usage(server, "XMAS-2021"), usage(server, "FREESHIP")) == (0, 0)
    status, profile = http(server, "GET", "/sandbox/profiles/p1")
    assert (profile["closedSessions"], profile["totalSales"]) == (0, 0)
    status, limits = http(server, "GET", "/sandbox/limits")
    assert [x["counter"] for x in limits] in ([], [0])

    answer = api.update_customer_profile_v2(
        "p1",
        CustomerProfileIntegrationRequestV2(
            attributes={"tier": "gold"}, response_content=["customerProfile"]
        ),
        run_rule_engine=True,
    )
    assert isinstance(answer, CustomerProfileIntegrationResponseV2)
    assert answer.customer_profile.attributes == {"tier": "gold"}
    assert [effect.effect_type for effect in answer.effects] == ["showNotification"]
    assert server.sandbox.get_profile("p1").attributes["tier"] == "gold"


def test_response_content_decides_the_optional_parts_of_the_answer(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    bare = {"customerSession": {"profileId": "p1", "couponCodes": ["FREESHIP"]}}
    status, answer = http(server, "PUT", "/v2/customer_sessions/a", bare)
    assert status == 200
    assert set(answer) == {"effects", "createdCoupons", "createdReferrals"}
    asked = {**bare, "responseContent": ["customerSession", "coupons"]}
    status, answer = http(server, "PUT", "/v2/customer_sessions/a", asked)
    assert set(answer) == {
        "effects",
        "createdCoupons",
        "createdReferrals",
        "customerSession",
        "coupons",
    }
    assert answer["customerSession"]["integrationId"] == "a"
    talon_one.ApiClient().deserialize(json.dumps(answer), "IntegrationStateV2", "application/json")


def test_a_dry_run_with_now_evaluates_in_the_future_and_stores_nothing(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    api = client(server)
    before = server.sandbox.snapshot()
    request = session(
        profile_id="p1",
        coupon_codes=["XMAS-2021"],
        cart_items=[CartItem(sku="a", quantity=1, price=80)],
    )
    later = datetime(2026, 12, 26, tzinfo=UTC)  # after the coupon expires on the 24th
    answer = api.update_customer_session_v2("d1", request, dry=True, now=later)
    assert effects(answer) == [("rejectCoupon", "CouponExpired")]
    today = api.update_customer_session_v2("d1", request, dry=True)
    assert ("acceptCoupon", "XMAS-2021") in effects(today)
    assert server.sandbox.snapshot() == before
    with pytest.raises(talon_one.ApiException) as raised:
        api.get_customer_session("d1")
    assert raised.value.status == 404


# ---------------------------------------------------------------------------
# errors as Talon.One answers them


def test_requests_without_the_right_api_key_are_401_and_change_nothing(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules, api_key="the-key")
    assert server.api_key == "the-key"
    before = server.sandbox.snapshot()
    status, snapshot = http(server, "GET", "/sandbox/snapshot")
    for api in (
        client(server, key=""),
        client(server, key="wrong"),
        client(server, prefix="Bearer"),
    ):
        with pytest.raises(talon_one.ApiException) as raised:
            api.update_customer_session_v2("s1", session(profile_id="p1", state="closed"))
        assert raised.value.status == 401
        body = ErrorResponseWithStatus.from_json(raised.value.body)
        assert body.status_code == 401
        assert "ApiKey-v1" in body.message
    status, _answer = http(server, "GET", "/sandbox/snapshot", headers={})
    assert status == 401
    assert server.sandbox.snapshot() == before
    assert http(server, "GET", "/sandbox/snapshot") == (200, snapshot)


def test_a_bad_request_is_400_listing_every_problem_with_its_pointer(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    api = client(server)
    api.update_customer_session_v2("s1", session(profile_id="p1", coupon_codes=["FREESHIP"]))
    before = server.sandbox.snapshot()

    # What the SDK sends happily but Talon.One refuses: the same code twice.
    with pytest.raises(talon_one.ApiException) as raised:
        api.update_customer_session_v2("s1", session(coupon_codes=["FREESHIP", "freeship"]))
    assert raised.value.status == 400
    body = ErrorResponse.from_json(raised.value.body)
    assert [error.source.pointer for error in body.errors] == ["/customerSession/couponCodes/1"]

    # Three problems in the body and one in the query, all in one answer.
    bad = {
        "customerSession": {
            "cartItems": [{"sku": "a", "quantity": 0, "price": 5}, {"quantity": 1, "price": 5}],
            "identifiers": ["1", "2", "3", "4", "5", "6"],
        }
    }
    status, body = http(server, "PUT", "/v2/customer_sessions/s1?dry=maybe", bad)
    assert status == 400
    ErrorResponse.from_dict(body)
    sources = sorted(json.dumps(error["source"]) for error in body["errors"])
    assert sources == sorted(
        json.dumps(s)
        for s in [
            {"parameter": "dry"},
            {"pointer": "/customerSession/cartItems/0/quantity"},
            {"pointer": "/customerSession/cartItems/1/sku"},
            {"pointer": "/customerSession/identifiers"},
        ]
    )

    # No customerSession at all; not JSON at all.
    status, body = http(server, "PUT", "/v2/customer_sessions/s1", {"profileId": "p1"})
    assert status == 400
    assert [e["source"] for e in body["errors"]] == [{"pointer": "/customerSession"}]
    request = urllib.request.Request(
        server.url + "/v2/customer_sessions/s1",
        data=b"{not json",
        method="PUT",
        headers=server.headers,
    )
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(request, timeout=10)
    assert http_error.value.code == 400

    # An illegal transition: an open session cannot be returned or reopened.
    with pytest.raises(talon_one.ApiException) as raised:
        api.reopen_customer_session("s1")
    assert raised.value.status == 400
    assert "only a closed session can be reopened" in error_body(raised.value)["message"]
    status, body = http(
        server,
        "POST",
        "/v2/customer_sessions/s1/returns",
        {"return": {"returnedCartItems": [{"position": 0}]}},
    )
    assert status == 400
    status, body = http(server, "POST", "/v2/customer_sessions/s1/returns", {"return": {}})
    assert (status, [e["source"] for e in body["errors"]]) == (400, [{"pointer": "/return"}])
    assert server.sandbox.snapshot() == before


def test_a_refused_close_stores_nothing_and_points_at_the_state(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    api = client(server)
    api.update_customer_session_v2("s1", session(profile_id="p1", state="closed"))
    before = server.sandbox.snapshot()
    with pytest.raises(talon_one.ApiException) as raised:
        api.update_customer_session_v2("s1", session(state="open"))
    body = ErrorResponse.from_json(raised.value.body)
    assert (raised.value.status, body.errors[0].source.pointer) == (400, "/customerSession/state")
    assert server.sandbox.snapshot() == before


def test_unknown_sessions_are_404(talon_server: Callable[..., TalonServer], rules: Path) -> None:
    server = talon_server(rules)
    api = client(server)
    before = server.sandbox.snapshot()
    calls = [
        lambda: api.get_customer_session("ghost"),
        lambda: api.reopen_customer_session("ghost"),
        lambda: api.return_cart_items(
            "ghost",
            ReturnIntegrationRequest.from_dict(
                {"return": {"returnedCartItems": [{"position": 0}]}}
            ),
        ),
    ]
    for call in calls:
        with pytest.raises(talon_one.ApiException) as raised:
            call()
        assert raised.value.status == 404
        body = ErrorResponseWithStatus.from_json(raised.value.body)
        assert body.status_code == 404
        assert "ghost" in body.message
    assert http(server, "GET", "/sandbox/coupons/NOPE")[0] == 404
    status, body = http(server, "GET", "/v1/no_such_thing")
    assert (status, body["StatusCode"]) == (404, 404)
    status, body = http(server, "DELETE", "/v2/customer_sessions/s1")
    assert (status, body["StatusCode"]) == (405, 405)
    assert server.sandbox.snapshot() == before


def blocking_rules(entered: threading.Event, release: threading.Event) -> Callable[[], Sandbox]:
    """A sandbox whose one rule waits until the test lets it go: a request in flight."""

    def wait(ctx: Any) -> bool:
        entered.set()
        assert release.wait(timeout=30)
        return True

    def build() -> Sandbox:
        sb = Sandbox(now="2026-12-01T10:00:00Z")
        slow = sb.campaign("Slow")
        slow.coupon("SLOW")
        slow.rule(
            "waits for the test",
            when=[c.coupon_valid, wait],
            then=[e.set_discount("Slow", Decimal(1))],
        )
        return sb

    return build


def test_a_second_update_of_a_session_in_flight_is_409_and_changes_nothing(
    talon_server: Callable[..., TalonServer],
) -> None:
    entered, release = threading.Event(), threading.Event()
    server = talon_server(blocking_rules(entered, release))
    first_answer: list[Any] = []
    before = server.sandbox.snapshot()
    first = threading.Thread(
        target=lambda: first_answer.append(
            client(server).update_customer_session_v2(
                "s1", session(profile_id="p1", coupon_codes=["SLOW"]), dry=True
            )
        )
    )
    first.start()
    try:
        assert entered.wait(timeout=30)  # the first request is inside the rule now
        with pytest.raises(talon_one.ApiException) as raised:
            client(server).update_customer_session_v2(
                "s1", session(profile_id="p2", state="closed")
            )
        assert raised.value.status == 409
        body = json.loads(raised.value.body)
        assert body["StatusCode"] == 409
        assert body["message"] == "Too many requests are updating this session at the same time"
        with pytest.raises(talon_one.ApiException) as raised:
            client(server).reopen_customer_session("s1")
        assert raised.value.status == 409
    finally:
        release.set()
        first.join(timeout=30)
    assert ("acceptCoupon", "SLOW") in effects(first_answer[0])  # the first one was answered
    assert server.sandbox.snapshot() == before  # a dry run and two refusals: nothing stored


def test_a_rule_that_raises_is_500_naming_campaign_and_rule(
    talon_server: Callable[..., TalonServer],
) -> None:
    def build() -> Sandbox:
        sb = Sandbox(now="2026-12-01T10:00:00Z")
        broken = sb.campaign("Broken campaign")
        broken.rule(
            "divides by zero", when=[lambda ctx: 1 / 0 > 0], then=[e.set_discount("x", Decimal(1))]
        )
        return sb

    server = talon_server(build)
    before = server.sandbox.snapshot()
    with pytest.raises(talon_one.ApiException) as raised:
        client(server).update_customer_session_v2("s1", session(profile_id="p1", state="closed"))
    assert raised.value.status == 500
    body = ErrorResponseWithStatus.from_json(raised.value.body)
    assert "'Broken campaign'" in body.message
    assert "'divides by zero'" in body.message
    assert "ZeroDivisionError" in body.errors[0].details
    assert server.sandbox.snapshot() == before


# ---------------------------------------------------------------------------
# concurrency


CLIENTS = 8


def test_eight_clients_closing_at_once_redeem_a_single_use_coupon_exactly_once(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    cart = [CartItem(sku="a", quantity=1, price=20)]
    for n in range(CLIENTS):
        opened = client(server).update_customer_session_v2(
            f"race-{n}", session(profile_id=f"p{n}", coupon_codes=["ONCE"], cart_items=cart)
        )
        assert ("acceptCoupon", "ONCE") in effects(opened)  # open sessions all see the last unit
    barrier = threading.Barrier(CLIENTS)
    answers: dict[int, Any] = {}
    failures: list[BaseException] = []

    def close(n: int) -> None:
        try:
            api = client(server)  # its own connection pool, as separate processes would have
            barrier.wait(timeout=30)
            answers[n] = api.update_customer_session_v2(f"race-{n}", session(state="closed"))
        except BaseException as exc:  # surfaced in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=close, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    outcomes = sorted(
        next(x for x in effects(answer) if x[0] in ("acceptCoupon", "rejectCoupon"))
        for answer in answers.values()
    )
    assert outcomes == [("acceptCoupon", "ONCE")] + [("rejectCoupon", "CouponLimitReached")] * 7
    assert usage(server, "ONCE") == 1


# ---------------------------------------------------------------------------
# the control surface


def test_the_control_surface_moves_the_clock_and_resets(
    talon_server: Callable[..., TalonServer], rules: Path
) -> None:
    server = talon_server(rules)
    assert http(server, "GET", "/sandbox/clock") == (200, {"now": "2026-12-01T10:00:00Z"})
    assert http(server, "POST", "/sandbox/clock/advance", {"days": 1, "hours": 1.5}) == (
        200,
        {"now": "2026-12-02T11:30:00Z"},
    )
    assert http(server, "PUT", "/sandbox/clock", {"now": "2026-12-25T00:00:00Z"})[0] == 200
    answer = client(server).update_customer_session_v2(
        "s1", session(profile_id="p1", coupon_codes=["XMAS-2021"])
    )
    assert effects(answer) == [("rejectCoupon", "CouponExpired")]  # the moved clock counts
    status, body = http(server, "POST", "/sandbox/clock/advance", {"days": -1})
    assert status == 400
    assert "forward" in body["message"]
    status, body = http(server, "PUT", "/sandbox/clock", {"now": "yesterday"})
    assert status == 400

    old = server.sandbox
    status, fresh = http(server, "POST", "/sandbox/reset")
    assert status == 200
    assert fresh["sessions"] == {}
    assert fresh["now"] == "2026-12-01T10:00:00Z"
    assert server.sandbox is not old
    assert "s1" in old.sessions
    assert http(server, "GET", "/sandbox/snapshot") == (200, fresh)


def test_a_server_of_a_sandbox_object_cannot_reset(
    talon_server: Callable[..., TalonServer],
) -> None:
    server = talon_server(Sandbox(now="2026-12-01T10:00:00Z"))
    status, body = http(server, "POST", "/sandbox/reset")
    assert status == 400
    assert "nothing to rebuild" in body["message"]


# ---------------------------------------------------------------------------
# starting and stopping


def test_the_server_stops_when_its_block_ends_and_frees_the_port(rules: Path) -> None:
    with running(rules) as server:
        host, port = server.url.removeprefix("http://").split(":")
        assert http(server, "GET", "/sandbox/clock")[0] == 200
    assert not [t for t in threading.enumerate() if t.name == "promo-sandbox-server"]
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((host, int(port)), timeout=5),
    ):
        pass


def test_python_m_sandbox_serve_prints_its_key_and_answers_the_sdk(rules: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", str(rules), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        url = first.split(" at ")[1].split()[0]
        key = second.split()[2]
        server = TalonServer(url, key, None)  # type: ignore[arg-type]
        answer = client(server).update_customer_session_v2(
            "s1", session(profile_id="p1", coupon_codes=["FREESHIP"])
        )
        assert ("acceptCoupon", "FREESHIP") in effects(answer)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_serve_without_the_server_extra_says_how_to_install_it(rules: Path) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from sandbox.cli import main\n"
        f"sys.exit(main(['serve', {str(rules)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "pip install 'promo-sandbox[server]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_port_in_use(rules: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sandbox", "serve", str(rules), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_import_sandbox_and_its_cli_load_no_http_stack() -> None:
    code = (
        "import sys, sandbox, sandbox.cli, sandbox._pytest_plugin, promo_sandbox_pytest\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'anyio'})\n"
        "assert not loaded, loaded"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr


def test_the_readme_fixture_example_passes_as_a_users_own_test(pytester: pytest.Pytester) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "talon_server" in b)
    pytester.makepyfile(my_rules=(ROOT / "examples" / "xmas.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_integration=block)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(passed=1)
