"""The whole update path against the same semantics written by hand in plain Python.

Workload: 1,000 V2 wire sessions (about 10 cart items each), 6 campaigns (coupons with a
per-coupon usage limit and a per-profile limit, coupons with a per-identifier limit, a
referral programme with a per-profile limit, a per-item percent discount, a per-item
fixed discount capped at the price, a session discount under a money budget), 70% of
the sessions closed at once, so counters carry from session to session.

``hand_written`` implements exactly those rules over the same wire dicts with Decimal.
The script first checks both agree on every session's total discount, every code's
outcome and every counter, then times them interleaved in one process and prints the
median microseconds per session and the ratio; then the same with pre-parsed models, then
the scaling rows. Run: ``python bench/engine.py [--rounds N] [--scaling]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from sandbox import Limit, NewCustomerSessionV2, Sandbox, from_wire
from sandbox import conditions as c
from sandbox import effects as e

NOW = "2026-12-01T10:00:00Z"
CENT = Decimal("0.01")
ZERO = Decimal(0)
XMAS_CODES = [f"XMAS-{i:03d}" for i in range(50)]
DEVICE_CODES = [f"DEVICE-{i:02d}" for i in range(10)]
REFERRALS = [(f"REF-{i:03d}", f"adv-{i}") for i in range(20)]
CATEGORIES = ("shoes", "books", "food", "toys", "garden")
BUDGET = Decimal(5000)


def build(*, coupons: int = 0, extra_campaigns: int = 0, flatten: bool = True) -> Sandbox:
    sb = Sandbox(now=NOW, flatten_cart_items=flatten)
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    for code in XMAS_CODES:
        xmas.coupon(code, usage_limit=3)
    for i in range(coupons):
        xmas.coupon(f"BULK-{i:06d}")
    xmas.rule(
        "10% off from 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("Xmas 10%", percent=10)],
    )
    device = sb.campaign("Device", limits=[Limit("redeemCoupon", 2, entities=["Identifier"])])
    for code in DEVICE_CODES:
        device.coupon(code)
    device.rule("3 off", when=[c.coupon_valid], then=[e.set_discount("Device 3", 3)])
    friends = sb.campaign("Friends", limits=[Limit("redeemReferral", 1, entities=["Profile"])])
    for code, advocate in REFERRALS:
        friends.referral(code, advocate=advocate)
    friends.rule("5 off", when=[c.referral_valid], then=[e.set_discount("Welcome 5", 5)])
    shoes = sb.campaign("Shoes")
    shoes.rule(
        "20% off shoes",
        when=[c.has_item(category="shoes")],
        then=[e.set_discount_per_item("Shoes 20%", percent=20, where=_is_shoe)],
    )
    books = sb.campaign("Books")
    books.rule(
        "2 off each book",
        when=[c.has_item(category="books")],
        then=[e.set_discount_per_item("Books 2", amount=2, where=_is_book)],
    )
    big = sb.campaign("Big basket", limits=[Limit("setDiscount", BUDGET)])
    big.rule("15 off from 100", when=[c.total_at_least(100)], then=[e.set_discount("Big 15", 15)])
    for i in range(extra_campaigns):
        # Campaigns whose rules never fire: what a large ruleset costs per session.
        other = sb.campaign(f"Other {i}")
        other.rule(f"never {i}", when=[c.attribute_equals("segment", f"none-{i}")])
    return sb


def _is_shoe(item: Any) -> bool:
    return bool(item.category == "shoes")


def _is_book(item: Any) -> bool:
    return bool(item.category == "books")


# ---------------------------------------------------------------------------
# The workload


def workload(n: int = 1000, *, items: int = 10, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sessions = []
    for i in range(n):
        cart = []
        for _ in range(max(1, int(rng.gauss(items, items / 3)))):
            cents = rng.randint(50, 8000)
            cart.append(
                {
                    "sku": f"sku-{rng.randint(1, 500)}",
                    "name": "item",
                    "quantity": rng.choice((1, 1, 1, 2, 3)),
                    "price": Decimal(cents) / 100,
                    "category": rng.choice(CATEGORIES),
                }
            )
        session: dict[str, Any] = {"profileId": f"p{rng.randint(0, 299)}", "cartItems": cart}
        codes = []
        if rng.random() < 0.5:
            codes.append(rng.choice(XMAS_CODES))
        if rng.random() < 0.3:
            codes.append(rng.choice(DEVICE_CODES))
        if rng.random() < 0.05:
            codes.append("NO-SUCH-CODE")
        if codes:
            session["couponCodes"] = codes
        if rng.random() < 0.2:
            session["referralCode"] = rng.choice(REFERRALS)[0]
        if rng.random() < 0.8:
            session["identifiers"] = [f"ip-{rng.randint(0, 199)}"]
        if rng.random() < 0.7:
            session["state"] = "closed"
        sessions.append(session)
        _ = i
    return sessions


# ---------------------------------------------------------------------------
# The same semantics by hand


class HandWritten:
    """The six campaigns of ``build()`` in plain Python with Decimal.

    ``flatten``: per-item discounts per unit (Talon.One's flattened cart, the sandbox's
    default), else per cart line (``flatten_cart_items=False``: each line rounded once).
    """

    def __init__(self, flatten: bool = True) -> None:
        self.flatten = flatten
        self.usage: Counter[str] = Counter()  # code -> redemptions
        self.xmas_profile: Counter[str] = Counter()
        self.device_identifier: Counter[str] = Counter()
        self.referral_profile: Counter[str] = Counter()
        self.referred: set[str] = set()
        self.budget = ZERO

    def run(self, session: dict[str, Any]) -> tuple[Decimal, dict[str, str]]:
        items = session.get("cartItems") or []
        total = sum((i["price"] * i["quantity"] for i in items), ZERO)
        profile = session.get("profileId")
        identifiers = session.get("identifiers") or []
        closing = session.get("state") == "closed"
        outcomes: dict[str, str] = {}
        left = total
        given = ZERO
        accepted: list[str] = []

        def take(want: Decimal, cap: Decimal) -> Decimal:
            nonlocal left
            value = min(want, max(min(left, cap), ZERO).quantize(CENT, ROUND_DOWN))
            left -= value
            return value

        xmas_code = device_code = None
        for code in session.get("couponCodes") or []:
            if code in XMAS_CODES:
                if self.usage[code] >= 3:
                    outcomes[code] = "CouponLimitReached"
                elif self.xmas_profile[profile] >= 1:
                    outcomes[code] = "ProfileLimitReached"
                elif xmas_code is None:
                    xmas_code = code
            elif code in DEVICE_CODES:
                if not identifiers or any(self.device_identifier[x] >= 2 for x in identifiers):
                    outcomes[code] = "CouponLimitReached"
                elif device_code is None:
                    device_code = code
            else:
                outcomes[code] = "CouponNotFound"
        referral = session.get("referralCode")
        advocates = dict(REFERRALS)
        friend = None
        if referral:
            if profile == advocates[referral]:
                outcomes[referral] = "ReferralRecipientIdSameAsAdvocate"
            elif profile in self.referred:
                outcomes[referral] = "ReferralCustomerAlreadyReferred"
            elif self.referral_profile[profile] >= 1:
                outcomes[referral] = "ProfileLimitReached"
            else:
                friend = referral
        # Campaigns in order: Xmas, Device, Friends, Shoes, Books, Big basket.
        if xmas_code is not None:
            if total >= 50:
                given += take((total * 10 / 100).quantize(CENT, ROUND_HALF_EVEN), left)
                outcomes[xmas_code] = "accepted"
                accepted.append(xmas_code)
            else:
                outcomes[xmas_code] = "CouponRejectedByCondition"
        if device_code is not None:
            given += take(Decimal(3), left)
            outcomes[device_code] = "accepted"
            accepted.append(device_code)
        if friend is not None:
            given += take(Decimal(5), left)
            outcomes[friend] = "accepted"
        for item in items:
            if item["category"] == "shoes":
                if self.flatten:
                    unit = (item["price"] * 20 / 100).quantize(CENT, ROUND_HALF_EVEN)
                    for _ in range(item["quantity"]):
                        given += take(unit, item["price"])
                else:
                    line_total = item["price"] * item["quantity"]
                    given += take(
                        (line_total * 20 / 100).quantize(CENT, ROUND_HALF_EVEN), line_total
                    )
        for item in items:
            if item["category"] == "books":
                if self.flatten:
                    for _ in range(item["quantity"]):
                        given += take(Decimal(2), item["price"])
                else:
                    line_total = item["price"] * item["quantity"]
                    given += take(Decimal(2) * item["quantity"], line_total)
        big = ZERO
        if total >= 100:
            value = min(Decimal(15), max(left, ZERO).quantize(CENT, ROUND_DOWN))
            if value <= BUDGET - self.budget:
                big = take(Decimal(15), left)
                given += big
        if closing:
            for code in accepted:
                self.usage[code] += 1
            if xmas_code in accepted:
                self.xmas_profile[profile] += 1
            if device_code in accepted:
                for x in identifiers:
                    self.device_identifier[x] += 1
            if friend is not None:
                self.usage[friend] += 1
                self.referral_profile[profile] += 1
                self.referred.add(profile)
            self.budget += big
        return given, outcomes


def sandbox_outcomes(state: Any) -> dict[str, str]:
    found = dict.fromkeys(state.accepted_coupons + state.accepted_referrals, "accepted")
    found.update(state.rejected_coupons)
    found.update(state.rejected_referrals)
    return found


def check_agreement(sessions: list[dict[str, Any]], *, flatten: bool = True) -> None:
    sb, hand = build(flatten=flatten), HandWritten(flatten)
    for n, session in enumerate(sessions):
        state = sb.update(f"s{n}", session)
        given, outcomes = hand.run(session)
        if state.total_discount != given or sandbox_outcomes(state) != outcomes:
            raise SystemExit(
                f"session {n} disagrees: sandbox {state.total_discount} "
                f"{sandbox_outcomes(state)}, hand {given} {outcomes}\n{state.explain()}"
            )
    for code in XMAS_CODES + DEVICE_CODES:
        assert sb.get_coupon(code).usage_counter == hand.usage[code], code
    for code, _ in REFERRALS:
        assert sb.get_referral(code).usage_counter == hand.usage[code], code
    counters = {(x.campaign_name, tuple(x.scope.items())): x.counter for x in sb.limit_counters()}
    expected = {("Xmas", (("Profile", p),)): Decimal(v) for p, v in hand.xmas_profile.items() if v}
    expected |= {
        ("Device", (("Identifier", x),)): Decimal(v) for x, v in hand.device_identifier.items() if v
    }
    expected |= {
        ("Friends", (("Profile", p),)): Decimal(v) for p, v in hand.referral_profile.items() if v
    }
    if hand.budget:
        expected[("Big basket", ())] = hand.budget
    assert counters == expected, set(counters.items()) ^ set(expected.items())


# ---------------------------------------------------------------------------
# Timing


# CPU time of this process: the machine's other work (2 shared cores) moves wall-clock
# times far more than it moves this.
clock = time.process_time


def time_once(fn: Callable[[], Any], count: int) -> float:
    gc.collect()
    start = clock()
    fn()
    return (clock() - start) / count * 1e6


def run_sandbox(
    sessions: Iterable[Any], factory: Callable[[], Sandbox] = build
) -> Callable[[], None]:
    def run() -> None:
        sb = factory()
        for n, session in enumerate(sessions):
            sb.update(f"s{n}", session)

    return run


def run_hand(sessions: list[dict[str, Any]], *, flatten: bool = True) -> Callable[[], None]:
    def run() -> None:
        hand = HandWritten(flatten)
        for session in sessions:
            hand.run(session)

    return run


def compare(
    label: str, sessions: list[Any], wire: list[dict[str, Any]], rounds: int, *, flatten: bool
) -> None:
    factory = functools.partial(build, flatten=flatten)
    ours, theirs = [], []
    for _ in range(rounds):
        theirs.append(time_once(run_hand(wire, flatten=flatten), len(wire)))
        ours.append(time_once(run_sandbox(sessions, factory), len(sessions)))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{label:<50} hand-written {b:8.1f} us  sandbox {a:8.1f} us  ratio {a / b:5.2f}x")


def scaling(rounds: int) -> None:
    print("\nscaling (median us per session of the sandbox)")
    base = workload(1000)
    for stored in (1_000, 10_000, 50_000):
        sb = build()
        filler = workload(stored, seed=11)
        for n, session in enumerate(filler):
            sb.update(f"fill{n}", {**session, "couponCodes": [], "referralCode": ""})
        probe = base[:500]
        times = []
        for r in range(rounds):
            start = clock()
            for n, session in enumerate(probe):
                sb.update(f"probe{r}-{n}", session, dry=True)
            times.append((clock() - start) / len(probe) * 1e6)
        tracked = len(gc.get_objects()) / max(1, len(sb.sessions))
        print(
            f"  stored sessions {stored:>6}: {statistics.median(times):7.1f} us"
            f"  (gc-tracked objects per stored session {tracked:.0f})"
        )
    by_items: dict[int, float] = {}
    for items in (1, 20, 200):
        sessions = workload(200, items=items)
        times = [time_once(run_sandbox(sessions), len(sessions)) for _ in range(rounds)]
        by_items[items] = statistics.median(times)
        print(f"  cart items      {items:>6}: {by_items[items]:7.1f} us")
    # (about 1.05 x the mean size per session; most lines are a unit or two)
    print(f"    one more cart item: {(by_items[200] - by_items[20]) / 180:.2f} us")
    by_campaigns: dict[int, float] = {}
    for extra in (0, 9, 49):
        sessions = workload(300)
        times = [
            time_once(run_sandbox(sessions, lambda c=extra: build(extra_campaigns=c)), 300)
            for _ in range(rounds)
        ]
        by_campaigns[extra] = statistics.median(times)
        print(f"  campaigns {6 + extra:>4} ({extra:>2} never fire): {by_campaigns[extra]:7.1f} us")
    print(
        f"    one more campaign that never fires: {(by_campaigns[49] - by_campaigns[0]) / 49:.2f} us"
    )
    for coupons in (10, 100_000):
        sessions = workload(300)
        sb_factory = (lambda k=coupons: build(coupons=k)) if coupons > 10 else build
        made = sb_factory()  # built once: the inventory, not its construction, is measured
        times = []
        for r in range(rounds):
            start = clock()
            for n, session in enumerate(sessions):
                made.update(f"c{r}-{n}", session, dry=True)
            times.append((clock() - start) / len(sessions) * 1e6)
        print(f"  coupons       {coupons:>7}: {statistics.median(times):7.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    sessions = workload()
    parsed = [from_wire(NewCustomerSessionV2, s) for s in sessions]
    for flatten in (False, True):
        check_agreement(sessions, flatten=flatten)
        mode = "per unit (flattened)" if flatten else "per line (flatten_cart_items=False)"
        print(f"agree, {mode}: {len(sessions)} sessions, every discount, code and counter")
        compare(f"wire dicts, {mode}", sessions, sessions, args.rounds, flatten=flatten)
        compare(f"pre-parsed models, {mode}", parsed, sessions, args.rounds, flatten=flatten)
    if args.scaling:
        scaling(max(3, args.rounds // 3))


if __name__ == "__main__":
    main()
