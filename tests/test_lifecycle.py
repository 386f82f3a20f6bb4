"""Session states: every legal and illegal transition, commit on close, rollbacks.

Expected values are computed by hand from reference/talon_semantics.md
section 2 and DESIGN.md section 4.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.errors import TransitionError, ValidationError

NOW = "2026-12-01T10:00:00Z"
CART = [
    {"sku": "shirt", "quantity": 2, "price": 50},
    {"sku": "shoes", "quantity": 1, "price": 100},
]


def shop(**options: Any) -> Sandbox:
    """10% off the session with a coupon, a per-profile limit, a money budget."""
    sb = Sandbox(now=NOW, **options)
    campaign = sb.campaign(
        "Shop",
        limits=[
            Limit("redeemCoupon", 5, entities=["Profile"]),
            Limit("setDiscount", 1000),
        ],
    )
    campaign.rule("ten percent", when=[c.coupon_valid], then=[e.set_discount("10%", percent=10)])
    campaign.coupon("SHOP-10", usage_limit=10)
    friends = sb.campaign("Friends", limits=[Limit("redeemReferral", 3)])
    friends.rule("referred", when=[c.referral_valid], then=[e.set_discount("ref", Decimal("5"))])
    friends.referral("REF-1", advocate="adv")
    return sb


def order(state: str = "open", **extra: Any) -> dict[str, Any]:
    return {"profileId": "p1", "coupon": "SHOP-10", "cartItems": CART, "state": state, **extra}


def referred(state: str = "open") -> dict[str, Any]:
    return {**order(state), "referral": "REF-1"}


def effect_types(state: Any) -> list[str]:
    return [str(effect.effect_type) for effect in state.effects]


def assert_illegal(
    sb: Sandbox, action: Any, current: str | None, asked: str, legal: list[str]
) -> None:
    before = sb.snapshot()
    with pytest.raises(TransitionError) as info:
        action()
    message = str(info.value)
    assert (f"state {current!r}" if current else "a new session") in message
    assert repr(asked) in message
    for move in legal:
        assert move in message
    assert sb.snapshot() == before


def zeroed(sb: Sandbox, profile: str = "p1") -> None:
    assert sb.ledger.counters == {}
    assert sb.limit_counters() == []
    assert sb.get_coupon("SHOP-10").usage_counter == 0
    assert sb.get_referral("REF-1").usage_counter == 0
    stats = sb.get_profile(profile)
    assert (stats.closed_sessions, stats.total_sales) == (0, 0)


# ---------------------------------------------------------------------------
# Legal transitions


def test_new_open_then_closed_commits() -> None:
    sb = shop()
    opened = sb.update("s1", order())
    assert opened.discounts == {"10%": Decimal("20")}
    assert sb.get_coupon("SHOP-10").usage_counter == 0
    closed = sb.update("s1", order("closed"))
    assert closed.accepted_coupons == ["SHOP-10"]
    assert sb.get_session("s1").state.value == "closed"
    assert sb.get_coupon("SHOP-10").usage_counter == 1
    stats = sb.get_profile("p1")
    assert (stats.closed_sessions, stats.total_sales) == (1, Decimal("200"))


def test_new_session_as_closed_is_evaluated_and_committed() -> None:
    sb = shop()
    state = sb.update("s1", order("closed"))
    assert state.discounts == {"10%": Decimal("20")}
    assert sb.get_coupon("SHOP-10").usage_counter == 1
    budget = [lc for lc in sb.limit_counters() if lc.action == "setDiscount"]
    assert [(lc.counter, lc.remaining) for lc in budget] == [(20, 980)]


def test_open_to_open_reevaluates() -> None:
    sb = shop()
    sb.update("s1", order())
    again = sb.update("s1", {"profileId": "p1", "total": 30})
    assert again.discounts == {}
    assert sb.get_session("s1").state.value == "open"


def test_open_to_cancelled_emits_nothing() -> None:
    sb = shop()
    sb.update("s1", order())
    before = sb.ledger.snapshot()
    state = sb.update("s1", order("cancelled"))
    assert state.effects == ()
    assert sb.get_session("s1").state.value == "cancelled"
    assert sb.ledger.snapshot() == before


def test_closed_to_cancelled_rolls_everything_back() -> None:
    sb = shop()
    closed = sb.update("s1", referred("closed"))
    assert sorted(closed.discounts.items()) == [("10%", Decimal("20")), ("ref", Decimal("5"))]
    assert sb.get_referral("REF-1").usage_counter == 1
    cancelled = sb.update("s1", {"state": "cancelled"})
    assert sorted(effect_types(cancelled)) == [
        "rollbackCoupon",
        "rollbackDiscount",
        "rollbackDiscount",
        "rollbackReferral",
    ]
    rolled = {x.props["name"]: x.props["value"] for x in cancelled.effects_of("rollbackDiscount")}
    assert rolled == {"10%": Decimal("20"), "ref": Decimal("5")}
    assert cancelled.effects_of("rollbackCoupon")[0].props["value"] == "SHOP-10"
    assert cancelled.effects_of("rollbackReferral")[0].props["value"] == "REF-1"
    assert sb.get_session("s1").state.value == "cancelled"
    zeroed(sb)


def test_cancel_may_repeat_the_stored_fields() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    state = sb.update("s1", order("cancelled"))
    assert "rollbackCoupon" in effect_types(state)
    zeroed(sb)


def test_cancel_with_a_differing_field_is_illegal() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    assert_illegal(
        sb,
        lambda: sb.update("s1", order("cancelled", profileId="p2")),
        "closed",
        "cancelled",
        ["cancelled", "open", "partially_returned"],
    )
    with pytest.raises(TransitionError, match="profileId"):
        sb.update("s1", order("cancelled", profileId="p2"))


def test_reopen_rolls_back_and_leaves_the_session_open() -> None:
    sb = shop()
    sb.update("s1", referred("closed"))
    state = sb.reopen("s1")
    assert sorted(effect_types(state)) == [
        "rollbackCoupon",
        "rollbackDiscount",
        "rollbackDiscount",
        "rollbackReferral",
    ]
    assert sb.get_session("s1").state.value == "open"
    assert state.session.state.value == "open"
    zeroed(sb)
    # It can be closed again, committing again.
    sb.update("s1", referred("closed"))
    assert sb.get_coupon("SHOP-10").usage_counter == 1
    assert sb.get_referral("REF-1").usage_counter == 1


def test_return_items_rolls_back_a_share() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    state = sb.return_items("s1", [{"position": 1, "quantity": 1}])
    assert effect_types(state) == ["rollbackDiscount"]
    # 10% of 200 = 20; the returned item is 100 of 200, so half of 20.
    (rollback,) = state.effects
    assert rollback.props["value"] == Decimal("10")
    assert rollback.props["name"] == "10%"
    stored = sb.get_session("s1")
    assert stored.state.value == "partially_returned"
    items = stored.session.cart_items
    assert items is not None
    assert [(i.returned_quantity, i.remaining_quantity) for i in items] == [(0, 2), (1, 0)]
    # The coupon stays redeemed; the budget gets the 10 back; sales lose 100.
    assert sb.get_coupon("SHOP-10").usage_counter == 1
    budget = [lc for lc in sb.limit_counters() if lc.action == "setDiscount"]
    assert [lc.counter for lc in budget] == [10]
    assert sb.get_profile("p1").total_sales == Decimal("100")
    assert sb.get_profile("p1").closed_sessions == 1


def test_second_return_then_cancel_rolls_back_the_rest() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    sb.return_items("s1", [{"sku": "shirt", "quantity": 1}])
    # 50 of 200 returned: a quarter of 20 is 5.
    state = sb.return_items("s1", [{"position": 0}])
    # The other shirt: 50 of the 150 left, a third of the 15 left.
    assert [x.props["value"] for x in state.effects] == [Decimal("5")]
    items = sb.get_session("s1").session.cart_items
    assert items is not None
    assert [i.returned_quantity or 0 for i in items] == [2, 0]
    assert sb.get_profile("p1").total_sales == Decimal("100")
    cancelled = sb.update("s1", {"state": "cancelled"})
    assert sorted(effect_types(cancelled)) == ["rollbackCoupon", "rollbackDiscount"]
    assert cancelled.effects_of("rollbackDiscount")[0].props["value"] == Decimal("10")
    zeroed(sb)


def test_returning_everything_rolls_back_exactly_the_discount() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Thirds", limits=[Limit("setDiscount", 100)])
    campaign.rule("ten off", then=[e.set_discount("ten", Decimal("10"))])
    cart = [{"sku": "x", "quantity": 3, "price": 10}]
    sb.update("s1", {"profileId": "p1", "cartItems": cart, "state": "closed"})
    shares = [
        sb.return_items("s1", [{"position": 0, "quantity": 1}]).effects[0].props["value"]
        for _ in range(3)
    ]
    # 10 / 3 = 3.33; then 6.67 / 2 = 3.335 -> 3.34 (half-even); then the 3.33 left.
    assert shares == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    assert sum(shares) == 10
    assert sb.ledger.counters == {}


def test_per_item_discount_is_rolled_back_with_its_item() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Items", limits=[Limit("setDiscount", 100)])
    campaign.rule("shoes", then=[e.set_discount_per_item("sale", percent=20)])
    sb.update("s1", {"profileId": "p1", "cartItems": CART, "state": "closed"})
    state = sb.return_items("s1", [{"position": 1}])
    (rollback,) = state.effects
    # 20% of the 100 shoes; the shirts' 20 stays.
    assert rollback.props["value"] == Decimal("20")
    assert rollback.props["cartItemPosition"] == 1
    (budget,) = sb.limit_counters()
    assert budget.counter == 20


def test_return_after_an_overwritten_discount_releases_the_right_budget() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Overwrite", limits=[Limit("setDiscount", 100)])
    campaign.rule("first", then=[e.set_discount("same", Decimal("5"))])
    # A later discount of the same name replaces the first (Talon.One).
    campaign.rule(
        "second", then=[e.set_discount("other", Decimal("1")), e.set_discount("same", Decimal("7"))]
    )
    cart = [{"sku": "x", "quantity": 2, "price": 10}]
    closed = sb.update("s1", {"cartItems": cart, "state": "closed"})
    assert closed.discounts == {"other": Decimal("1"), "same": Decimal("7")}
    (budget,) = sb.limit_counters()
    assert budget.counter == 8
    state = sb.return_items("s1", [{"position": 0, "quantity": 1}])
    # Half the cart comes back: half of each discount, 0.50 + 3.50 of the budget.
    back = {x.props["name"]: x.props["value"] for x in state.effects}
    assert back == {"other": Decimal("0.50"), "same": Decimal("3.50")}
    (budget,) = sb.limit_counters()
    assert budget.counter == 4
    sb.update("s1", {"state": "cancelled"})
    assert sb.ledger.counters == {}


def test_a_discount_capped_to_zero_commits_and_rolls_back_nothing() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Capped", limits=[Limit("setDiscount", 10)])
    campaign.rule("first", then=[e.set_discount("first", Decimal("4"))])
    campaign.rule("second", then=[e.set_discount("second", Decimal("4"))])
    cart = [{"sku": "x", "quantity": 2, "price": 2}]
    closed = sb.update("s1", {"profileId": "p1", "cartItems": cart, "state": "closed"})
    # The cart is 4: the first takes all of it, the second is capped to 0.
    assert closed.discounts == {"first": Decimal("4"), "second": Decimal("0")}
    assert [(lc.action, lc.counter) for lc in sb.limit_counters()] == [("setDiscount", 4)]
    cancelled = sb.update("s1", {"state": "cancelled"})
    assert [(x.props["name"], x.props["value"]) for x in cancelled.effects] == [("first", 4)]
    assert sb.ledger.counters == {}
    sb.update("s2", {"profileId": "p1", "cartItems": cart, "state": "closed"})
    returned = sb.return_items("s2", [{"position": 0, "quantity": 1}])
    assert [(x.props["name"], x.props["value"]) for x in returned.effects] == [("first", 2)]
    cancelled = sb.update("s2", {"state": "cancelled"})
    assert [(x.props["name"], x.props["value"]) for x in cancelled.effects] == [("first", 2)]
    assert sb.ledger.counters == {}
    assert sb.get_profile("p1").closed_sessions == 0
    assert sb.get_profile("p1").total_sales == 0


def test_dry_runs_change_nothing() -> None:
    sb = shop()
    sb.update("s1", order())
    before = sb.snapshot()
    state = sb.update("s1", order("closed"), dry=True)
    assert state.accepted_coupons == ["SHOP-10"]
    assert sb.snapshot() == before
    sb.update("s1", order("closed"))
    before = sb.snapshot()
    assert "rollbackCoupon" in effect_types(sb.update("s1", {"state": "cancelled"}, dry=True))
    assert "rollbackCoupon" in effect_types(sb.reopen("s1", dry=True))
    assert effect_types(sb.return_items("s1", [{"position": 1}], dry=True)) == ["rollbackDiscount"]
    assert sb.snapshot() == before


def test_dry_runs_check_transitions() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    legal = ["cancelled", "open", "partially_returned"]
    assert_illegal(
        sb, lambda: sb.update("s1", order("closed"), dry=True), "closed", "closed", legal
    )
    assert_illegal(sb, lambda: sb.update("s1", order("open"), dry=True), "closed", "open", legal)
    assert_illegal(
        sb, lambda: sb.update("new", order("cancelled"), dry=True), None, "cancelled", []
    )


# ---------------------------------------------------------------------------
# Illegal transitions


@pytest.mark.parametrize("asked", ["cancelled", "partially_returned"])
def test_new_session_cannot_start_as(asked: str) -> None:
    sb = shop()
    assert_illegal(sb, lambda: sb.update("s1", order(asked)), None, asked, ["open", "closed"])


def test_resending_a_closed_session_is_illegal() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    legal = ["cancelled", "open (sb.reopen)", "partially_returned (sb.return_items)"]
    assert_illegal(sb, lambda: sb.update("s1", order("closed")), "closed", "closed", legal)
    assert_illegal(sb, lambda: sb.update("s1", order("open")), "closed", "open", legal)
    assert_illegal(
        sb,
        lambda: sb.update("s1", order("partially_returned")),
        "closed",
        "partially_returned",
        legal,
    )


def test_open_session_cannot_be_reopened_or_returned() -> None:
    sb = shop()
    sb.update("s1", order())
    legal = ["open", "closed", "cancelled"]
    assert_illegal(sb, lambda: sb.reopen("s1"), "open", "open", legal)
    assert_illegal(
        sb, lambda: sb.return_items("s1", [{"position": 0}]), "open", "partially_returned", legal
    )
    assert_illegal(
        sb,
        lambda: sb.update("s1", order("partially_returned")),
        "open",
        "partially_returned",
        legal,
    )


def test_partially_returned_moves() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    sb.return_items("s1", [{"position": 0, "quantity": 1}])
    legal = ["cancelled", "partially_returned (sb.return_items)"]
    for asked in ("open", "closed", "partially_returned"):
        assert_illegal(
            sb, lambda a=asked: sb.update("s1", order(a)), "partially_returned", asked, legal
        )
    assert_illegal(sb, lambda: sb.reopen("s1"), "partially_returned", "open", legal)
    sb.update("s1", {"state": "cancelled"})
    assert sb.get_session("s1").state.value == "cancelled"
    zeroed(sb)


def test_cancelled_is_final() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    sb.update("s1", {"state": "cancelled"})
    sb.update("s2", order())
    sb.update("s2", {"state": "cancelled"})
    for sid in ("s1", "s2"):
        for asked in ("open", "closed", "cancelled", "partially_returned"):
            assert_illegal(
                sb,
                lambda a=asked, s=sid: sb.update(s, order(a)),
                "cancelled",
                asked,
                ["none (the state is final)"],
            )
        assert_illegal(sb, lambda s=sid: sb.reopen(s), "cancelled", "open", ["none"])
        assert_illegal(
            sb,
            lambda s=sid: sb.return_items(s, [{"position": 0}]),
            "cancelled",
            "partially_returned",
            ["none"],
        )


# ---------------------------------------------------------------------------
# Commit on close


def test_two_open_sessions_see_the_last_unit_and_the_second_close_is_rejected() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Last")
    campaign.rule("five off", when=[c.coupon_valid], then=[e.set_discount("five", Decimal("5"))])
    campaign.coupon("LAST", usage_limit=1)
    a = sb.update("a", {"coupon": "LAST", "total": 50})
    b = sb.update("b", {"coupon": "LAST", "total": 50})
    assert a.accepted_coupons == b.accepted_coupons == ["LAST"]
    assert sb.update("a", {"coupon": "LAST", "total": 50, "state": "closed"}).accepted_coupons
    late = sb.update("b", {"coupon": "LAST", "total": 50, "state": "closed"})
    assert late.rejected_coupons == {"LAST": "CouponLimitReached"}
    assert late.discounts == {}
    assert sb.get_coupon("LAST").usage_counter == 1


# ---------------------------------------------------------------------------
# Bad return input


@pytest.mark.parametrize(
    ("items", "pointer"),
    [
        ([{"position": 2}], "/returnedCartItems/0/position"),
        ([{"position": 1, "quantity": 2}], "/returnedCartItems/0/quantity"),
        ([{"position": 0, "quantity": 1}, {"sku": "hat"}], "/returnedCartItems/1/sku"),
        ([{"position": 0, "quantity": 0}], "/returnedCartItems/0/quantity"),
        ([{"quantity": 1}], "/returnedCartItems/0"),
        ([], "/returnedCartItems"),
    ],
)
def test_bad_returns_change_nothing(items: list[dict[str, Any]], pointer: str) -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    before = sb.snapshot()
    with pytest.raises(ValidationError) as info:
        sb.return_items("s1", items)
    assert pointer in info.value.pointers
    assert sb.snapshot() == before


def test_returning_more_than_is_left_is_rejected() -> None:
    sb = shop()
    sb.update("s1", order("closed"))
    sb.return_items("s1", [{"position": 0, "quantity": 1}])
    before = sb.snapshot()
    with pytest.raises(ValidationError) as info:
        sb.return_items("s1", [{"position": 0, "quantity": 2}])
    assert info.value.pointers == ["/returnedCartItems/0/quantity"]
    # The same position twice in one request counts against what is left.
    with pytest.raises(ValidationError):
        sb.return_items("s1", [{"position": 0}, {"position": 0}])
    assert sb.snapshot() == before


# ---------------------------------------------------------------------------
# Follow-ups: a bare cancel keeps the stored fields; sales under strict_total=False


def test_cancelling_an_open_session_with_only_a_state_keeps_its_stored_fields() -> None:
    from sandbox import Sandbox

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.update("s1", {"profileId": "p1", "cartItems": [{"sku": "A", "quantity": 2, "price": 5}]})
    state = sb.update("s1", {"state": "cancelled"})
    stored = sb.get_session("s1").session
    assert stored.state.value == "cancelled"
    assert stored.profile_id == "p1"
    assert stored.cart_items is not None
    assert stored.cart_items[0].sku == "A"
    assert state.effects == ()


def test_returning_half_of_a_loosely_totalled_cart_takes_half_of_the_closed_total_off_sales() -> (
    None
):
    from decimal import Decimal

    from sandbox import Sandbox

    # The client said 90 for a 100 cart (strict_total=False trusts it, as Talon.One does):
    # returning half the cart's value takes half of the 90 off totalSales, never below zero.
    sb = Sandbox(now="2026-12-01T10:00:00Z", strict_total=False)
    cart = [{"sku": "A", "quantity": 1, "price": 50}, {"sku": "B", "quantity": 1, "price": 50}]
    sb.update("s1", {"profileId": "p1", "cartItems": cart, "total": 90, "state": "closed"})
    assert sb.get_profile("p1").total_sales == Decimal(90)
    sb.return_items("s1", [{"position": 0}])
    assert sb.get_profile("p1").total_sales == Decimal(45)
    sb.update("s1", {"state": "cancelled"})
    assert sb.get_profile("p1").total_sales == Decimal(0)
    assert sb.get_profile("p1").closed_sessions == 0


def test_a_sandbox_without_a_clock_says_how_to_give_it_one() -> None:
    import pytest

    from sandbox import DefinitionError, Sandbox

    with pytest.raises(DefinitionError, match=r"Sandbox\(now=\.\.\.\) is required"):
        Sandbox()


def test_looking_up_a_code_in_an_empty_inventory_says_there_are_none() -> None:
    import pytest

    from sandbox import Sandbox, UnknownEntityError

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    with pytest.raises(UnknownEntityError, match=r"no referral 'NOPE' \(there are none yet\)"):
        sb.get_referral("NOPE")


def test_bad_arguments_to_the_sandbox_api_are_sandbox_errors_not_python_ones() -> None:
    import pytest

    from sandbox import DefinitionError, Sandbox, ValidationError

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.update("s1", {})
    campaign = sb.campaign("A")
    with pytest.raises(DefinitionError, match=r"advocate=\.\.\. is required"):
        campaign.referral("REF-1")
    with pytest.raises(ValidationError, match=r"a session id must be a string .*got 3"):
        sb.get_session(3)  # type: ignore[arg-type]
