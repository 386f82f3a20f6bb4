"""The session strategies: what they draw, how they pin, shrink and complain.

The oracle for "schema-valid" is the codec (from_wire with strict_total), an
independent check of what the strategies build in Python.
"""

import ipaddress
import string
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from sandbox import (
    CartItem,
    Limit,
    NewCustomerSession,
    NewCustomerSessionV2,
    Sandbox,
    SessionState,
    ValidationError,
    from_wire,
    to_wire,
)
from sandbox import conditions as c
from sandbox import effects as e
from strategies import (
    FLAWS,
    VIOLATION_KINDS,
    Flawed,
    InvalidPayload,
    cart_items,
    invalid_sessions,
    payloads,
    profile_updates,
    reachable_flaws,
    sessions,
    unreachable_flaws,
    valid_sessions,
)

CODE_CHARACTERS = set(string.ascii_uppercase + string.digits)


def minimal(strategy: st.SearchStrategy[Any], condition: Any = lambda _: True) -> Any:
    return find(
        strategy,
        condition,
        settings=settings(database=None, suppress_health_check=list(HealthCheck)),
    )


def no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(map(no_floats, value.values()))
    if isinstance(value, list | tuple):
        return all(map(no_floats, value))
    return True


# ---------------------------------------------------------------------------
# What is drawn


@given(sessions())
def test_every_drawn_session_passes_the_strict_codec(s: NewCustomerSession) -> None:
    assert from_wire(NewCustomerSession, to_wire(s), strict_total=True) == s


@given(sessions())
def test_drawn_sessions_are_open_with_short_codes_and_ip_identifiers(
    s: NewCustomerSession,
) -> None:
    assert s.state is SessionState.OPEN
    for code in (s.coupon, s.referral):
        assert code is None or (4 <= len(code) <= 12 and set(code) <= CODE_CHARACTERS)
    assert s.identifiers is None or 1 <= len(s.identifiers) <= 5
    for identifier in s.identifiers or ():
        ipaddress.ip_address(identifier)


@given(sessions())
def test_drawn_money_is_two_place_decimal(s: NewCustomerSession) -> None:
    assert s.cart_items is None or len(s.cart_items) <= 4
    for item in s.cart_items or ():
        assert 1 <= item.quantity <= 5
        assert isinstance(item.price, Decimal)
        assert item.price.as_tuple().exponent == -2
        assert 0 <= item.price <= 500
    if s.total is not None:
        assert isinstance(s.total, Decimal)
        assert s.total >= 0
    assert no_floats(s.attributes)


@given(sessions())
def test_a_drawn_total_is_the_cart_sum_when_the_cart_has_items(s: NewCustomerSession) -> None:
    if s.cart_items and s.total is not None:
        assert s.total == sum(item.price * item.quantity for item in s.cart_items if item.price)


@given(st.from_type(NewCustomerSession))
def test_from_type_uses_the_registered_strategy(s: NewCustomerSession) -> None:
    # attrs inference would draw any state and any text; ours is always open.
    assert s.state is SessionState.OPEN
    assert s.coupon is None or set(s.coupon) <= CODE_CHARACTERS


@given(st.from_type(CartItem))
def test_from_type_draws_cart_items_too(item: CartItem) -> None:
    assert item.sku.startswith("sku-")
    assert 1 <= item.quantity <= 5


# ---------------------------------------------------------------------------
# Pinning


@given(sessions(profile_id="p1", coupon="XMAS-2021", identifiers=["91.11.156.141"]))
def test_a_pinned_value_is_used_as_is(s: NewCustomerSession) -> None:
    assert s.profile_id == "p1"
    assert s.coupon == "XMAS-2021"
    assert s.identifiers == ("91.11.156.141",)


@given(sessions(state=st.sampled_from(["closed", "cancelled"])))
def test_a_pinned_strategy_is_drawn_from(s: NewCustomerSession) -> None:
    assert s.state in {SessionState.CLOSED, SessionState.CANCELLED}


@given(sessions(total=Decimal("80.00")))
def test_a_pinned_total_draws_carts_that_agree_with_it(s: NewCustomerSession) -> None:
    assert s.total == Decimal("80.00")
    from_wire(NewCustomerSession, to_wire(s))  # strict_total holds
    if s.cart_items:
        assert s.cart_total == Decimal("80.00")


@given(cart_items(sku="shoe", weight=st.just(Decimal("1.5"))))
def test_cart_items_can_be_pinned_too(item: CartItem) -> None:
    assert item.sku == "shoe"
    assert item.weight == Decimal("1.5")


def test_an_unknown_keyword_is_a_type_error_listing_the_valid_names() -> None:
    with pytest.raises(TypeError, match="cupon") as info:
        sessions(cupon="XMAS")
    message = str(info.value)
    assert "'coupon'" in message
    for name in ("profile_id", "cart_items", "identifiers", "total", "attributes"):
        assert name in message


def test_a_wire_name_as_keyword_suggests_the_python_name() -> None:
    with pytest.raises(TypeError, match="'cart_items'"):
        sessions(cartItems=[])
    with pytest.raises(TypeError, match="'catalog_item_id'"):
        cart_items(catalogItemID=3)


def test_a_pinned_value_the_model_refuses_fails_at_call_time() -> None:
    with pytest.raises(InvalidArgument, match="/identifiers"):
        sessions(identifiers=["1.2.3.4"] * 6)
    with pytest.raises(InvalidArgument, match="/quantity"):
        cart_items(quantity=0)


# ---------------------------------------------------------------------------
# Shrinking and display


def test_sessions_shrink_to_the_empty_open_session() -> None:
    assert minimal(sessions()) == NewCustomerSession()


def test_a_session_with_a_cart_shrinks_to_one_free_sku_1() -> None:
    s = minimal(sessions(), lambda s: bool(s.cart_items))
    assert s == NewCustomerSession(
        cart_items=[CartItem(sku="sku-1", quantity=1, price=Decimal("0.00"))]
    )


def test_codes_shrink_to_four_characters() -> None:
    s = minimal(sessions(), lambda s: s.coupon is not None)
    assert s.coupon is not None
    assert len(s.coupon) == 4


def test_the_repr_shows_the_call() -> None:
    assert repr(sessions()) == "sessions()"
    assert repr(sessions(profile_id="p1")) == "sessions(profile_id='p1')"
    assert repr(cart_items(sku="a")) == "cart_items(sku='a')"


def test_a_sandbox_argument_that_is_not_a_sandbox_fails_at_call_time() -> None:
    with pytest.raises(InvalidArgument, match=r"sessions\(sb=\.\.\.\) must be a sandbox.Sandbox"):
        sessions(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Against a sandbox: a varied inventory, built once and only dry-run afterwards

NOW = "2026-12-01T10:00:00Z"


def varied_sandbox() -> Sandbox:
    """One code per flaw, each stated here so the tests can check flaws without the engine."""
    sb = Sandbox(now=NOW)
    main = sb.campaign("Main")
    main.coupon("GOOD-1")
    main.coupon("OLD-1", expiry_date="2026-11-01T00:00:00Z")
    main.coupon("SOON-1", start_date="2027-01-01T00:00:00Z")
    main.coupon("MINE-1", recipient="alice")
    main.coupon("ONCE-1", usage_limit=1)
    main.referral("REF-A", advocate="adv-1")
    main.referral("REF-F", advocate="adv-2", friend="fred")
    main.referral("REF-OLD", advocate="adv-3", expiry_date="2026-11-01T00:00:00Z")
    off = sb.campaign("Off", state="disabled")
    off.coupon("OFF-1")
    off.referral("REF-OFF", advocate="adv-4")
    sb.campaign("Archived").coupon("ARCH-1")
    sb.get_campaign("Archived").archive()
    per_profile = sb.campaign("PerProfile", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    per_profile.coupon("PP-1")
    per_ip = sb.campaign("PerIp", limits=[Limit("redeemCoupon", 1, entities=["Identifier"])])
    per_ip.coupon("IP-1")
    tiny = sb.campaign("Tiny", limits=[Limit("redeemCoupon", 1)])
    tiny.coupon("TINY-1")
    tiny.coupon("TINY-2")
    sb.campaign("Friends").referral("REF-B", advocate="adv-5")
    for campaign in sb.campaigns:
        campaign.rule("accept coupon", when=[c.coupon_valid], then=[e.set_discount("c", 1)])
        campaign.rule("accept referral", when=[c.referral_valid], then=[e.set_discount("r", 1)])
    # Use codes up by closing sessions, as an integration would.
    closed = [
        NewCustomerSession(coupon="ONCE-1", state=SessionState.CLOSED),
        NewCustomerSession(profile_id="p1", coupon="PP-1", state=SessionState.CLOSED),
        NewCustomerSession(identifiers=["10.0.0.1"], coupon="IP-1", state=SessionState.CLOSED),
        NewCustomerSession(coupon="TINY-1", state=SessionState.CLOSED),
    ]
    for i, session in enumerate(closed):
        assert sb.update(f"setup-{i}", session).accepted_coupons == [session.coupon]
    # bob has been referred in "Friends": another of its referrals is AlreadyReferred for him.
    referred = NewCustomerSession(profile_id="bob", referral="REF-B", state=SessionState.CLOSED)
    assert sb.update("setup-referred", referred).accepted_referrals == ["REF-B"]
    return sb


SB = varied_sandbox()
ALL_CODES = {
    *(code for campaign in SB.campaigns for code in campaign.coupons),
    *(code for campaign in SB.campaigns for code in campaign.referrals),
}


def _code(s: NewCustomerSession, kind: str) -> str | None:
    code = s.coupon if kind == "coupon" else s.referral
    return None if code is None else code.upper()


def flaw_kind(flaw: str) -> str:
    friend = flaw in ("friend_mismatch", "friend_already_referred")
    return "referral" if "referral" in flaw or friend else "coupon"


# What the test itself made for each flaw: (code, a fact about the session) -> bool.
FACTS: dict[str, Any] = {
    "unknown_coupon": lambda code, s: code not in ALL_CODES,
    "unknown_referral": lambda code, s: code not in ALL_CODES,
    "expired_coupon": lambda code, s: code == "OLD-1",
    "expired_referral": lambda code, s: code == "REF-OLD",
    "future_coupon": lambda code, s: code == "SOON-1",
    "recipient_mismatch": lambda code, s: code == "MINE-1" and s.profile_id != "alice",
    "coupon_campaign_not_running": lambda code, s: code == "OFF-1",
    "referral_campaign_not_running": lambda code, s: code == "REF-OFF",
    "archived_coupon_campaign": lambda code, s: code == "ARCH-1",
    "coupon_limit_reached": lambda code, s: code == "ONCE-1",
    "self_referral": lambda code, s: (
        (code, s.profile_id) in {("REF-A", "adv-1"), ("REF-B", "adv-5")}
    ),
    "friend_mismatch": lambda code, s: code == "REF-F" and s.profile_id != "fred",
    "friend_already_referred": lambda code, s: code == "REF-B" and s.profile_id == "bob",
    "coupon_profile_required": lambda code, s: code == "PP-1" and not s.profile_id,
    "coupon_profile_limit_reached": lambda code, s: code == "PP-1" and s.profile_id == "p1",
    "coupon_identifier_missing": lambda code, s: code == "IP-1" and not s.identifiers,
    "coupon_identifier_limit_reached": lambda code, s: (
        code == "IP-1" and "10.0.0.1" in (s.identifiers or ())
    ),
    "coupon_campaign_limit_reached": lambda code, s: code in {"TINY-1", "TINY-2"},
}

# Codes valid for some sessions, and when (again stated independently of the strategies).
VALID = {
    "GOOD-1": lambda s: True,
    "MINE-1": lambda s: s.profile_id == "alice",
    "PP-1": lambda s: s.profile_id not in (None, "", "p1"),
    "IP-1": lambda s: bool(s.identifiers) and "10.0.0.1" not in s.identifiers,
    "REF-A": lambda s: s.profile_id != "adv-1",
    "REF-F": lambda s: s.profile_id == "fred",
    "REF-B": lambda s: s.profile_id not in ("bob", "adv-5"),
}


def test_every_flaw_the_inventory_was_built_for_is_reachable() -> None:
    assert set(reachable_flaws(SB)) == set(FACTS)
    assert set(reachable_flaws(SB)) | set(unreachable_flaws(SB)) == set(FLAWS)
    assert reachable_flaws(SB)["expired_coupon"] == "CouponExpired"


def test_an_empty_sandbox_reaches_only_unknown_codes() -> None:
    empty = Sandbox(now=NOW)
    assert reachable_flaws(empty) == {
        "unknown_coupon": "CouponNotFound",
        "unknown_referral": "ReferralNotFound",
    }
    assert "expired_coupon" in unreachable_flaws(empty)


@settings(max_examples=100)
@given(invalid_sessions(SB))
def test_a_flawed_session_is_rejected_for_exactly_its_planted_reason(f: Flawed) -> None:
    s = f.session
    assert s.state is SessionState.OPEN
    from_wire(NewCustomerSession, to_wire(s), strict_total=True)
    kind = flaw_kind(f.flaw)
    other = "referral" if kind == "coupon" else "coupon"
    code = _code(s, kind)
    assert code is not None
    assert FACTS[f.flaw](code, s), f"{f.flaw} planted with {code!r} in {s!r}"
    other_code = _code(s, other)
    assert other_code is None or VALID[other_code](s)
    state = SB.update("oracle", s, dry=True)
    rejected = state.rejected_coupons if kind == "coupon" else state.rejected_referrals
    assert rejected == {getattr(s, kind): f.expected}
    assert not (state.rejected_referrals if kind == "coupon" else state.rejected_coupons)


@settings(max_examples=100)
@given(valid_sessions(SB))
def test_valid_sessions_have_no_rejected_codes(s: NewCustomerSession) -> None:
    assert s.state is SessionState.OPEN
    for kind in ("coupon", "referral"):
        code = _code(s, kind)
        assert code is None or VALID[code](s), f"{code!r} is not valid for {s!r}"
    state = SB.update("oracle", s, dry=True)
    assert state.rejected_coupons == {}
    assert state.rejected_referrals == {}


def test_valid_sessions_follow_the_counters_as_codes_get_used() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign("Once")
    campaign.coupon("ONLY-1", usage_limit=1)
    campaign.rule("accept", when=[c.coupon_valid], then=[e.set_discount("c", 1)])
    strategy = valid_sessions(sb)
    assert minimal(strategy, lambda s: s.coupon is not None).coupon.upper() == "ONLY-1"
    sb.update("use", NewCustomerSession(coupon="ONLY-1", state=SessionState.CLOSED))
    with pytest.raises(NoSuchExample):
        minimal(strategy, lambda s: s.coupon is not None)
    assert "coupon_limit_reached" in reachable_flaws(sb)


def test_every_reachable_flaw_occurs_in_1000_draws() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=1000, database=None, suppress_health_check=list(HealthCheck))
    @given(invalid_sessions(SB))
    def draw(f: Flawed) -> None:
        seen[f.flaw] += 1

    draw()
    assert set(seen) == set(reachable_flaws(SB)), seen


# ---------------------------------------------------------------------------
# Rule-aware reach


def vip_sandbox(gate: Any) -> Sandbox:
    sb = Sandbox(now=NOW)
    sb.campaign("VIP").rule("vip over 200", when=gate, then=[e.set_discount("vip", 10)])
    return sb


@pytest.mark.parametrize(
    "gate",
    [
        [c.attribute_equals("tier", "vip"), c.total_at_least(200)],
        [lambda ctx: ctx.attributes.get("tier") == "vip" and ctx.total >= 200],
    ],
    ids=["helpers", "lambda"],
)
def test_a_rule_gated_on_an_attribute_and_a_threshold_is_reached(gate: Any) -> None:
    sb = vip_sandbox(gate)
    reached = Counter[str]()

    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck))
    @given(sessions(sb))
    def draw(s: NewCustomerSession) -> None:
        vip = (s.attributes or {}).get("tier") == "vip"
        if vip and s.effective_total >= 200:
            reached["predicate"] += 1
            reached["exactly at 200"] += s.effective_total == 200
        if vip and s.effective_total == Decimal("199.99"):
            reached["a cent below"] += 1
        if sb.update("reach", s, dry=True).discounts:
            reached["engine"] += 1

    draw()
    assert reached["predicate"] >= 5, reached
    assert reached["engine"] == reached["predicate"], reached


# ---------------------------------------------------------------------------
# Payloads


@settings(max_examples=100)
@given(payloads(valid=False))
def test_an_invalid_payload_fails_at_its_pointer(case: InvalidPayload) -> None:
    assert case.kind in VIOLATION_KINDS
    with pytest.raises(ValidationError) as info:
        from_wire(NewCustomerSession, case.payload)
    assert case.pointer in info.value.pointers


@settings(max_examples=100)
@given(payloads(valid=False, sb=SB))
def test_the_sandbox_accepts_no_invalid_payload_either(case: InvalidPayload) -> None:
    with pytest.raises(ValidationError) as info:
        SB.update("payload", case.payload, dry=True)
    assert case.pointer in info.value.pointers


@settings(max_examples=100)
@given(payloads(), payloads(sb=SB))
def test_a_valid_payload_structures(plain: dict[str, Any], aware: dict[str, Any]) -> None:
    for payload in (plain, aware):
        assert to_wire(from_wire(NewCustomerSession, payload)) == payload


def test_every_violation_kind_occurs_in_1000_draws() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=1000, database=None, suppress_health_check=list(HealthCheck))
    @given(payloads(valid=False))
    def draw(case: InvalidPayload) -> None:
        seen[case.kind] += 1

    draw()
    assert set(seen) == set(VIOLATION_KINDS), seen


# ---------------------------------------------------------------------------
# Shrinking, arguments and display, against a sandbox


@pytest.mark.parametrize("sb", [None, SB], ids=["plain", "sandbox"])
def test_a_wrong_price_property_shrinks_to_one_expensive_item_and_nothing_else(
    sb: Sandbox | None,
) -> None:
    # Derandomized, so the bound on shrink quality is checked on the seed CI uses. Hypothesis'
    # shrinker may stop at a local minimum with free sku-1 lines before the expensive one (it
    # does for st.lists of 5-field tuples too, and which seeds and versions hit it varies):
    # those are allowed only as the simplest line there is.
    s = find(
        sessions(sb),
        lambda s: any(i.price and i.price > 100 for i in s.cart_items or ()),
        settings=settings(database=None, derandomize=True, suppress_health_check=list(HealthCheck)),
    )
    assert s.cart_items is not None
    assert (s.coupon, s.referral, s.identifiers, s.attributes) == (None, None, None, None)
    expensive = [i for i in s.cart_items if i.price is not None and i.price > 100]
    assert len(expensive) == 1
    assert expensive[0].price is not None
    assert expensive[0].price <= Decimal("100.01")
    simplest = CartItem(sku="sku-1", quantity=1, price=Decimal("0.00"))
    assert [i for i in s.cart_items if i is not expensive[0]] == [simplest] * (
        len(s.cart_items) - 1
    )
    assert len(s.cart_items) <= 3


def test_a_failing_given_test_reports_the_small_session() -> None:
    # A property most drawn sessions break (on any seed: a price above 100 was not),
    # so the test is about shrinking: Hypothesis replays the smallest failure last.
    seen: list[NewCustomerSession] = []

    @settings(database=None, max_examples=100, suppress_health_check=list(HealthCheck))
    @given(sessions(SB))
    def carts_are_empty(s: NewCustomerSession) -> None:
        seen.append(s)
        assert not s.cart_items

    with pytest.raises(AssertionError):
        carts_are_empty()
    assert len(seen[-1].cart_items or ()) == 1


def test_sandbox_strategies_check_their_arguments() -> None:
    with pytest.raises(InvalidArgument, match=r"valid_sessions\(sb=\.\.\.\) must be a sandbox"):
        valid_sessions(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="'yes'"):
        payloads(valid="yes")  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument, match="invalid_sessions"):
        invalid_sessions("sb")  # type: ignore[arg-type]


def test_sandbox_strategies_show_the_call() -> None:
    assert repr(payloads(valid=False)) == "payloads(valid=False)"
    assert repr(payloads()) == "payloads()"
    assert repr(valid_sessions(SB)).startswith("valid_sessions(<Sandbox ")
    # The call only: what is unreachable is unreachable_flaws(sb)'s answer, not the repr's.
    assert repr(invalid_sessions(SB)) == f"invalid_sessions({SB!r})"


# ---------------------------------------------------------------------------
# V2 sessions (version=2): several codes, additional costs, flattened carts


def _campaign_of(code: str) -> str:
    for campaign in SB.campaigns:
        if code in campaign.coupons or code in campaign.referrals:
            return campaign.name
    raise AssertionError(f"{code!r} is in no campaign")


@settings(max_examples=100)
@given(sessions(version=2), sessions(SB, version=2))
def test_drawn_v2_sessions_validate_and_round_trip(
    plain: NewCustomerSessionV2, aware: NewCustomerSessionV2
) -> None:
    for s in (plain, aware):
        assert isinstance(s, NewCustomerSessionV2)
        assert s.state is SessionState.OPEN
        wire = to_wire(s)
        assert "total" not in wire
        assert "coupon" not in wire
        assert from_wire(NewCustomerSessionV2, wire) == s
        codes = [code.upper() for code in s.coupon_codes or ()]
        assert len(codes) == len(set(codes)) <= 3
        # V2's total, computed by hand: cart lines plus session costs plus item costs x quantity.
        costs = sum((c.price for c in (s.additional_costs or {}).values()), Decimal(0))
        for item in s.cart_items or ():
            unit = sum((c.price for c in (item.additional_costs or {}).values()), Decimal(0))
            costs += unit * item.quantity
        lines = sum(((i.price or 0) * i.quantity for i in s.cart_items or ()), Decimal(0))
        assert s.total == lines + costs
    # Both sandboxes (flattened carts, the default, and one line per effect) take them.
    for sb in (SB, FLAT_OFF):
        assert sb.update("oracle", aware, dry=True).session.total == aware.total


FLAT_OFF = Sandbox(now=NOW, flatten_cart_items=False)


@settings(max_examples=100)
@given(valid_sessions(SB, version=2))
def test_valid_v2_sessions_have_no_rejected_codes_and_one_code_per_campaign(
    s: NewCustomerSessionV2,
) -> None:
    assert isinstance(s, NewCustomerSessionV2)
    codes = [code.upper() for code in s.coupon_codes or ()]
    for code in [*codes, *([s.referral_code.upper()] if s.referral_code else [])]:
        assert VALID[code](s), f"{code!r} is not valid for {s!r}"
    assert len({_campaign_of(code) for code in codes}) == len(codes)
    state = SB.update("oracle", s, dry=True)
    assert state.rejected_coupons == {}
    assert state.rejected_referrals == {}
    assert sorted(c.upper() for c in state.accepted_coupons) == sorted(codes)


@settings(max_examples=100)
@given(invalid_sessions(SB, version=2))
def test_a_flawed_v2_session_rejects_its_planted_code_alone(f: Flawed) -> None:
    s = f.session
    assert isinstance(s, NewCustomerSessionV2)
    assert f.code is not None
    kind = flaw_kind(f.flaw)
    assert FACTS[f.flaw](f.code.upper(), _as_v1_view(s, kind, f.code))
    state = SB.update("oracle", s, dry=True)
    if kind == "coupon":
        assert f.code in (s.coupon_codes or ())
        assert state.rejected_coupons == {f.code: f.expected}
        assert not state.rejected_referrals
        # Every other code is valid for the session, and accepted.
        others = [c for c in s.coupon_codes or () if c != f.code]
        assert all(VALID[c.upper()](s) for c in others)
        assert sorted(state.accepted_coupons) == sorted(others)
    else:
        assert s.referral_code == f.code
        assert state.rejected_referrals == {f.code: f.expected}
        assert not state.rejected_coupons


def _as_v1_view(s: NewCustomerSessionV2, kind: str, code: str) -> NewCustomerSession:
    """The facts about a flaw read profile and identifiers; give them a V1 session."""
    planted = {"coupon": code} if kind == "coupon" else {"referral": code}
    return NewCustomerSession(profile_id=s.profile_id, identifiers=s.identifiers, **planted)


def test_invalid_sessions_produce_referral_customer_already_referred() -> None:
    assert reachable_flaws(SB)["friend_already_referred"] == "ReferralCustomerAlreadyReferred"
    # One flaw of many, drawn by index: give the search room to reach it on any seed.
    found = find(
        invalid_sessions(SB),
        lambda f: f.flaw == "friend_already_referred",
        settings=settings(
            max_examples=2000, database=None, suppress_health_check=list(HealthCheck)
        ),
    )
    assert (found.session.profile_id, found.session.referral.upper()) == ("bob", "REF-B")
    state = SB.update("oracle", found.session, dry=True)
    assert state.rejected_referrals == {found.session.referral: "ReferralCustomerAlreadyReferred"}


@settings(max_examples=100)
@given(payloads(valid=False, version=2))
def test_an_invalid_v2_payload_fails_at_its_pointer(case: InvalidPayload) -> None:
    assert case.kind in VIOLATION_KINDS
    with pytest.raises(ValidationError) as info:
        from_wire(NewCustomerSessionV2, case.payload)
    assert case.pointer in info.value.pointers
    with pytest.raises(ValidationError):
        SB.update("oracle", case.payload, dry=True)


@settings(max_examples=50)
@given(payloads(version=2), payloads(sb=SB, version=2))
def test_a_valid_v2_payload_structures(plain: dict[str, Any], aware: dict[str, Any]) -> None:
    for payload in (plain, aware):
        assert to_wire(from_wire(NewCustomerSessionV2, payload)) == payload
        SB.update("oracle", payload, dry=True)


def test_the_v2_strategies_check_their_arguments_and_show_the_call() -> None:
    with pytest.raises(InvalidArgument, match=r"version=\.\.\.\) must be 1 .* or 2 .*got int 3"):
        sessions(version=3)
    with pytest.raises(InvalidArgument, match="valid_sessions"):
        valid_sessions(SB, version="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coupon_codes"):
        sessions(version=2, coupon="X")
    assert repr(valid_sessions(SB, version=2)) == f"valid_sessions({SB!r}, version=2)"
    assert repr(payloads(version=2)) == "payloads(version=2)"
    assert st.from_type(NewCustomerSessionV2).example().state is SessionState.OPEN


# ---------------------------------------------------------------------------
# Profiles: attributes from the rules' constants, set before the sessions


def profile_shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    sb.campaign("Gold").rule(
        "gold", when=[c.profile_attribute_equals("tier", "gold")], then=[e.set_discount("g", 1)]
    )
    sb.campaign("Regulars").rule(
        "five visits",
        when=[c.profile_attribute_at_least("visits", 5)],
        then=[e.set_discount("r", 1)],
    )
    return sb


def test_profile_attributes_from_hints_make_the_profile_rules_fire() -> None:
    fired: Counter[str] = Counter()

    # 400 examples: at 200, seeds 2 and 7 of ten (CI unset) drew a gold session only once
    # or twice (a session names an updated profile in about 1 draw of 60).
    @settings(max_examples=400, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        sb = profile_shop()
        # The test's own record of each profile's attributes (merged as Talon.One documents).
        known: dict[str, dict[str, Any]] = {}
        for change in data.draw(st.lists(profile_updates(sb), min_size=1, max_size=3)):
            change.apply(sb)
            known.setdefault(change.profile_id, {}).update(change.attributes)
            # The threshold's cent below is drawn (whether or not a session's profile has it).
            fired["a cent below"] += change.attributes.get("visits") == Decimal("4.99")
        s = data.draw(sessions(sb))
        attributes = known.get(s.profile_id or "", {})
        visits = attributes.get("visits")
        expected = {
            "g": attributes.get("tier") == "gold",
            "r": isinstance(visits, int | Decimal) and not isinstance(visits, bool) and visits >= 5,
        }
        discounts = sb.update("s", s, dry=True).discounts
        assert {name: name in discounts for name in expected} == expected
        fired.update(name for name, held in expected.items() if held)

    draw()
    assert fired["g"] >= 3, fired
    assert fired["r"] >= 3, fired
    assert fired["a cent below"] >= 1, fired


def test_profile_updates_shrink_to_p1_without_attributes_and_check_their_argument() -> None:
    change = minimal(profile_updates(profile_shop()))
    assert (change.profile_id, change.attributes) == ("p1", {})
    assert change.to_wire() == {"updateProfile": "p1", "attributes": {}}
    with pytest.raises(InvalidArgument, match="profile_updates"):
        profile_updates("sb")  # type: ignore[arg-type]
