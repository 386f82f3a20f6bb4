"""The legacy V1 paths: ``PUT /v1/customer_sessions/{id}`` and ``PUT
/v1/customer_profiles/{id}``.

The SDK (``talon_one`` 26.x) no longer has these calls, so requests go as raw HTTP, with
bodies made by the SDK's own ``NewCustomerSession`` and ``NewCustomerProfile`` models;
every answer is read by the SDK's V1 ``IntegrationState`` model and checked against the
V1 ``IntegrationState`` schema of Talon.One's spec (the one the server serves in its
OpenAPI document). Expected values are worked out by hand from the rules below.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import talon_one
from talon_one.models.integration_state import IntegrationState as SdkIntegrationState
from talon_one.models.new_customer_profile import NewCustomerProfile
from talon_one.models.new_customer_session import NewCustomerSession

from sandbox.server import TalonServer, running

RULES = """
from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021", usage_limit=100)
    xmas.rule(
        "10% off with the coupon",
        when=[c.coupon_valid],
        then=[e.set_discount("10% off", percent=10)],
    )
    gold = sb.campaign("Gold")
    gold.rule(
        "greet gold members",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.show_notification("Welcome", "Hello, gold member")],
    )
    return sb
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalonServer]:
    path = tmp_path_factory.mktemp("rules") / "rules.py"
    path.write_text(RULES, encoding="utf-8")
    with running(path) as started:
        yield started


def http(server: TalonServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **server.headers}
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def v1_schema() -> set[str]:
    """What Talon.One's V1 ``IntegrationState`` (the answer of both V1 calls) requires,
    per its 2021 OpenAPI spec (talon_go); the SDK's model checks the rest."""
    return {"session", "profile", "event"}


def v1(server: TalonServer, v1_schema: set[str], path: str, body: Any) -> SdkIntegrationState:
    """A V1 call whose answer the spec's schema and the SDK's model both accept."""
    status, answer = http(server, "PUT", path, body)
    assert status == 200, answer
    assert v1_schema <= set(answer), sorted(answer)
    state = SdkIntegrationState.from_dict(answer)
    assert state is not None
    return state


def effects(state: SdkIntegrationState) -> list[tuple[str, Any]]:
    return [(e["effectType"], e["props"].get("value")) for e in state.event.effects]


def cart(**fields: Any) -> dict[str, Any]:
    """A V1 session made by the SDK's NewCustomerSession: two trees of 40 (total 80),
    with the ``name`` the V1 spec's CartItem requires."""
    session = NewCustomerSession(
        profile_id=fields.pop("profile_id", "p1"),
        cart_items=[{"name": "Tree", "sku": "tree", "quantity": 2, "price": 40}],
        **fields,
    )
    body: dict[str, Any] = session.to_dict()
    return body


# ---------------------------------------------------------------------------
# sessions


def test_a_v1_session_lifecycle_answers_v1_integration_states(
    server: TalonServer, v1_schema: Any
) -> None:
    path = "/v1/customer_sessions/v1-a"
    created = v1(server, v1_schema, path, cart(coupon="XMAS-2021"))
    # 10% of 80 is 8; the V1 session keeps its one coupon and a discounts map.
    assert created.session.integration_id == "v1-a"
    assert created.session.coupon == "XMAS-2021"
    assert created.session.referral == ""
    assert created.session.state == "open"
    assert created.session.total == 80
    assert created.session.discounts == {"10% off": 8}
    assert (created.session.first_session, created.session.update_count) == (True, 1)
    assert created.event.type == "talon_session_created"
    assert created.event.session_id == "v1-a"
    assert effects(created) == [("acceptCoupon", "XMAS-2021"), ("setDiscount", 8)]
    assert created.profile.integration_id == "p1"

    # A V1 update replaces the session: without the coupon, no discount.
    plain = v1(server, v1_schema, path, cart())
    assert (plain.session.coupon, plain.session.discounts) == ("", {})
    assert plain.event.type == "talon_session_updated"
    assert plain.session.update_count == 2

    closed = v1(server, v1_schema, path, cart(coupon="XMAS-2021", state="closed"))
    assert closed.event.type == "talon_session_closed"
    assert closed.profile.closed_sessions == 1
    assert closed.profile.total_sales == 80

    revoked = v1(server, v1_schema, path, {"state": "cancelled"})
    assert revoked.event.type == "talon_session_revoked"
    assert revoked.session.state == "cancelled"
    assert [t for t, _ in effects(revoked)] == ["rollbackCoupon", "rollbackDiscount"]
    assert revoked.profile.closed_sessions == 0

    # The same session read through the SDK's V2 call: one coupon as couponCodes.
    configuration = talon_one.Configuration(host=server.url)
    configuration.api_key["api_key_v1"] = server.api_key
    configuration.api_key_prefix["api_key_v1"] = "ApiKey-v1"
    api = talon_one.IntegrationApi(talon_one.ApiClient(configuration))
    stored = api.get_customer_session("v1-a").customer_session
    assert (stored.state, stored.coupon_codes) == ("cancelled", ["XMAS-2021"])


def test_a_v1_dry_run_answers_and_stores_nothing(server: TalonServer, v1_schema: Any) -> None:
    before = http(server, "GET", "/sandbox/snapshot")[1]
    dry = v1(server, v1_schema, "/v1/customer_sessions/v1-dry?dry=true", cart(profile_id="p-dry"))
    assert dry.session.integration_id == "v1-dry"
    assert dry.profile.integration_id == "p-dry"
    assert dry.event.type == "talon_session_created"
    assert http(server, "GET", "/sandbox/snapshot")[1] == before


def test_an_anonymous_v1_session_answers_an_empty_profile(
    server: TalonServer, v1_schema: Any
) -> None:
    anonymous = v1(server, v1_schema, "/v1/customer_sessions/v1-anon", cart(profile_id=""))
    assert anonymous.profile.integration_id == ""
    assert anonymous.session.profile_id == ""


@pytest.mark.parametrize(
    ("path", "body", "source"),
    [
        (
            "/v1/customer_sessions/v1-bad",
            {"couponCodes": ["XMAS-2021"]},
            {"pointer": "/couponCodes"},
        ),
        (
            "/v1/customer_sessions/v1-bad",
            {"cartItems": [{"sku": "a", "quantity": 0}]},
            {"pointer": "/cartItems/0/quantity"},
        ),
        ("/v1/customer_sessions/v1-bad?dry=maybe", {}, {"parameter": "dry"}),
        (
            "/v1/customer_profiles/p-bad",
            {"attributes": {}, "responseContent": []},
            {"pointer": "/responseContent"},
        ),
    ],
)
def test_a_bad_v1_request_is_400_with_its_pointer_and_stores_nothing(
    server: TalonServer, path: str, body: Any, source: dict[str, str]
) -> None:
    status, answer = http(server, "PUT", path, body)
    assert status == 400, answer
    assert source in [e["source"] for e in answer["errors"]]
    assert "v1-bad" not in http(server, "GET", "/sandbox/snapshot")[1]["sessions"]


def test_closing_a_closed_v1_session_is_400_pointing_at_its_state(server: TalonServer) -> None:
    path = "/v1/customer_sessions/v1-twice"
    assert http(server, "PUT", path, cart(state="closed"))[0] == 200
    status, answer = http(server, "PUT", path, cart(state="closed"))
    assert status == 400
    assert answer["errors"][0]["source"] == {"pointer": "/state"}


# ---------------------------------------------------------------------------
# profiles


def test_a_v1_profile_update_merges_attributes_and_runs_the_rules(
    server: TalonServer, v1_schema: Any
) -> None:
    path = "/v1/customer_profiles/v1-gold"
    first = v1(server, v1_schema, path, NewCustomerProfile(attributes={"tier": "silver"}).to_dict())
    assert first.event.type == "talon_profile_created"
    assert first.profile.attributes == {"tier": "silver"}
    assert effects(first) == []
    gold = v1(
        server,
        v1_schema,
        path,
        NewCustomerProfile(attributes={"tier": "gold", "age": 30}).to_dict(),
    )
    assert gold.event.type == "talon_profile_updated"
    assert gold.profile.attributes == {"tier": "gold", "age": 30}
    assert effects(gold) == [("showNotification", None)]
    assert gold.event.effects[0]["props"]["title"] == "Welcome"
    assert gold.session.integration_id == ""  # a profile update is in no session
    kept = v1(server, v1_schema, path, {"attributes": {"age": 31}})
    assert kept.profile.attributes == {"tier": "gold", "age": 31}
    status, profile = http(server, "GET", "/sandbox/profiles/v1-gold")
    assert (status, profile["attributes"]) == (200, {"tier": "gold", "age": 31})


def test_a_v1_profile_dry_run_stores_nothing(server: TalonServer, v1_schema: Any) -> None:
    dry = v1(
        server,
        v1_schema,
        "/v1/customer_profiles/v1-nobody?dry=true",
        {"attributes": {"tier": "gold"}},
    )
    assert dry.profile.attributes == {"tier": "gold"}
    assert effects(dry) == [("showNotification", None)]
    assert http(server, "GET", "/sandbox/profiles/v1-nobody")[0] == 404
