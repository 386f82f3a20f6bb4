"""Differential testing of two rule versions (sandbox.diff and ``python -m sandbox diff``).

Two rule files differ in one threshold (10 off from 50, then from 60): the sessions whose
outcome changes are exactly those with a total in [50, 60), computed here by hand. A small
shop (shipping as an additional cost, a VIP tier, a once-per-customer welcome coupon, a
referral) is compared against one-line changes of itself: on generated lifecycles, and
on recorded traffic with lifecycle steps, each version carrying its own state.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox._changes import changes
from sandbox.diff import (
    EXIT_DIFFERS,
    EXIT_NOT_EXERCISED,
    EXIT_SAME,
    Outcome,
    compare,
    kinds_of,
    search,
)
from sandbox.fuzzing import load_rules

RULES = """
from sandbox import Sandbox, conditions as c, effects as e

def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    big = sb.campaign("Big")
    big.coupon("BIG-1")
    big.rule("10 off", when=[c.coupon_valid, c.total_at_least({threshold})],
             then=[e.set_discount("Big 10", 10)])
    return sb
"""
TOTALS = ["10", "49.99", "50", "50.01", "55", "59.99", "60", "75"]

SHOP = """
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
        then=[e.set_discount("VIP 5%", percent=5)],
    )
    welcome = sb.campaign("Welcome", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    welcome.coupon("WELCOME10", expiry_date="2027-06-30T23:59:59Z")
    welcome.rule(
        "10 off the first order",
        when=[c.coupon_valid, c.total_at_least(30)],
        then=[e.set_discount("Welcome 10", 10)],
    )
    return sb
"""


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.py", tmp_path / "new.py"
    old.write_text(RULES.replace("{threshold}", "50"))
    new.write_text(RULES.replace("{threshold}", "60"))
    return old, new


def shop_file(tmp_path: Path, name: str, *changes: tuple[str, str]) -> Path:
    """The shop rules with each (old text, new text) of ``changes`` made: one-line edits."""
    text = SHOP
    for before, after in changes:
        assert text.count(before) == 1, before
        text = text.replace(before, after)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


def build(path: Path):  # type: ignore[no-untyped-def]
    factory, _ = load_rules(path)
    return factory


def write_lines(tmp_path: Path, name: str, lines: list[object]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# ---------------------------------------------------------------------------
# Outcomes and kinds


def test_a_raised_threshold_changes_exactly_the_sessions_between_the_two(
    rule_files: tuple[Path, Path],
) -> None:
    old, new = (build(p)() for p in rule_files)
    sessions = [
        {"couponCodes": ["BIG-1"], "cartItems": [{"sku": "a", "quantity": 1, "price": Decimal(t)}]}
        for t in TOTALS
    ]
    report = compare(old, new, sessions)
    between = [i for i, t in enumerate(TOTALS) if Decimal(50) <= Decimal(t) < Decimal(60)]
    assert [d.index for d in report.differences] == between
    assert set(report.groups) == {"code now rejected", "discount down", "effect removed"}
    assert report.total_discount_change == Decimal(-10) * len(between)
    for difference in report.differences:
        assert difference.old.codes == {"BIG-1": "accepted"}
        assert difference.new.codes == {"BIG-1": "CouponRejectedByCondition"}
    assert report.verdict == "differs"
    assert report.exit_code == EXIT_DIFFERS


def test_identical_rules_show_no_difference(rule_files: tuple[Path, Path]) -> None:
    old = build(rule_files[0])
    report = compare(old(), old(), [{"total": Decimal(t), "coupon": "BIG-1"} for t in TOTALS])
    assert report.ok
    assert report.compared == len(TOTALS)
    assert report.changes == []
    assert report.exit_code == EXIT_SAME
    assert "no difference" in report.render()


def test_kinds_are_named_from_the_two_outcomes() -> None:
    before = Outcome(
        {"A": "accepted", "B": "CouponExpired"}, Decimal(5), (("setDiscount", "C", "d"),)
    )
    after = Outcome({"A": "CouponLimitReached", "B": "CouponNotFound"}, Decimal(0))
    assert kinds_of(before, after) == [
        "code now rejected",
        "reason changed",
        "discount down",
        "effect removed",
    ]
    assert kinds_of(after, before) == [
        "code now accepted",
        "reason changed",
        "discount up",
        "effect added",
    ]
    assert kinds_of(before, before) == []
    refused = Outcome(error="RuleError: boom")
    assert kinds_of(before, refused)[-1] == "now refused"
    assert kinds_of(refused, before)[-1] == "no longer refused"


# ---------------------------------------------------------------------------
# Changes by source


def test_changes_name_each_changed_rule_code_and_limit_by_its_source(tmp_path: Path) -> None:
    old = build(shop_file(tmp_path, "old"))()
    new = build(
        shop_file(
            tmp_path,
            "new",
            ("FREE_SHIPPING_FROM = 75", "FREE_SHIPPING_FROM = 60"),  # a global a lambda reads
            ('"tier", "gold"', '"tier", "platinum"'),  # a builder's closure
            ('entities=["Profile"])', 'entities=["Profile"], period="monthly")'),
            ('expiry_date="2027-06-30T23:59:59Z"', 'expiry_date="2027-05-31T23:59:59Z"'),
        )
    )()
    found = {(c.kind, c.campaign, c.subject): c for c in changes(old, new)}
    assert set(found) == {
        ("rule", "Free shipping", "rule 'free shipping from 75'"),
        ("rule", "VIP", "rule '5% off for gold'"),
        ("limits", "Welcome", "limits"),
        ("code", "Welcome", "coupon 'WELCOME10'"),
    }
    assert (
        "condition 0 changed"
        in found[("rule", "Free shipping", "rule 'free shipping from 75'")].what
    )
    assert "'gold' -> " in found[("rule", "VIP", "rule '5% off for gold'")].what
    assert "monthly" in found[("limits", "Welcome", "limits")].what
    assert found[("code", "Welcome", "coupon 'WELCOME10'")].fields == ("expiry_date",)


def test_a_refactor_that_runs_the_same_code_is_no_change(tmp_path: Path) -> None:
    old = build(shop_file(tmp_path, "old"))()
    refactored = shop_file(
        tmp_path,
        "refactored",
        # another name for the lambda's argument, the rule moved down a line, a comment
        ("lambda ctx: ctx.session.cart_item_total", "lambda c_: c_.session.cart_item_total"),
        ('    sb.campaign("VIP").rule(', '\n    # the tier discount\n    sb.campaign("VIP").rule('),
    )
    assert changes(old, build(refactored)()) == []
    assert changes(old, build(shop_file(tmp_path, "again"))()) == []


# ---------------------------------------------------------------------------
# Recorded traffic: every line eval takes, state carried per version


def shop_traffic() -> list[object]:
    """A gold customer's two orders with the welcome code (once per customer), a return,
    a reopen and a cancel, a clock move, a friend's order with shipping, an event."""
    return [
        {"updateProfile": "p1", "attributes": {"tier": "gold"}},
        {
            "customerSessionId": "order-1",
            "customerSession": {
                "profileId": "p1",
                "couponCodes": ["WELCOME10"],
                "cartItems": [{"sku": "tee", "quantity": 2, "price": 20}],
                "additionalCosts": {"shipping": {"price": 4.99}},
            },
        },
        {"customerSessionId": "order-1", "customerSession": {"state": "closed"}},
        {"returnItems": "order-1", "returnedCartItems": [{"position": 0, "quantity": 1}]},
        {"advance": {"days": 3}},
        {
            "customerSessionId": "order-2",
            "customerSession": {
                "profileId": "p1",
                "couponCodes": ["WELCOME10"],
                "cartItems": [{"sku": "mug", "quantity": 1, "price": 35}],
                "state": "closed",
            },
        },
        {"reopen": "order-2"},
        {"customerSessionId": "order-2", "customerSession": {"state": "cancelled"}},
        {
            "customerSessionId": "order-3",
            "customerSession": {
                "profileId": "p2",
                "cartItems": [{"sku": "coat", "quantity": 1, "price": 80}],
                "additionalCosts": {"shipping": {"price": 4.99}},
            },
        },
        {"trackEvent": {"profileId": "p1", "type": "review", "attributes": {}}},
    ]


def test_a_file_against_itself_with_lifecycle_steps_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    shop = str(shop_file(tmp_path, "shop"))
    traffic = str(write_lines(tmp_path, "traffic.jsonl", shop_traffic()))
    report = tmp_path / "report.json"
    assert main(["diff", shop, shop, "--sessions", traffic, "--json", str(report)]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # every line was taken: no line is bad input
    data = json.loads(report.read_text())
    # The answers: order-1's update and close, its return, order-2's close, reopen and
    # cancel, order-3, the event (the profile update and the clock move answer nothing).
    assert data["compared"] == 8
    assert data["sessionsCompared"] == 4
    assert (data["verdict"], data["differing"], data["changes"]) == ("same", 0, [])
    assert "the same rules, the same answers (exit 0)" in out


def test_state_is_carried_so_a_second_order_under_a_once_per_customer_limit_differs_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Welcome once per customer, then twice: only order-2 (the customer's second use)
    differs, and only with state carried from order-1's close."""
    from sandbox.cli import main

    once = str(shop_file(tmp_path, "once"))
    twice = str(shop_file(tmp_path, "twice", ('"redeemCoupon", 1,', '"redeemCoupon", 2,')))
    traffic = str(write_lines(tmp_path, "traffic.jsonl", shop_traffic()))
    report = tmp_path / "report.json"
    assert main(["diff", once, twice, "--sessions", traffic, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    (session,) = data["sessions"]
    assert (session["sessionId"], session["profileId"]) == ("order-2", "p1")
    # Its close, and its reopen: the new version rolls back the redemption, the old had none.
    assert session["lines"] == [6, 7]
    assert session["old"]["codes"] == {"WELCOME10": "ProfileLimitReached"}
    assert session["new"]["codes"] == {"WELCOME10": "accepted"}
    # Named once, by id and profile, both answers side by side.
    assert out.count("session order-2 (profile p1)") == 1
    row = next(line for line in out.splitlines() if line.strip().startswith("WELCOME10"))
    assert row.split() == ["WELCOME10", "ProfileLimitReached", "accepted"]
    # Dry, each line alone, nothing is carried: the second order looks like a first.
    dry = tmp_path / "dry.json"
    main(["diff", once, twice, "--sessions", traffic, "--dry", "--json", str(dry)])
    capsys.readouterr()
    assert json.loads(dry.read_text())["differing"] == 0


def test_a_changed_rule_the_traffic_never_exercised_is_reported_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old = str(shop_file(tmp_path, "old"))
    new = str(shop_file(tmp_path, "new", ('"tier", "gold"', '"tier", "platinum"')))
    # Nobody has a tier: the VIP rule's condition is never true in either version.
    traffic = [line for line in shop_traffic() if "updateProfile" not in line]
    path = str(write_lines(tmp_path, "traffic.jsonl", traffic))
    report = tmp_path / "report.json"
    assert main(["diff", old, new, "--sessions", path, "--json", str(report)]) == 3
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["verdict"] == "not exercised"
    assert data["differing"] == 0
    (change,) = data["changes"]
    assert change["campaign"] == "VIP"
    assert change["exercised"] is False
    assert "old: condition 0 (profile attribute 'tier' == 'gold') never true" in change["missing"]
    assert "NOT EXERCISED" in out
    assert "not an all-clear (exit 3)" in out
    # With a gold customer in the traffic, the old rule's condition is seen both ways
    # (the new one never true: no platinum customer), and the change shows as a difference.
    full = str(write_lines(tmp_path, "full.jsonl", shop_traffic()))
    assert main(["diff", old, new, "--sessions", full]) == EXIT_DIFFERS
    assert EXIT_NOT_EXERCISED == 3


def test_a_threshold_seen_both_ways_but_never_between_old_and_new_is_not_exercised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Free shipping from 75, then from 60: carts of 40 and 90 make the condition true and
    false in both versions, yet no cart lies between 60 and 75, where they disagree.
    "No difference" there would be a false all-clear."""
    from sandbox.cli import main

    old = str(shop_file(tmp_path, "old"))
    new = str(shop_file(tmp_path, "new", ("FREE_SHIPPING_FROM = 75", "FREE_SHIPPING_FROM = 60")))
    carts = [
        {
            "cartItems": [{"sku": "a", "quantity": 1, "price": price}],
            "additionalCosts": {"shipping": {"price": 4.99}},
        }
        for price in (40, 90)
    ]
    path = str(write_lines(tmp_path, "carts.jsonl", carts))
    report = tmp_path / "report.json"
    assert main(["diff", old, new, "--sessions", path, "--json", str(report)]) == 3
    capsys.readouterr()
    (change,) = json.loads(report.read_text())["changes"]
    assert change["missing"] == [
        "condition 0: the old and the new condition never disagreed on the compared traffic "
        "(no context between the two)"
    ]
    # A cart of 70 is between: the difference shows.
    between = str(
        write_lines(
            tmp_path,
            "between.jsonl",
            [*carts, {**carts[0], "cartItems": [{"sku": "a", "quantity": 1, "price": 70}]}],
        )
    )
    assert main(["diff", old, new, "--sessions", between]) == EXIT_DIFFERS
    capsys.readouterr()


def test_compare_reports_unexercised_changes_too(tmp_path: Path) -> None:
    old = build(shop_file(tmp_path, "old"))()
    new = build(
        shop_file(tmp_path, "new", ("FREE_SHIPPING_FROM = 75", "FREE_SHIPPING_FROM = 60"))
    )()
    cheap = {"cartItems": [{"sku": "a", "quantity": 1, "price": 10}]}
    report = compare(old, new, [cheap])
    assert report.verdict == "not exercised"
    ((change, missing),) = report.unexercised
    assert change.campaign == "Free shipping"
    assert "old: condition 0 (items of 75 or more) never true" in missing
    assert "new: the rule never fired" in missing


def write_sessions(tmp_path: Path) -> Path:
    lines = [
        '{"coupon": "BIG-1", "total": 40}',
        '{"coupon": "BIG-1", "total": 50}',
        '{"customerSession": {"couponCodes": ["BIG-1"], "cartItems": [{"sku": "a", "quantity": 1, "price": 59.99}]}}',
        '{"advance": {"days": 1}}',
        '{"coupon": "BIG-1", "total": 60}',
    ]
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_cli_exits_1_on_a_difference_and_0_on_identical_rules(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old, new = (str(p) for p in rule_files)
    sessions = str(write_sessions(tmp_path))
    report = tmp_path / "report.json"
    assert main(["diff", old, new, "--sessions", sessions, "--json", str(report)]) == 1
    printed = capsys.readouterr().out
    assert "4 answer(s) over 4 session(s) compared, 2 session(s) differ" in printed
    data = json.loads(report.read_text())
    assert [s["sessionId"] for s in data["sessions"]] == ["line-2", "line-3"]  # as eval names them
    assert [s["lines"] for s in data["sessions"]] == [[2], [3]]
    assert data["kinds"]["code now rejected"]["sessions"] == 2
    assert data["totalDiscountChange"] == "-20.00"
    assert main(["diff", old, old, "--sessions", sessions]) == 0
    assert "no difference" in capsys.readouterr().out


def test_diff_dry_with_two_jobs_gives_the_sequential_dry_report(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old, new = (str(p) for p in rule_files)
    sessions = str(write_sessions(tmp_path))
    assert main(["diff", old, new, "--sessions", sessions, "--dry"]) == 1
    sequential = capsys.readouterr().out
    assert main(["diff", old, new, "--sessions", sessions, "--dry", "--jobs", "2"]) == 1
    assert capsys.readouterr().out == sequential
    # Without --dry each version carries state: that comparison cannot be split.
    assert main(["diff", old, new, "--sessions", sessions, "--jobs", "2"]) == 2
    assert "--jobs and --dask need --dry" in capsys.readouterr().err


def test_diff_reports_bad_lines_and_exits_2(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"total": 50, "coupon": "BIG-1"}\n{not json\n{"reopen": 7}\n')
    assert main(["diff", *(str(p) for p in rule_files), "--sessions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert ":2:2: not valid JSON" in err  # file:line:column
    assert ":3:" in err
    assert "must be a session id" in err


def test_diff_refuses_bad_options_with_exit_2(
    rule_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    old, new = (str(p) for p in rule_files)
    sessions = str(write_sessions(tmp_path))
    assert main(["diff", old, new, "--version", "3"]) == 2
    assert main(["diff", old, new, "--sessions", sessions, "--version", "1"]) == 2
    assert main(["diff", old, new, "--dry"]) == 2
    assert main(["diff", old, new, "--examples", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--version is for generated sessions" in err


# ---------------------------------------------------------------------------
# Generated lifecycles


def test_a_shipping_threshold_change_is_found_by_the_default_generated_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Free shipping (an additional cost) from 60 instead of 75: only a V2 session with a
    shipping cost and items between 60 and 75 shows it; the default run must find it."""
    from sandbox.cli import main

    old = str(shop_file(tmp_path, "shop"))
    new = str(shop_file(tmp_path, "ship60", ("FREE_SHIPPING_FROM = 75", "FREE_SHIPPING_FROM = 60")))
    report = tmp_path / "report.json"
    assert main(["diff", old, new, "--json", str(report)]) == EXIT_DIFFERS
    capsys.readouterr()
    data = json.loads(report.read_text())
    assert set(data["kinds"]) == {"discount up", "effect added"}
    for session in data["sessions"]:
        added = [e for e in session["new"]["effects"] if e not in session["old"]["effects"]]
        assert added == [["setDiscountPerAdditionalCost", "Free shipping", "Free shipping"]]
    (example,) = {tuple(lines) for lines in data["examples"].values()}
    # The smallest lifecycle replays as recorded traffic, and shows the same difference.
    replay = tmp_path / "example.jsonl"
    replay.write_text("\n".join(example) + "\n")
    assert main(["diff", old, new, "--sessions", str(replay)]) == EXIT_DIFFERS
    printed = capsys.readouterr().out
    assert "setDiscountPerAdditionalCost Free shipping" in printed
    (change,) = data["changes"]
    assert change["exercised"] is True


def test_a_generated_search_shrinks_into_the_band_between_the_thresholds(
    rule_files: tuple[Path, Path],
) -> None:
    report = search(build(rule_files[0]), build(rule_files[1]), examples=30, seed=1)
    assert "discount down" in report.groups
    lines = report.examples["discount down"].splitlines()
    data = json.loads(lines[-1], parse_float=Decimal)
    session = data.get("customerSession", data)
    items = session.get("cartItems", [])
    total = session.get("total", sum(i["price"] * i["quantity"] for i in items))
    assert Decimal(50) <= total < Decimal(60)  # taken by the old rule, refused by the new
    assert "BIG-1" in lines[-1]
    assert report.lifecycles >= 30


def test_generated_lifecycles_are_not_single_sessions(rule_files: tuple[Path, Path]) -> None:
    """Sessions are closed, reopened, returned and the clock moves: the traffic compared
    has more answers than sessions, and answers that are not new sessions."""
    report = search(build(rule_files[0]), build(rule_files[0]), examples=20, seed=2)
    assert report.ok
    assert report.compared > len(report.seen_sessions) > 20
    assert report.verdict == "same"


# ---------------------------------------------------------------------------
# The README's and the notebook's example: examples/spring_sale.py, then the threshold
# raised from 50 to 60 in examples/spring_sale_raised.py, on examples/spring_sessions.jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPRING_OLD, SPRING_NEW = EXAMPLES / "spring_sale.py", EXAMPLES / "spring_sale_raised.py"
SPRING_SESSIONS = EXAMPLES / "spring_sessions.jsonl"


def between_the_thresholds() -> list[tuple[str, int]]:
    """The session ids and lines with SPRING10 (any case) and a cart total in [50, 60),
    read by hand."""
    found = []
    for number, line in enumerate(SPRING_SESSIONS.read_text().splitlines(), start=1):
        data = json.loads(line, parse_float=Decimal)
        session = data.get("customerSession", data)
        codes = [session.get("coupon", ""), *session.get("couponCodes", [])]
        total = session.get("total")
        if total is None:
            total = sum(i["price"] * i["quantity"] for i in session["cartItems"])
        if "SPRING10" in (c.upper() for c in codes) and 50 <= total < 60:
            found.append((data.get("customerSessionId", f"line-{number}"), number))
    return found


def test_the_spring_example_files_differ_in_the_threshold_only() -> None:
    import re

    def code(path: Path) -> str:
        text = path.read_text()
        return re.sub(r'^""".*?"""', "", text, flags=re.S)  # past the docstring

    old, new = code(SPRING_OLD).splitlines(), code(SPRING_NEW).splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == [("SPRING_THRESHOLD = 50", "SPRING_THRESHOLD = 60  # raised from 50")]


def test_diff_of_the_spring_example_finds_the_recorded_sessions_between_50_and_60(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    expected = between_the_thresholds()
    assert len(expected) >= 4  # a total, a cart, a V2 session, a lower-case code
    report = tmp_path / "report.json"
    argv = ["diff", str(SPRING_OLD), str(SPRING_NEW), "--sessions", str(SPRING_SESSIONS)]
    assert main([*argv, "--json", str(report)]) == 1
    capsys.readouterr()
    data = json.loads(report.read_text())
    assert data["compared"] == len(SPRING_SESSIONS.read_text().splitlines())
    assert set(data["kinds"]) == {"code now rejected", "discount down", "effect removed"}
    assert [(s["sessionId"], s["lines"][0]) for s in data["sessions"]] == expected
    for kind in data["kinds"].values():
        assert kind["sessions"] == len(expected)
    assert Decimal(data["totalDiscountChange"]) == -10 * len(expected)
    (change,) = data["changes"]
    assert (change["campaign"], change["exercised"]) == ("Spring sale", True)


def test_a_generated_diff_of_the_spring_example_shrinks_to_one_session_in_the_band() -> None:
    report = search(build(SPRING_OLD), build(SPRING_NEW), examples=30, seed=1)
    assert set(report.groups) == {"code now rejected", "discount down", "effect removed"}
    (line,) = report.examples["code now rejected"].splitlines()  # one session, on its own
    example = json.loads(line, parse_float=Decimal)
    items = example.get("cartItems", [])
    total = example.get("total", sum(i["price"] * i["quantity"] for i in items))
    assert 50 <= total < 60  # a cart the old rule took and the new one refuses
