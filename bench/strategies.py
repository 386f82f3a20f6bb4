"""Examples per second of the session strategies against plain ``st.builds`` of the same shape.

Each strategy is drawn from by a ``@given`` test with an empty body (generate phase
only, no database), and timed in CPU seconds of this process; ours and the plain
baseline run interleaved, round after round, and the script prints the median rate of
each and the ratio. The sandbox is ``bench/engine.py``'s workload (6 campaigns, 50 + 10
coupons, 20 referrals, profile, identifier and campaign limits) after 200 of its
sessions, so counters are in use. Then end to end, what ``fuzz`` does per example:
generate a session, evaluate it (a dry update), check the invariants, in one process
(examples per second per core). Run: ``python bench/strategies.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import string
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from sandbox import AdditionalCost, CartItem, NewCustomerSession, NewCustomerSessionV2, Sandbox
from sandbox.invariants import check_state
from sandbox.models import SessionState
from sandbox.strategies import invalid_sessions, sessions, valid_sessions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import build, workload  # bench/ is not a package

clock = time.process_time
CENT = Decimal("0.01")
CODES = string.ascii_uppercase + string.digits


# ---------------------------------------------------------------------------
# The plain baseline: the same fields, the same sizes, no sandbox read


def _money(max_cents: int) -> st.SearchStrategy[Decimal]:
    return st.integers(0, max_cents).map(lambda cents: Decimal(cents) * CENT)


_ITEM = st.builds(
    CartItem,
    sku=st.integers(1, 99).map("sku-{}".format),
    quantity=st.integers(1, 5),
    price=_money(500_00),
    name=st.none() | st.text(string.ascii_letters + " ", min_size=1, max_size=12),
    category=st.none() | st.sampled_from(("books", "food", "shoes", "toys")),
)
_CODE = st.text(CODES, min_size=4, max_size=12)
_ATTRIBUTES = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=8),
    st.one_of(st.text(max_size=10), st.integers(-1000, 1000), _money(1000_00), st.booleans()),
    max_size=3,
)
_COMMON: dict[str, st.SearchStrategy[Any]] = {
    "profile_id": st.none() | st.integers(1, 99).map("p{}".format),
    "state": st.just(SessionState.OPEN),
    "cart_items": st.none() | st.lists(_ITEM, max_size=4).map(tuple),
    "identifiers": st.none() | st.lists(st.ip_addresses().map(str), min_size=1, max_size=5),
    "attributes": st.none() | _ATTRIBUTES,
}
PLAIN_V1 = st.builds(
    NewCustomerSession,
    coupon=st.none() | _CODE,
    referral=st.none() | _CODE,
    total=st.none() | _money(1000_00),
    **_COMMON,
)
_COST_NAMES = st.sampled_from(("shipping", "packaging", "handling"))
_COSTS = st.none() | st.dictionaries(
    _COST_NAMES, st.builds(AdditionalCost, price=_money(50_00)), max_size=2
)
_ITEM_COSTS = st.none() | st.dictionaries(
    _COST_NAMES, st.builds(AdditionalCost, price=_money(10_00)), min_size=1, max_size=2
)
_ITEM_V2 = st.builds(
    CartItem,
    sku=st.integers(1, 99).map("sku-{}".format),
    quantity=st.integers(1, 5),
    price=_money(500_00),
    name=st.none() | st.text(string.ascii_letters + " ", min_size=1, max_size=12),
    category=st.none() | st.sampled_from(("books", "food", "shoes", "toys")),
    additional_costs=_ITEM_COSTS,
)
PLAIN_V2 = st.builds(
    NewCustomerSessionV2,
    # Distinct codes: the sandbox refuses one code sent twice.
    coupon_codes=st.none() | st.lists(_CODE, max_size=3, unique_by=str.upper).map(tuple),
    referral_code=st.none() | _CODE,
    additional_costs=_COSTS,
    **{**_COMMON, "cart_items": st.none() | st.lists(_ITEM_V2, max_size=4).map(tuple)},
)


# ---------------------------------------------------------------------------
# Timing


def _generate_only(examples: int) -> settings:
    """The settings every timed run uses: ``examples`` draws, generate phase only."""
    return settings(
        max_examples=examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def rate(strategy: st.SearchStrategy[Any], examples: int, round_no: int) -> float:
    """Examples per CPU second of ``examples`` draws (generate phase only)."""

    @seed(round_no)
    @_generate_only(examples)
    @given(strategy)
    def draw(_: Any) -> None:
        pass

    gc.collect()
    start = clock()
    draw()
    return examples / (clock() - start)


def fuzz_rate(sb: Sandbox, strategy: st.SearchStrategy[Any], examples: int, round_no: int) -> float:
    """Generate, evaluate (dry) and check the invariants: examples per CPU second."""

    @seed(round_no)
    @_generate_only(examples)
    @given(strategy)
    def run(session: Any) -> None:
        check_state(sb.update("fuzz", session, dry=True))

    gc.collect()
    start = clock()
    run()
    return examples / (clock() - start)


def sandbox() -> Sandbox:
    sb = build()
    for n, session in enumerate(workload(200)):
        sb.update(f"warm-{n}", session)
    return sb


def pairs(sb: Sandbox) -> list[tuple[str, st.SearchStrategy[Any], st.SearchStrategy[Any]]]:
    rows = [
        ("sessions(sb)", sessions(sb), PLAIN_V1),
        ("valid_sessions(sb)", valid_sessions(sb), PLAIN_V1),
        ("invalid_sessions(sb)", invalid_sessions(sb), PLAIN_V1),
    ]
    try:
        v2 = [
            ("sessions(sb, version=2)", sessions(sb, version=2), PLAIN_V2),
            ("valid_sessions(sb, version=2)", valid_sessions(sb, version=2), PLAIN_V2),
            ("invalid_sessions(sb, version=2)", invalid_sessions(sb, version=2), PLAIN_V2),
        ]
    except TypeError:
        v2 = []  # a commit before the strategies drew V2 sessions
    return rows + v2


def compare(
    label: str,
    ours: Callable[[int], float],
    plain: Callable[[int], float],
    rounds: int,
) -> None:
    mine, theirs = [], []
    for n in range(rounds):
        theirs.append(plain(n))
        mine.append(ours(n))
    a, b = statistics.median(mine), statistics.median(theirs)
    print(f"{label:<34} ours {a:7.0f}/s  plain st.builds {b:7.0f}/s  ratio {a / b:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--only", help="run only the rows whose label contains this")
    args = parser.parse_args()
    sb = sandbox()
    n = args.examples
    for label, ours, plain in pairs(sb):
        if args.only and args.only not in label:
            continue
        compare(
            label,
            lambda r, s=ours: rate(s, n, r),
            lambda r, s=plain: rate(s, n, r),
            args.rounds,
        )
    if args.only and "fuzz" not in args.only:
        return
    print("\nend to end: generate, evaluate (dry update), check invariants; one process")
    for label, strategy in (
        ("fuzz sessions(sb)", sessions(sb)),
        ("fuzz valid_sessions(sb)", valid_sessions(sb)),
    ):
        rates = [fuzz_rate(sb, strategy, n, r) for r in range(args.rounds)]
        print(f"{label:<34} {statistics.median(rates):7.0f} examples/s per core")


if __name__ == "__main__":
    main()
