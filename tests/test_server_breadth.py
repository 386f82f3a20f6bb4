"""Events, inventory, referrals made by the API and returns with runRuleEngine and
Idempotency-Key, through the official SDK's IntegrationApi against a server this module
starts on a free port (raw HTTP only for what the SDK has no call or header for)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import talon_one
from talon_one.models.cart_item import CartItem
from talon_one.models.integration_event_v2_request import IntegrationEventV2Request
from talon_one.models.integration_request import IntegrationRequest
from talon_one.models.new_customer_session_v2 import NewCustomerSessionV2
from talon_one.models.new_referral import NewReferral
from talon_one.models.new_return import NewReturn
from talon_one.models.return_integration_request import ReturnIntegrationRequest
from talon_one.models.returned_cart_item import ReturnedCartItem

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.server import TalonServer, running


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    welcome = sb.campaign("Welcome")
    welcome.rule(
        "a code for newsletter signups",
        when=[
            c.named(
                "a newsletter signup",
                lambda ctx: (
                    ctx.event.type == "signup" and ctx.event.attributes.get("newsletter") is True
                ),
            )
        ],
        then=[e.create_coupon(pattern="HELLO-####")],
    )
    refer = sb.campaign("Refer")  # campaign 2
    refer.rule("3 off for a friend", when=[c.referral_valid], then=[e.set_discount("Friend", 3)])
    spend = sb.campaign("Spend 100", reevaluate_on_return=True)
    spend.rule("10 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("10 off", 10)])
    return sb


@pytest.fixture(scope="module")
def server() -> Iterator[TalonServer]:
    with running(build, api_key="k") as started:
        yield started


@pytest.fixture
def api(server: TalonServer) -> Any:
    http(server, "POST", "/sandbox/reset")
    configuration = talon_one.Configuration(host=server.url)
    configuration.api_key["api_key_v1"] = server.api_key
    configuration.api_key_prefix["api_key_v1"] = "ApiKey-v1"
    return talon_one.IntegrationApi(talon_one.ApiClient(configuration))


def http(
    server: TalonServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **server.headers, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_event_through_the_sdk_creates_a_code_and_its_profile(
    api: Any, server: TalonServer
) -> None:
    answer = api.track_event_v2(
        IntegrationEventV2Request(
            profile_id="p1",
            type="signup",
            attributes={"newsletter": True},
            response_content=["customerProfile", "event"],
        ),
        silent="no",
    )
    (made,) = answer.created_coupons
    assert made.recipient_integration_id == "p1"
    assert answer.customer_profile.integration_id == "p1"
    assert answer.event.type == "signup"
    assert server.sandbox.get_coupon(made.value).recipient == "p1"
    dry = api.track_event_v2(
        IntegrationEventV2Request(profile_id="p2", type="signup", attributes={"newsletter": True}),
        dry=True,
        silent="no",
    )
    assert len(dry.created_coupons) == 1
    assert [c.code for c in server.sandbox.get_inventory("p1").coupons] == [made.value]
    with pytest.raises(Exception, match="no profile 'p2'"):
        server.sandbox.get_profile("p2")  # the dry run stored nothing


def test_an_event_is_silent_by_default_as_in_talon_one(api: Any, server: TalonServer) -> None:
    assert api.track_event_v2(IntegrationEventV2Request(profile_id="p1", type="signup")) is None
    assert server.sandbox.get_profile("p1").integration_id == "p1"  # tracked all the same
    status, body = http(server, "POST", "/v2/events?silent=maybe", {"type": "x"})
    assert status == 400
    assert body["errors"][0]["source"] == {"parameter": "silent"}


def test_a_bad_event_is_400_with_pointers(server: TalonServer, api: Any) -> None:
    status, body = http(server, "POST", "/v2/events", {"profileId": "p1", "attributes": []})
    assert status == 400
    pointers = sorted(err["source"]["pointer"] for err in body["errors"])
    assert pointers == ["/attributes", "/type"]


def test_the_inventory_through_the_sdk(api: Any, server: TalonServer) -> None:
    made = api.track_event_v2(
        IntegrationEventV2Request(profile_id="p1", type="signup", attributes={"newsletter": True}),
        silent="no",
    ).created_coupons[0]
    referral = api.create_referral(NewReferral(campaign_id=2, advocate_profile_integration_id="p1"))
    api.update_customer_session_v2(
        "s1",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(
                profile_id="f1", referral_code=referral.code, state="closed"
            )
        ),
    )
    inventory = api.get_customer_inventory("p1", profile=True, coupons=True, referrals=True)
    assert inventory.profile.integration_id == "p1"
    assert [(c.value, c.state, c.usage_counter) for c in inventory.coupons] == [
        (made.value, "active", 0)
    ]
    assert [(r.code, r.usage_counter, r.referred_customers) for r in inventory.referrals] == [
        (referral.code, 1, ["f1"])
    ]
    only = api.get_customer_inventory("p1", coupons=True)
    assert (only.profile, only.referrals, len(only.coupons)) == (None, None, 1)
    status, body = http(server, "GET", "/v1/customer_profiles/nobody/inventory")
    assert status == 404
    assert body["errors"][0]["source"] == {"parameter": "integrationId"}


def test_a_referral_made_through_the_sdk_is_usable_at_once(api: Any, server: TalonServer) -> None:
    referral = api.create_referral(
        NewReferral(
            campaign_id=2,
            advocate_profile_integration_id="anna",
            friend_profile_integration_id="bob",
            usage_limit=1,
        )
    )
    assert (referral.advocate_profile_integration_id, referral.usage_limit) == ("anna", 1)
    used = api.update_customer_session_v2(
        "s1",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(profile_id="bob", referral_code=referral.code)
        ),
    )
    assert [x.effect_type for x in used.effects] == ["acceptReferral", "setDiscount"]
    status, body = http(
        server,
        "POST",
        "/v1/referrals",
        {"campaignId": 99, "advocateProfileIntegrationId": "anna", "startDate": "soon"},
    )
    assert status == 400
    assert sorted(err["source"]["pointer"] for err in body["errors"]) == [
        "/campaignId",
        "/startDate",
    ]


def close_two_items(api: Any) -> None:
    api.update_customer_session_v2(
        "order",
        IntegrationRequest(
            customer_session=NewCustomerSessionV2(
                profile_id="p1",
                state="closed",
                cart_items=[
                    CartItem(sku="a", quantity=1, price=60),
                    CartItem(sku="b", quantity=1, price=60),
                ],
            )
        ),
    )


def returned(answer: Any) -> list[Decimal]:
    return [Decimal(str(x.props["value"])) for x in answer.effects]


def test_returns_with_run_rule_engine_and_an_idempotency_key(api: Any, server: TalonServer) -> None:
    close_two_items(api)
    body = ReturnIntegrationRequest(
        var_return=NewReturn(returned_cart_items=[ReturnedCartItem(position=1)])
    )
    plain = api.return_cart_items("order", body, dry=True)
    assert returned(plain) == [Decimal(5)]  # half of the 10, by share
    path = "/v2/customer_sessions/order/returns?runRuleEngine=true"
    payload = {"return": {"returnedCartItems": [{"position": 1}]}}
    headers = {"Idempotency-Key": "7f1c"}
    status, first = http(server, "POST", path, payload, headers)
    assert status == 200
    assert [x["props"]["value"] for x in first["effects"]] == [10]  # 60 kept: under 100
    before = http(server, "GET", "/sandbox/snapshot")
    status, again = http(server, "POST", path, payload, headers)
    assert (status, again) == (200, first)
    assert http(server, "GET", "/sandbox/snapshot") == before
    status, other = http(
        server, "POST", path, {"return": {"returnedCartItems": [{"position": 0}]}}, headers
    )
    assert status == 400
    assert other["errors"][0]["source"] == {"parameter": "Idempotency-Key"}
