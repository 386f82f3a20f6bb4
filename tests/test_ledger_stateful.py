"""A state machine over session lifecycles: the ledger never drifts.

Random sequences of updates, closes, cancels, reopens, returns and clock
advances across three profiles and two identifiers. The machine keeps its
own record of which closed sessions redeemed which code, read only from the
IntegrationStates the sandbox returned, and checks the ledger against it
after every step.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.errors import TransitionError, UnknownEntityError, ValidationError

SESSIONS = ("s1", "s2", "s3", "s4", "s5")
PROFILES = ("p1", "p2", "p3")
IDENTIFIERS = ("ip-1", "ip-2")
COUPONS = ("CPN-A", "CPN-B", "CPN-C")
REFERRALS = ("REF-A", "REF-B")
CARTS = (
    ({"sku": "a", "quantity": 2, "price": 30},),
    ({"sku": "a", "quantity": 1, "price": 30}, {"sku": "b", "quantity": 3, "price": 10}),
    # Nothing to discount: every discount is capped to 0 and charges 0.
    ({"sku": "free", "quantity": 1, "price": 0},),
)

# Legal update (PUT) moves; None is a new session (DESIGN.md section 4).
UPDATE_MOVES: dict[str | None, set[str]] = {
    None: {"open", "closed"},
    "open": {"open", "closed", "cancelled"},
    "closed": {"cancelled"},
    "partially_returned": {"cancelled"},
    "cancelled": set(),
}
COMMITTED = ("closed", "partially_returned")


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    coupons = sb.campaign(
        "Coupons",
        limits=[
            Limit("redeemCoupon", 1, entities=["Profile"], period="daily"),
            Limit("redeemCoupon", 2, entities=["Identifier"]),
            Limit("setDiscount", 40),
        ],
    )
    coupons.rule("ten percent", when=[c.coupon_valid], then=[e.set_discount("10%", percent=10)])
    coupons.coupon("CPN-A", usage_limit=2)
    coupons.coupon("CPN-B", usage_limit=2)
    coupons.coupon("CPN-C")
    referrals = sb.campaign("Referrals", limits=[Limit("redeemReferral", 2)])
    referrals.rule("friend", when=[c.referral_valid], then=[e.set_discount("friend", Decimal("3"))])
    referrals.referral("REF-A", advocate="adv", usage_limit=2)
    referrals.referral("REF-B", advocate="p1")
    return sb


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sb = build()
        self.state: dict[str, str] = {}
        # Codes accepted by each session's close, while its close stands.
        self.redeemed: dict[str, tuple[str | None, str | None]] = {}
        # Each committed session's discounts not yet rolled back, by effect name.
        self.discounts: dict[str, dict[str, Decimal]] = {}
        # Each committed session's profile, cart and returned quantities.
        self.sold: dict[str, tuple[str, tuple[dict[str, Any], ...], list[int]]] = {}

    # -- helpers -----------------------------------------------------------

    def attempt(self, action: Any, legal: bool | None) -> Any:
        """Run a step; a step that raises must change nothing."""
        before = self.sb.snapshot()
        error: Exception | None = None
        try:
            result = action()
        except (TransitionError, ValidationError) as exc:
            error = exc
        if error is not None:
            assert self.sb.snapshot() == before, f"{error!r} left changes behind"
            assert legal is not True, f"a legal step raised {error!r}"
            return None
        assert legal is not False, "an illegal step went through"
        return result

    def closed_with(self, sid: str, result: Any) -> None:
        coupon = result.accepted_coupons[0] if result.accepted_coupons else None
        referral = result.accepted_referrals[0] if result.accepted_referrals else None
        assert len(result.accepted_coupons) <= 1
        assert len(result.accepted_referrals) <= 1
        self.redeemed[sid] = (coupon, referral)
        self.discounts[sid] = {
            x.props["name"]: x.props["value"] for x in result.effects if x.effect_type.is_discount
        }

    def rolled_back(self, sid: str, result: Any) -> None:
        """A cancel or reopen gives back exactly the discounts still standing."""
        coupon, referral = self.redeemed.pop(sid)
        assert [x.value for x in result.effects_of("rollbackCoupon")] == (
            [coupon] if coupon else []
        )
        assert [x.value for x in result.effects_of("rollbackReferral")] == (
            [referral] if referral else []
        )
        left = {k: v for k, v in self.discounts.pop(sid).items() if v}
        back = {x.props["name"]: x.props["value"] for x in result.effects_of("rollbackDiscount")}
        assert back == left
        del self.sold[sid]

    # -- steps -----------------------------------------------------------

    @rule(
        sid=st.sampled_from(SESSIONS),
        asked=st.sampled_from(["open", "open", "closed", "closed", "cancelled"]),
        profile=st.sampled_from(PROFILES),
        coupon=st.none() | st.sampled_from(COUPONS),
        referral=st.none() | st.sampled_from(REFERRALS),
        identifiers=st.lists(st.sampled_from(IDENTIFIERS), max_size=2, unique=True),
        cart=st.sampled_from(CARTS),
    )
    def update(
        self,
        sid: str,
        asked: str,
        profile: str,
        coupon: str | None,
        referral: str | None,
        identifiers: list[str],
        cart: tuple[dict[str, Any], ...],
    ) -> None:
        payload: dict[str, Any] = {"profileId": profile, "cartItems": list(cart), "state": asked}
        if coupon:
            payload["coupon"] = coupon
        if referral:
            payload["referral"] = referral
        if identifiers:
            payload["identifiers"] = identifiers
        current = self.state.get(sid)
        legal: bool | None = asked in UPDATE_MOVES[current]
        if legal and asked == "cancelled" and current in COMMITTED:
            legal = None  # legal only if the payload repeats the stored fields
        # V1 (replace): a payload without "coupon" closes the session without its coupon.
        # Without version=1 such a payload reads as V2 and merges, keeping the coupon.
        result = self.attempt(lambda: self.sb.update(sid, payload, version=1), legal)
        if result is None:
            return
        if asked == "cancelled" and current in COMMITTED:
            self.rolled_back(sid, result)
        self.state[sid] = asked
        if asked == "closed":
            self.closed_with(sid, result)
            self.sold[sid] = (profile, cart, [0] * len(cart))
            assert result.accepted_coupons == ([coupon] if coupon else []) or coupon in (
                result.rejected_coupons
            )

    @rule(sid=st.sampled_from(SESSIONS))
    def cancel(self, sid: str) -> None:
        current = self.state.get(sid)
        legal = current is not None and "cancelled" in UPDATE_MOVES[current]
        result = self.attempt(lambda: self.sb.update(sid, {"state": "cancelled"}), legal)
        if result is None:
            return
        if current in COMMITTED:
            self.rolled_back(sid, result)
        else:
            assert result.effects == ()
        self.state[sid] = "cancelled"

    @rule(sid=st.sampled_from(SESSIONS))
    def reopen(self, sid: str) -> None:
        current = self.state.get(sid)
        if current is None:
            return  # an unknown session is a lookup error, not a transition
        result = self.attempt(lambda: self.sb.reopen(sid), current == "closed")
        if result is None:
            return
        self.rolled_back(sid, result)
        self.state[sid] = "open"

    @rule(
        sid=st.sampled_from(SESSIONS),
        position=st.integers(0, 2),
        quantity=st.none() | st.integers(1, 3),
    )
    def return_items(self, sid: str, position: int, quantity: int | None) -> None:
        current = self.state.get(sid)
        if current is None:
            return
        item: dict[str, Any] = {"position": position}
        if quantity is not None:
            item["quantity"] = quantity
        legal = None if current in COMMITTED else False
        result = self.attempt(lambda: self.sb.return_items(sid, [item]), legal)
        if result is None:
            return
        assert {str(x.effect_type) for x in result.effects} <= {"rollbackDiscount"}
        left = self.discounts[sid]
        for x in result.effects:
            name, value = x.props["name"], x.props["value"]
            assert 0 < value <= left[name]
            left[name] -= value
        _, cart, returned = self.sold[sid]
        returned[position] = (
            cart[position]["quantity"] if quantity is None else (returned[position] + quantity)
        )
        assert returned[position] <= cart[position]["quantity"]
        self.state[sid] = "partially_returned"

    @rule(
        sid=st.sampled_from(SESSIONS),
        asked=st.sampled_from(["open", "closed", "cancelled"]),
        coupon=st.sampled_from(COUPONS),
    )
    def dry_update(self, sid: str, asked: str, coupon: str) -> None:
        before = self.sb.snapshot()
        payload = {"profileId": "p2", "coupon": coupon, "total": 50, "state": asked}
        with contextlib.suppress(TransitionError, ValidationError):
            self.sb.update(sid, payload, dry=True)
        with contextlib.suppress(TransitionError, UnknownEntityError):
            self.sb.reopen(sid, dry=True)
        assert self.sb.snapshot() == before

    @rule(hours=st.sampled_from([1, 6, 24, 72]))
    def advance(self, hours: int) -> None:
        self.sb.advance(hours=hours)

    # -- invariants ---------------------------------------------------------

    @invariant()
    def no_counter_over_its_limit(self) -> None:
        for lc in self.sb.limit_counters():
            assert 0 <= lc.counter <= lc.limit, lc
        assert all(value > 0 for value in self.sb.ledger.counters.values())

    @invariant()
    def usage_counters_match_the_closes(self) -> None:
        coupons = Counter(c for c, _ in self.redeemed.values() if c)
        referrals = Counter(r for _, r in self.redeemed.values() if r)
        for code in COUPONS:
            assert self.sb.get_coupon(code).usage_counter == coupons[code], code
        for code in REFERRALS:
            assert self.sb.get_referral(code).usage_counter == referrals[code], code
        assert set(self.redeemed) == {s for s, x in self.state.items() if x in COMMITTED}

    @invariant()
    def budget_matches_the_discounts_standing(self) -> None:
        standing = sum((d.get("10%", Decimal(0)) for d in self.discounts.values()), Decimal(0))
        budget = [lc.counter for lc in self.sb.limit_counters() if lc.action == "setDiscount"]
        assert sum(budget, Decimal(0)) == standing

    @invariant()
    def states_match(self) -> None:
        for sid, expected in self.state.items():
            assert self.sb.get_session(sid).state.value == expected

    @invariant()
    def profile_stats_match(self) -> None:
        closed = Counter(
            self.sb.get_session(s).submitted.profile_id
            for s, x in self.state.items()
            if x in COMMITTED
        )
        sales: Counter[str] = Counter()
        for profile, cart, returned in self.sold.values():
            for item, back in zip(cart, returned, strict=True):
                sales[profile] += item["price"] * (item["quantity"] - back)
        for profile in PROFILES:
            if profile in self.sb.ledger.profiles:
                stats = self.sb.get_profile(profile)
                assert stats.closed_sessions == closed[profile]
                assert stats.total_sales == sales[profile]


LedgerMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
