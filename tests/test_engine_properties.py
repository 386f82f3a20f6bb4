"""Properties of the engine over generated sessions and a few fixed inventories.

Sessions come from a small strategy in this file that draws coupon and
referral codes from the sandbox's inventory (in any case) plus unknown codes:
``strategies.sessions`` does not draw from a sandbox's inventory yet.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import (
    CartItem,
    Limit,
    NewCustomerSession,
    Sandbox,
)
from sandbox import conditions as c
from sandbox import effects as e

NOW = "2026-12-01T10:00:00Z"
D = Decimal
UNKNOWN_CODES = ("NOPE-1", "ZZZZ", "UNKNOWN-CODE")
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------
# Inventories: each a factory, so every example starts from the same world


def stacked() -> Sandbox:
    """Stackable campaigns, item discounts first, then session discounts."""
    sb = Sandbox(now=NOW)
    shoes = sb.campaign("Shoes")
    shoes.coupon("SHOES-15")
    shoes.rule(
        "15% off shoes",
        when=[c.coupon_valid],
        then=[e.set_discount_per_item("shoes", percent=15, where=lambda i: i.category == "shoes")],
    )
    units = sb.campaign("Units", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    units.coupon("UNIT-3", usage_limit=2)
    units.coupon("MINE-1", recipient="p1")
    units.rule(
        "3 off every unit", when=[c.coupon_valid], then=[e.set_discount_per_item("unit", amount=3)]
    )
    session = sb.campaign("Session")
    session.rule(
        "10% over 50", when=[c.total_at_least(50)], then=[e.set_discount("ten", percent=10)]
    )
    session.rule(
        "20 off books",
        when=[c.has_item(category="books")],
        then=[e.set_discount("twenty", amount=20)],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-ADV1", advocate="adv")
    friends.rule("friend 5", when=[c.referral_valid], then=[e.set_discount("friend", amount=5)])
    return sb


def grouped() -> Sandbox:
    """Evaluation groups, and a few codes that fail validity checks."""
    sb = Sandbox(now=NOW)
    best = sb.group("best", mode="highestDiscount")
    first = sb.group("first", mode="listOrder")
    a = sb.campaign("A", group=best)
    a.coupon("BEST-A")
    a.rule("a", when=[c.coupon_valid], then=[e.set_discount("a", percent=20)])
    b = sb.campaign("B", group=best)
    b.coupon("BEST-B", expiry_date="2026-11-01T00:00:00Z")
    b.rule("b", when=[c.coupon_valid], then=[e.set_discount("b", amount=15)])
    b.rule("b2", when=[c.total_at_least(100)], then=[e.set_discount("b2", amount=30)])
    f1 = sb.campaign("F1", group=first)
    f1.coupon("FIRST-1", start_date="2026-12-24T00:00:00Z")
    f1.rule("f1", when=[c.coupon_valid], then=[e.set_discount_per_item("f1", amount=50)])
    f2 = sb.campaign("F2", group=first)
    f2.coupon("FIRST-2")
    f2.rule(
        "f2", when=[c.coupon_valid, c.total_at_least(20)], then=[e.set_discount("f2", amount=500)]
    )
    off = sb.campaign("Off", state="disabled")
    off.coupon("OFF-1")
    old = sb.campaign("Old", state="archived")
    old.coupon("OLD-1")
    old.referral("OLD-REF", advocate="adv")
    return sb


def loose_total() -> Sandbox:
    """strict_total=False: the client's total may disagree with the cart."""
    sb = Sandbox(now=NOW, strict_total=False, partial_discounts=True)
    big = sb.campaign("Big", limits=[Limit("setDiscount", 40)])
    big.coupon("BIG-100")
    big.rule("100 off", when=[c.coupon_valid], then=[e.set_discount("big", amount=100)])
    items = sb.campaign("Items")
    items.rule("half off items", when=[], then=[e.set_discount_per_item("half", percent=50)])
    items.rule("7 per unit", when=[], then=[e.set_discount_per_item("seven", amount=7)])
    return sb


INVENTORIES: dict[str, Callable[[], Sandbox]] = {
    "stacked": stacked,
    "grouped": grouped,
    "loose_total": loose_total,
}
CODES = {name: build() for name, build in INVENTORIES.items()}


def inventory_codes(sb: Sandbox, kind: str) -> list[str]:
    found = []
    for campaign in sb.campaigns:
        found.extend(campaign.coupons if kind == "coupon" else campaign.referrals)
    return found


# ---------------------------------------------------------------------------
# Sessions


money = st.integers(min_value=0, max_value=200_00).map(lambda cents: D(cents) / 100)
items = st.builds(
    CartItem,
    sku=st.sampled_from(("sku-1", "sku-2", "sku-3")),
    quantity=st.integers(min_value=1, max_value=5),
    price=money,
    category=st.sampled_from((None, "shoes", "books", "food")),
)


def codes(sb: Sandbox, kind: str) -> st.SearchStrategy[str | None]:
    known = inventory_codes(sb, kind)
    code = st.sampled_from(known + list(UNKNOWN_CODES))
    # Codes are case-insensitive (the default sandbox): send some in lower case.
    return st.none() | st.tuples(code, st.booleans()).map(lambda t: t[0].lower() if t[1] else t[0])


@st.composite
def sandbox_sessions(draw: st.DrawFn, name: str) -> NewCustomerSession:
    sb = CODES[name]
    cart = draw(st.none() | st.lists(items, max_size=4).map(tuple))
    cart_sum = sum((i.line_total for i in cart or ()), D(0))
    if name == "loose_total":
        total = draw(st.none() | money)
    else:
        total = draw(st.sampled_from((None, cart_sum))) if cart else draw(st.none() | money)
    return NewCustomerSession(
        profile_id=draw(st.sampled_from((None, "p1", "p2", "adv"))),
        coupon=draw(codes(sb, "coupon")),
        referral=draw(codes(sb, "referral")),
        cart_items=cart,
        total=total,
        identifiers=draw(st.none() | st.just(("10.0.0.1",))),
    )


def any_inventory() -> st.SearchStrategy[tuple[str, NewCustomerSession]]:
    return st.sampled_from(sorted(INVENTORIES)).flatmap(
        lambda name: st.tuples(st.just(name), sandbox_sessions(name))
    )


def with_history(name: str) -> Sandbox:
    """A fresh inventory with one closed session, so some counters are non-zero."""
    sb = INVENTORIES[name]()
    code = {"stacked": "UNIT-3", "grouped": "BEST-A", "loose_total": "BIG-100"}[name]
    sb.update(
        "history",
        NewCustomerSession(profile_id="p1", coupon=code, total=D(60), state="closed"),
    )
    return sb


# ---------------------------------------------------------------------------
# Properties


@PROPERTY_SETTINGS
@given(any_inventory())
def test_exactly_one_outcome_per_submitted_code(drawn: tuple[str, NewCustomerSession]) -> None:
    name, session = drawn
    state = with_history(name).update("s", session)
    for kind, code in (("Coupon", session.coupon), ("Referral", session.referral)):
        outcomes = [
            x
            for x in state.to_wire()["effects"]
            if x["effectType"] in (f"accept{kind}", f"reject{kind}")
        ]
        if code is None:
            assert outcomes == []
        else:
            assert len(outcomes) == 1, outcomes
            assert outcomes[0]["props"]["value"] == code


@PROPERTY_SETTINGS
@given(any_inventory())
def test_no_discount_exceeds_its_base(drawn: tuple[str, NewCustomerSession]) -> None:
    name, session = drawn
    state = CODES[name].update("s", session, dry=True)
    total = session.effective_total
    lines = [i.line_total for i in session.cart_items or ()]
    given_per_item = [D(0)] * len(lines)
    for effect in state.effects:
        if effect.effect_type.value == "setDiscount":
            assert D(0) <= effect.props["value"] <= total
        elif effect.effect_type.value == "setDiscountPerItem":
            position = effect.props["position"]
            assert D(0) <= effect.props["value"] <= lines[position]
            given_per_item[position] += effect.props["value"]
    assert all(g <= line for g, line in zip(given_per_item, lines, strict=True))
    assert state.total_discount <= total


@PROPERTY_SETTINGS
@given(any_inventory())
def test_discounted_total_is_never_negative(drawn: tuple[str, NewCustomerSession]) -> None:
    name, session = drawn
    state = CODES[name].update("s", session, dry=True)
    assert state.discounted_total >= 0


@PROPERTY_SETTINGS
@given(any_inventory())
def test_evaluating_twice_gives_identical_results(drawn: tuple[str, NewCustomerSession]) -> None:
    name, session = drawn
    sb = with_history(name)
    assert sb.evaluate(session) == sb.evaluate(session)
    first = sb.update("a", session, dry=True)
    second = sb.update("a", session, dry=True)
    assert first.to_wire() == second.to_wire()
    assert first.explain() == second.explain()


@PROPERTY_SETTINGS
@given(any_inventory(), st.sampled_from(("open", "closed")))
def test_a_dry_run_leaves_the_snapshot_unchanged(
    drawn: tuple[str, NewCustomerSession], state_name: str
) -> None:
    name, session = drawn
    sb = with_history(name)
    before = sb.snapshot()
    counters = sb.limit_counters()
    sb.update("s", evolve(session, state=state_name), dry=True)
    sb.update("history", {"state": "cancelled"}, dry=True)
    assert sb.snapshot() == before
    assert sb.limit_counters() == counters


@PROPERTY_SETTINGS
@given(sandbox_sessions("stacked"), st.randoms(use_true_random=False))
def test_permuting_cart_items_does_not_change_the_total_discount_of_stackable_campaigns(
    session: NewCustomerSession, random: Any
) -> None:
    # The "stacked" rules never read item order: per-item discounts stay within
    # their line, and session discounts come after them, capped at what is left.
    sb = CODES["stacked"]
    shuffled = list(session.cart_items or ())
    random.shuffle(shuffled)
    permuted = evolve(session, cart_items=tuple(shuffled) if session.cart_items else None)
    original = sb.update("s", session, dry=True)
    other = sb.update("s", permuted, dry=True)
    assert original.total_discount == other.total_discount
    assert original.rejected_coupons == other.rejected_coupons
