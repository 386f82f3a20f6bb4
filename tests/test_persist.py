"""sandbox.persist: a sandbox's whole state saved and loaded again.

The expectations are worked out by hand from the rules below (a 10% coupon limited to
one redemption per profile that also creates a coupon for the next order, a budget of
30 on discounts) and Talon.One's meaning of limits and returns; the state machine
checks that a restart anywhere in a lifecycle changes nothing that follows.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

from sandbox import Limit, Sandbox, persist
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.codec import parse_json
from sandbox.errors import ValidationError
from sandbox.persist import StateError
from sandbox.strategies import SessionLifecycle


def shop() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign(
        "Xmas",
        limits=[Limit("redeemCoupon", 1, entities=["Profile"]), Limit("setDiscount", 30)],
    )
    xmas.coupon("XMAS-2021", usage_limit=100)
    xmas.rule(
        "10% off with XMAS-2021, and a coupon for next time",
        when=[c.coupon_valid],
        then=[e.set_discount("10% off", percent=10), e.create_coupon(pattern="NEXT-####")],
    )
    friends = sb.campaign("Friends")
    friends.referral("REF-2740", advocate="p1")
    friends.rule("5 off for friends", when=[c.referral_valid], then=[e.set_discount("friend", 5)])
    return sb


def other_rules() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Spring")
    return sb


def closed_order(sb: Sandbox, session_id: str, profile: str, **fields: Any) -> Any:
    body = {
        "profileId": profile,
        "cartItems": [{"sku": "tree", "quantity": 2, "price": 50}],
        "state": "closed",
        **fields,
    }
    return sb.update(session_id, {"customerSession": body})


def restarted(sb: Sandbox, build: Any = shop) -> Sandbox:
    """What a server does: the state written as a file's text, read into a fresh build."""
    fresh = build()
    fresh.load_state(parse_json(persist.state_text(sb.state_dict())))
    return fresh


def worked(sb: Sandbox) -> str:
    """A closed order with the coupon (10 off, a NEXT- coupon made), one item of it
    returned, a second profile, an open session, and the clock moved on a day."""
    first = closed_order(sb, "s1", "p1", couponCodes=["XMAS-2021"])
    [created] = first.created_coupons
    sb.return_items("s1", [{"position": 0, "quantity": 1}])
    sb.update_profile("p2", {"attributes": {"tier": "gold", "score": Decimal("2.50")}})
    sb.update("s2", {"customerSession": {"profileId": "p2", "couponCodes": ["XMAS-2021"]}})
    sb.advance(days=1)
    return str(created["value"])


# ---------------------------------------------------------------------------
# what a restart keeps


def test_a_restart_keeps_counters_sessions_profiles_created_codes_and_the_clock() -> None:
    sb = shop()
    created = worked(sb)
    again = restarted(sb)

    assert again.now.isoformat() == "2026-12-02T10:00:00+00:00"
    # XMAS-2021 was redeemed once (the close); the return does not give a redemption back.
    assert again.get_coupon("XMAS-2021").usage_counter == 1
    # The budget: 10 committed, half of it (one tree of two) released by the return.
    budget = [x for x in again.limit_counters() if x.action == "setDiscount"]
    assert [(x.counter, x.remaining) for x in budget] == [(Decimal(5), Decimal(25))]
    # The coupon the close made, for p1, unused, with its id.
    made = again.get_coupon(created)
    assert (made.recipient, made.usage_counter, made.id) == ("p1", 0, 2)
    # Sessions and their states; profiles with their statistics and attributes.
    assert {i: s.state.value for i, s in again.sessions.items()} == {
        "s1": "partially_returned",
        "s2": "open",
    }
    p1 = again.get_profile("p1")
    assert (p1.closed_sessions, p1.total_sales) == (1, Decimal(50))
    assert dict(again.get_profile("p2").attributes) == {"tier": "gold", "score": Decimal("2.50")}
    assert again.snapshot() == sb.snapshot()
    assert again.state_dict() == sb.state_dict()


def test_after_a_restart_the_next_requests_answer_as_without_one() -> None:
    sb = shop()
    created = worked(sb)
    again = restarted(sb)
    for box in (sb, again):
        box.advance(hours=1)
    steps = [
        # p1 has redeemed XMAS-2021 once: the per-profile limit of 1 rejects it now.
        lambda box: closed_order(box, "s3", "p1", couponCodes=["XMAS-2021"]),
        # The created code works for p1, once.
        lambda box: closed_order(box, "s4", "p1", couponCodes=[created]),
        lambda box: box.update("s2", {"customerSession": {"state": "closed"}}),
        lambda box: box.update("s1", {"customerSession": {"state": "cancelled"}}),
        lambda box: box.update("s2", {"customerSession": {"state": "cancelled"}}),
    ]
    for step in steps:
        assert step(again).to_wire() == step(sb).to_wire()
    assert again.snapshot() == sb.snapshot()
    fifth = closed_order(again, "s5", "p9", couponCodes=["XMAS-2021"], referralCode="REF-2740")
    assert fifth.accepted_coupons == ["XMAS-2021"]
    # s1 and s2 closed with the coupon and were cancelled again; only s5 counts.
    assert again.get_coupon("XMAS-2021").usage_counter == 1


def test_the_limit_a_restart_kept_still_refuses() -> None:
    sb = shop()
    closed_order(sb, "s1", "p1", couponCodes=["XMAS-2021"])
    again = restarted(sb)
    second = closed_order(again, "s2", "p1", couponCodes=["XMAS-2021"])
    assert second.rejected_coupons == {"XMAS-2021": "ProfileLimitReached"}


def test_a_restart_keeps_idempotency_keys_api_referrals_and_profiles_events_made() -> None:
    sb = shop()
    closed_order(sb, "s1", "p1", couponCodes=["XMAS-2021"])
    first = sb.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k1")
    referral = sb.create_referral("Friends", "p1")
    sb.track_event("p7", "page_view", {"url": "/trees"})
    again = restarted(sb)
    assert again.snapshot() == sb.snapshot()

    # The key answers its first answer again and changes nothing, after the restart too.
    before = again.state_dict()
    repeat = again.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k1")
    assert repeat.to_wire() == first.to_wire()
    assert again.state_dict() == before
    with pytest.raises(ValidationError, match="the key 'k1' was used at"):
        again.return_items("s1", [{"position": 0, "quantity": 2}], idempotency_key="k1")
    # After 24 hours of sandbox time the key is forgotten: the same request returns the
    # second tree.
    again.advance(hours=24)
    later = again.return_items("s1", [{"position": 0, "quantity": 1}], idempotency_key="k1")
    assert later.session.cart_items[0].returned_quantity == 2

    made = again.get_referral(referral.code)
    assert (made.advocate, made.campaign_id, made.usage_counter) == ("p1", 2, 0)
    assert again.get_profile("p7").integration_id == "p7"


class RestartingLifecycle(SessionLifecycle):
    """The shop's lifecycle, with restarts: the state saved as text and loaded into a
    fresh build, which then takes the place of the running sandbox."""

    def make_sandbox(self) -> Sandbox:
        return shop()

    @precondition(lambda self: bool(self.sb.sessions))
    @rule()
    def restart(self) -> None:
        again = restarted(self.sb, self.make_sandbox)
        assert again.snapshot() == self.sb.snapshot()
        assert again.state_dict() == self.sb.state_dict()
        self.sb = again
        type(self).restarts += 1

    restarts = 0


TestARestartAnywhereChangesNothingThatFollows = RestartingLifecycle.TestCase
TestARestartAnywhereChangesNothingThatFollows.settings = settings(
    max_examples=20, stateful_step_count=20, deadline=None
)


def test_numbers_read_back_as_the_same_decimals_and_integers() -> None:
    sb = shop()
    values = {
        "whole": Decimal(5),
        "cents": Decimal("5.00"),
        "negative zero": Decimal("-0"),
        "exponent": Decimal("1E+2"),
        "tiny": Decimal("0.000001"),
        "count": 7,
        "nested": [Decimal(3), {"n": 4}],
    }
    sb.update_profile("p1", {"attributes": values})
    stored = restarted(sb).get_profile("p1").attributes
    for name, value in values.items():
        assert stored[name] == value
        assert type(stored[name]) is type(value)
        if isinstance(value, Decimal):
            assert str(stored[name]) == str(value), name
    assert type(stored["nested"][0]) is Decimal
    assert type(stored["nested"][1]["n"]) is int


def test_state_text_reads_back_as_the_same_data_even_with_text_that_is_not_utf8() -> None:
    data = {
        "format": "promo-sandbox-state",
        "codes": [{"n": Decimal(5), "m": Decimal("5.0"), "k": 5, "s": "caf\u00e9"}],
        "odd": {"x": "\ud800"},  # not UTF-8: the whole text is written as ASCII escapes
        "empty": [],
    }
    text = persist.state_text(data)
    assert "\\ud800" in text
    back = parse_json(text)
    assert back == data
    assert [type(v) for v in back["codes"][0].values()] == [Decimal, Decimal, int, str]
    plain = persist.state_text({"codes": data["codes"]})
    assert parse_json(plain) == {"codes": data["codes"]}
    assert "caf\u00e9" in plain  # UTF-8, as written


def test_a_state_is_versioned_json_naming_its_rules() -> None:
    sb = shop()
    worked(sb)
    data = json.loads(persist.state_text(sb.state_dict()))
    assert (data["format"], data["version"]) == ("promo-sandbox-state", 1)
    assert data["application"]["campaigns"] == [[1, "Xmas"], [2, "Friends"]]
    assert data["now"] == "2026-12-02T10:00:00+00:00"
    assert [s["session_id"] for s in data["sessions"]] == ["s1", "s2"]


# ---------------------------------------------------------------------------
# files


def test_save_writes_atomically_and_load_reads_it_back(tmp_path: Path) -> None:
    sb = shop()
    worked(sb)
    path = tmp_path / "state.json"
    assert persist.load(shop(), path) is False  # no file yet: nothing to load
    persist.save(sb, path, rules="rules.py")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    again = shop()
    assert persist.load(again, path) is True
    assert again.snapshot() == sb.snapshot()


def test_a_failed_save_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    persist.save(shop(), path)
    before = path.read_bytes()
    sb = shop()
    worked(sb)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StateError, match=r"cannot write the state file .*No space left on device"):
        persist.save(sb, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_save_can_leave_out_the_codes_the_rules_define(tmp_path: Path) -> None:
    sb = shop()
    created = worked(sb)
    path = tmp_path / "state.json"
    persist.save(sb, path, defined=persist.defined_codes(shop()))
    data = json.loads(path.read_text())
    assert [c["definition"]["code"] for c in data["codes"]] == [created]
    again = shop()
    persist.load(again, path)
    assert again.snapshot() == sb.snapshot()
    assert again.get_coupon("XMAS-2021").usage_counter == 1


# ---------------------------------------------------------------------------
# states that are refused, all or nothing


def saved(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "state.json"
    path.write_text(text, encoding="utf-8")
    return path


def good_state() -> dict[str, Any]:
    sb = shop()
    worked(sb)
    data: dict[str, Any] = parse_json(persist.state_text(sb.state_dict()))
    return data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not a promo-sandbox state: not valid JSON"),
        ("[]", 'not a promo-sandbox state (no "format": "promo-sandbox-state" in it)'),
        ('{"format": "other"}', 'not a promo-sandbox state (no "format"'),
    ],
)
def test_a_file_that_is_not_a_state_is_refused_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = saved(tmp_path, text)
    sb = shop()
    with pytest.raises(StateError) as caught:
        persist.load(sb, path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not sb.sessions


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    data = good_state()
    data["version"] = 2
    path = saved(tmp_path, persist.state_text(data))
    with pytest.raises(StateError, match="a state of format version 2; this promo-sandbox"):
        persist.load(shop(), path)


def test_a_state_of_other_rules_is_refused_naming_both_campaign_lists(tmp_path: Path) -> None:
    sb = shop()
    worked(sb)
    path = tmp_path / "state.json"
    persist.save(sb, path, rules="shop.py")
    fresh = other_rules()
    with pytest.raises(StateError) as caught:
        persist.load(fresh, path)
    message = str(caught.value)
    assert (
        "made for shop.py (application 1, codes insensitive-uppercase, campaigns 1 'Xmas', 2 'Friends')"
        in message
    )
    assert (
        "not for these rules (application 1, codes insensitive-uppercase, campaigns 1 'Spring')"
        in message
    )
    assert not fresh.sessions
    assert not fresh.profile_ids


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (lambda d: d["sessions"][0].update(state="lost"), "$.sessions[0].state"),
        (lambda d: d["counters"][0].__setitem__(1, "many"), "$.counters"),
        (lambda d: d.update(now="yesterday"), "$.now"),
        (lambda d: d["profiles"]["p1"].pop("created"), "$.profiles"),
        (lambda d: d.pop("events"), "missing keys events"),
        (lambda d: d["codes"].append({"kind": "voucher", "definition": {}}), "$.codes[3] is"),
        (
            lambda d: d["sessions"][0]["submitted"]["session"].update(coupon=7),
            "$.sessions",
        ),
        (
            lambda d: d["counters"][0][0].update(campaign_id=99),
            "a counter names campaign 99, which is not defined",
        ),
    ],
)
def test_a_damaged_state_is_refused_and_changes_nothing(
    tmp_path: Path, damage: Any, where: str
) -> None:
    data = good_state()
    damage(data)
    path = saved(tmp_path, persist.state_text(data))
    sb = shop()
    before = sb.state_dict()
    with pytest.raises(StateError) as caught:
        persist.load(sb, path)
    assert where in str(caught.value)
    assert "\n" not in str(caught.value)
    assert sb.state_dict() == before


def test_a_saved_code_that_the_rules_give_another_campaign_is_refused() -> None:
    data = good_state()
    entry = next(c for c in data["codes"] if c["definition"]["code"] == "XMAS-2021")
    entry["definition"]["campaign_id"] = 2
    with pytest.raises(StateError, match="'XMAS-2021' belongs to campaign 2 in the state but to 1"):
        shop().load_state(data)


def test_load_state_needs_a_sandbox_fresh_from_its_rules() -> None:
    busy = shop()
    closed_order(busy, "s9", "p9")
    with pytest.raises(StateError, match="needs a sandbox fresh from its rules"):
        busy.load_state(good_state())
    assert list(busy.sessions) == ["s9"]


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("rules", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_a_restart_changes_nothing_that_follows_for_each_example(rules: Path) -> None:
    """The restarting lifecycle over each example rules file (a few short runs each)."""
    machine = RestartingLifecycle.for_rules(rules, properties={})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=5, stateful_step_count=15, deadline=None)
    )
    assert machine.restarts > 0
