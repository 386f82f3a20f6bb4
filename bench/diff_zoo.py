"""The diff zoo: does `diff` find every one-line rule change, and stay quiet on refactors?

A shop's rules (shipping as an additional cost, a VIP tier from a profile attribute, a
welcome coupon once per customer with an expiry, a daily deal limited per customer and
day, a referral that creates a thank-you coupon at close, a per-item category discount, an
app-only notification) are changed one line at a time, each change reachable only through
one feature: a threshold on items with a shipping cost, a cost name, a profile attribute,
a created code's usage limit, a limit period, a coupon expiry, a category, a session
attribute, a discount percent. Equivalent refactors (the same rules written differently)
must show no difference. For every change and seed this runs the library call behind
``python -m sandbox diff BASE.py CHANGED.py --seed SEED`` with the default budget.

Run:
    python bench/diff_zoo.py [--seeds 1 2 3 4 5] [--examples 100] [--jobs 2] [--only NAME ...]
Results are recorded in bench/README.md. Not a test: it asserts nothing, but it exits 1
when a change was missed (or a refactor reported as a difference) on some seed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BASE = """
from sandbox import Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

FREE_SHIPPING_FROM = 75


def build():
    sb = Sandbox(now="2027-03-01T10:00:00Z")
    sb.campaign("Free shipping").rule(
        "free shipping from 75",
        when=[c.named("items of 75 or more",
                      lambda ctx: ctx.session.cart_item_total >= FREE_SHIPPING_FROM)],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    sb.campaign("VIP").rule(
        "5% off for gold",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.set_discount("VIP", percent=5)],
    )
    welcome = sb.campaign("Welcome", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    welcome.coupon("WELCOME10", expiry_date="2027-06-30T23:59:59Z")
    welcome.rule(
        "10 off the first order",
        when=[c.coupon_valid, c.total_at_least(30)],
        then=[e.set_discount("Welcome 10", 10)],
    )
    daily = sb.campaign(
        "Daily deal", limits=[Limit("redeemCoupon", 1, entities=["Profile"], period="daily")]
    )
    daily.coupon("DAILY5")
    daily.rule("5 off", when=[c.coupon_valid], then=[e.set_discount("Daily 5", 5)])
    shoes = sb.campaign("Shoe week")
    shoes.rule(
        "20% off shoes",
        when=[c.has_item(category="shoes")],
        then=[e.set_discount_per_item("Shoes 20%", percent=20,
                                      where=lambda item: item.category == "shoes")],
    )
    app = sb.campaign("App")
    app.rule(
        "app notification",
        when=[c.attribute_equals("channel", "app")],
        then=[e.show_notification("Thanks for using the app", "2 off next time")],
    )
    thanks = sb.campaign("Thank you")
    thanks.rule("20 off with a thank-you code", when=[c.coupon_valid],
                then=[e.set_discount("Thanks 20", 20)])
    referral = sb.campaign("Referral")
    referral.referral("FRIEND-ANN", advocate="p1")
    referral.rule(
        "friend gets 15 off and a thank-you code",
        when=[c.referral_valid],
        then=[
            e.set_discount("Friend 15", 15),
            e.create_coupon(pattern="THANKS-####", campaign="Thank you", usage_limit=1),
        ],
    )
    return sb
"""

# name, what it reaches, the one-line edits (text before, text after), what diff must say
CHANGES: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "shipping-threshold",
        "items between 60 and 75 with a shipping cost (V2 additional cost)",
        [("FREE_SHIPPING_FROM = 75", "FREE_SHIPPING_FROM = 60")],
        "differs",
    ),
    (
        "cost-name",
        "a session with a shipping cost (the rule now discounts handling)",
        [('cost="shipping", percent=100', 'cost="handling", percent=100')],
        "differs",
    ),
    (
        "profile-attribute",
        "a profile updated to gold or platinum before its order",
        [('"tier", "gold"', '"tier", "platinum"')],
        "differs",
    ),
    (
        "vip-percent",
        "a gold profile's order (5% -> 6%)",
        [('set_discount("VIP", percent=5)', 'set_discount("VIP", percent=6)')],
        "differs",
    ),
    (
        "created-code-usage",
        "a created thank-you code redeemed twice by its owner",
        [("usage_limit=1)", "usage_limit=2)")],
        "differs",
    ),
    (
        "limit-period",
        "one customer's daily deal on two days of one week",
        [('period="daily")', 'period="weekly")')],
        "differs",
    ),
    (
        "coupon-expiry",
        "WELCOME10 sent in June 2027 (the clock moved past May 31)",
        [('expiry_date="2027-06-30T23:59:59Z"', 'expiry_date="2027-05-31T23:59:59Z"')],
        "differs",
    ),
    (
        "category",
        "an item of category shoes",
        [('c.has_item(category="shoes")', 'c.has_item(category="boots")')],
        "differs",
    ),
    (
        "session-attribute",
        "a session with attributes.channel = app",
        [('"channel", "app"', '"channel", "web"')],
        "differs",
    ),
    (
        "welcome-threshold",
        "WELCOME10 with a total between 30 and 40",
        [("c.total_at_least(30)", "c.total_at_least(40)")],
        "differs",
    ),
    # Equivalent refactors: the same rules, written differently.
    (
        "refactor-inline-constant",
        "the shipping threshold written inline, the lambda's argument renamed",
        [
            (
                "lambda ctx: ctx.session.cart_item_total >= FREE_SHIPPING_FROM",
                "lambda s: s.session.cart_item_total >= 75",
            )
        ],
        "same",
    ),
    (
        "refactor-negated-comparison",
        "items >= 75 written as not (items < 75)",
        [
            (
                "lambda ctx: ctx.session.cart_item_total >= FREE_SHIPPING_FROM",
                "lambda ctx: not ctx.session.cart_item_total < FREE_SHIPPING_FROM",
            )
        ],
        "same",
    ),
    (
        "refactor-decimal-literals",
        "percent and threshold as Decimal strings",
        [
            ('set_discount("VIP", percent=5)', 'set_discount("VIP", percent="5.00")'),
            ("c.total_at_least(30)", 'c.total_at_least("30.00")'),
        ],
        "same",
    ),
    (
        "refactor-where-helper",
        "the shoes filter as a named helper function",
        [
            ('where=lambda item: item.category == "shoes")', "where=is_shoe)"),
            (
                "def build():",
                'def is_shoe(item):\n    return item.category == "shoes"\n\n\ndef build():',
            ),
        ],
        "same",
    ),
]


def _variant(folder: Path, name: str, edits: list[tuple[str, str]]) -> Path:
    text = BASE
    for before, after in edits:
        if text.count(before) != 1:
            raise SystemExit(f"{name}: {before!r} is not exactly once in the base rules")
        text = text.replace(before, after)
    path = folder / f"{name}.py"
    path.write_text(text)
    return path


def _run(job: tuple[str, str, int, int]) -> tuple[str, int, str, int, float, int]:
    """One diff: (change, seed, verdict, differing sessions, seconds, changes unexercised)."""
    from sandbox.diff import search
    from sandbox.fuzzing import load_rules

    base, changed, seed, examples = job
    old, _ = load_rules(base)
    new, _ = load_rules(changed)
    started = time.perf_counter()
    report = search(old, new, examples=examples, seed=seed)
    seconds = time.perf_counter() - started
    return (
        Path(changed).stem,
        seed,
        report.verdict,
        len(report.sessions),
        seconds,
        len(report.unexercised),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--examples", type=int, default=100, help="diff's default budget")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--only", nargs="*", default=None, help="change names to run")
    args = parser.parse_args(argv)
    chosen = [c for c in CHANGES if args.only is None or c[0] in args.only]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"commit {commit}, {platform.python_implementation()} {platform.python_version()}")
    print(f"examples budget {args.examples} lifecycles, seeds {args.seeds}, {len(chosen)} changes")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = _variant(folder, "base", [])
        jobs = [
            (str(base), str(_variant(folder, name, edits)), seed, args.examples)
            for name, _, edits, _ in chosen
            for seed in args.seeds
        ]
        started = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_run, jobs))
    wall = time.perf_counter() - started
    by_name: dict[str, list[tuple[int, str, int, float, int]]] = {}
    for name, seed, verdict, differing, seconds, unexercised in results:
        by_name.setdefault(name, []).append((seed, verdict, differing, seconds, unexercised))
    print()
    print("| change | reached through | expected | verdict per seed | right | median s |")
    print("|---|---|---|---|---|---|")
    wrong = 0
    for name, reaches, _, expected in chosen:
        runs = sorted(by_name[name])
        verdicts = [v for _, v, _, _, _ in runs]
        right = sum(v == expected for v in verdicts)
        wrong += len(runs) - right
        shown = ", ".join(
            f"{seed}: {verdict}" + (f" ({n})" if verdict == "differs" else "")
            for seed, verdict, n, _, _ in runs
        )
        median = statistics.median(s for _, _, _, s, _ in runs)
        print(f"| {name} | {reaches} | {expected} | {shown} | {right}/{len(runs)} | {median:.1f} |")
    print()
    print(f"{len(results)} runs in {wall:.0f} s wall; {wrong} wrong verdict(s)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
