"""Closing sessions from many threads: the ledger commits under the sandbox lock."""

from __future__ import annotations

import threading
from decimal import Decimal

from sandbox import Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.state import IntegrationState

THREADS = 16


def test_sixteen_closes_of_the_last_unit_redeem_exactly_once() -> None:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    campaign = sb.campaign("Race")
    campaign.rule("five off", when=[c.coupon_valid], then=[e.set_discount("five", Decimal("5"))])
    campaign.coupon("ONCE", usage_limit=1)
    barrier = threading.Barrier(THREADS)
    results: dict[int, IntegrationState] = {}
    errors: list[BaseException] = []

    def close(n: int) -> None:
        try:
            sb.update(f"s{n}", {"profileId": f"p{n}", "coupon": "ONCE", "total": 20})
            barrier.wait(timeout=10)
            results[n] = sb.update(
                f"s{n}",
                {"profileId": f"p{n}", "coupon": "ONCE", "total": 20, "state": "closed"},
            )
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == THREADS
    accepted = [n for n, state in results.items() if state.accepted_coupons == ["ONCE"]]
    rejected = [
        n
        for n, state in results.items()
        if state.rejected_coupons == {"ONCE": "CouponLimitReached"}
    ]
    assert len(accepted) == 1
    assert len(rejected) == THREADS - 1
    assert sb.get_coupon("ONCE").usage_counter == 1
    assert results[accepted[0]].discounts == {"five": Decimal("5")}
    assert all(results[n].discounts == {} for n in rejected)
