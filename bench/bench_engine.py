"""Engine speed: sandbox evaluation vs the same rules hand-written in plain Python.

Prints medians (microseconds per session) and the ratio. Run:
    python bench/bench_engine.py
Results are recorded in bench/README.md. Not a test: nothing here asserts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sandbox import NewCustomerSession, Sandbox, from_wire
from sandbox import conditions as c
from sandbox import effects as e

ROUNDS = 15
PER_ROUND = 400


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign("Xmas")
    xmas.coupon("XMAS-2021", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
    xmas.rule(
        "10% off carts over 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10% off", percent=10)],
    )
    shoes = sb.campaign("Shoes")
    shoes.rule(
        "20% off shoes",
        when=[c.has_item(category="shoes")],
        then=[e.set_discount_per_item("Shoes", percent=20, where=lambda i: i.category == "shoes")],
    )
    return sb


PAYLOAD = {
    "profileId": "p1",
    "coupon": "XMAS-2021",
    "cartItems": [
        {
            "sku": f"SKU-{i}",
            "quantity": 1 + i % 3,
            "price": 10 + i,
            "category": "shoes" if i % 2 else "hats",
        }
        for i in range(5)
    ],
}


def hand_written(session: NewCustomerSession) -> list[dict[str, Any]]:
    """The same two campaigns, written directly: the floor the engine is held to."""
    q = Decimal("0.01")
    items = session.cart_items or ()
    total = session.effective_total
    effects: list[dict[str, Any]] = []
    left = total
    if session.coupon and session.coupon.upper() == "XMAS-2021" and total >= 50:
        effects.append({"effectType": "acceptCoupon", "value": session.coupon})
        value = min((total * 10 / 100).quantize(q, ROUND_HALF_EVEN), left)
        left -= value
        effects.append({"effectType": "setDiscount", "name": "10% off", "value": value})
    if any(i.category == "shoes" for i in items):
        for position, item in enumerate(items):
            if item.category == "shoes":
                line = (item.price or Decimal(0)) * item.quantity
                value = min((line * 20 / 100).quantize(q, ROUND_HALF_EVEN), left, line)
                left -= value
                effects.append(
                    {
                        "effectType": "setDiscountPerItem",
                        "name": f"Shoes#{position}",
                        "value": value,
                    }
                )
    return effects


def median_us(fn: Callable[[], Any]) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            fn()
        samples.append((time.perf_counter() - start) / PER_ROUND * 1e6)
    return statistics.median(samples)


def main() -> None:
    sb = build()
    session = from_wire(NewCustomerSession, PAYLOAD)
    engine_eff = {
        (x.effect_type.value, x.props.get("name"), x.props["value"])
        for x in sb.evaluate(session).effects
    }
    hand_eff = {(x["effectType"], x.get("name"), x["value"]) for x in hand_written(session)}
    assert engine_eff == hand_eff, (engine_eff, hand_eff)  # same work, or the ratio means nothing

    hand = median_us(lambda: hand_written(session))
    engine = median_us(lambda: sb.evaluate(session))
    update = median_us(lambda: sb.update("bench", session, dry=True))
    codec = median_us(lambda: from_wire(NewCustomerSession, PAYLOAD))
    print(f"hand-written rules     {hand:8.1f} us/session")
    print(f"engine evaluate        {engine:8.1f} us/session   ratio {engine / hand:5.1f}x")
    print(f"update(dry=True)       {update:8.1f} us/session   ratio {update / hand:5.1f}x")
    print(f"from_wire (5 items)    {codec:8.1f} us/payload")


if __name__ == "__main__":
    main()
