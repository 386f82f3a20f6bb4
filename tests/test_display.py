"""What a user reads: IntegrationState.explain(), its Jupyter HTML, and Effect's str."""

from decimal import Decimal

import pytest

from sandbox import Limit, NewCustomerSession, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

NOW = "2026-12-01T10:00:00Z"
CART = [{"sku": "A", "quantity": 2, "price": 40}]


def shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    xmas.coupon("XMAS-2021")
    xmas.rule(
        "10% off carts over 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10% off", percent=10)],
    )
    return sb


def closed(sb: Sandbox, session_id: str = "s1") -> None:
    payload = {"profileId": "p1", "coupon": "XMAS-2021", "cartItems": CART, "state": "closed"}
    sb.update(session_id, payload)


# ---------------------------------------------------------------------------
# HTML


def test_user_strings_are_escaped_in_the_html() -> None:
    sb = Sandbox(now=NOW)
    evil = sb.campaign("<script>alert('c')</script>")
    evil.rule("<img src=x onerror=alert(1)>", when=[], then=[e.set_discount("<b>d</b>", 1)])
    evil.rule("never <i>", when=[c.total_at_least(1000)], then=[e.set_discount("x", 1)])
    page = sb.update("<s&1>", {"total": 10, "coupon": "<X&Y>"})._repr_html_()
    for raw in ("<script>", "<img", "<b>d</b>", "never <i>", "<s&1>", "<X&Y>"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;c&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;s&amp;1&gt;" in page


def test_the_html_table_has_a_row_per_effect() -> None:
    sb = shop()
    state = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80})
    page = state._repr_html_()
    assert page.count("<tr><td") == len(state.effects) == 2
    assert "acceptCoupon" in page
    assert "setDiscount" in page
    assert "1 Xmas" in page  # the campaign's name beside its id


def test_a_dry_run_is_marked_in_the_html_and_a_real_one_is_not() -> None:
    sb = shop()
    payload = {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}
    assert "dry run" in sb.update("s1", payload, dry=True)._repr_html_()
    assert "dry run" not in sb.update("s1", payload)._repr_html_()


def test_a_rollback_answer_shows_what_was_rolled_back_in_the_html() -> None:
    sb = shop()
    closed(sb)
    page = sb.update("s1", {"state": "cancelled"})._repr_html_()
    assert "rolled back 2 effect(s), discounts 8.00" in page
    assert "rollbackCoupon" in page
    assert "discount 0," not in page


# ---------------------------------------------------------------------------
# explain()


def test_a_fired_rule_says_what_it_gave() -> None:
    sb = shop()
    text = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}).explain()
    assert "rule 0 '10% off carts over 50': fired: discount '10% off' 8.00" in text


def test_a_rejected_code_shows_its_reason_and_details() -> None:
    sb = shop()
    closed(sb)
    text = sb.update("s2", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}).explain()
    assert "coupon 'XMAS-2021' rejected: ProfileLimitReached (limit redeemCoupon" in text


def test_an_excluded_group_campaign_says_why_and_does_not_claim_its_rule_failed() -> None:
    sb = Sandbox(now=NOW)
    best = sb.group("Best", mode="highestDiscount")
    sb.campaign("Big", group=best).rule("5 off", when=[], then=[e.set_discount("Big", 5)])
    small = sb.campaign("Small", group=best)
    small.rule("3 off", when=[], then=[e.set_discount("Small", 3)])
    text = sb.update("s1", {"total": 80}).explain()
    assert "campaign 2 'Small': excluded by its evaluation group: CampaignGaveLowerDiscount" in text
    assert "rule 0 '3 off': conditions held, effects dropped (campaign excluded)" in text


def test_a_budget_failure_names_the_effect() -> None:
    sb = Sandbox(now=NOW)
    budget = sb.campaign("Budget", limits=[Limit("setDiscount", 10)])
    budget.rule("big", when=[], then=[e.set_discount("big", 20)])
    text = sb.update("s1", {"total": 80}).explain()
    assert "rule 0 'big': did not fire: effect 0 could not be applied: " in text
    assert "budget" in text


def test_closing_says_the_counters_moved_and_a_dry_run_says_they_did_not() -> None:
    sb = shop()
    payload = {"profileId": "p1", "coupon": "XMAS-2021", "total": 80, "state": "closed"}
    assert "dry run: nothing was stored" in sb.update("s1", payload, dry=True).explain()
    assert "committed to the counters" in sb.update("s1", payload).explain()
    empty = sb.update("s2", {"total": 1, "state": "closed"}).explain()
    assert "no limit counter moved" in empty


@pytest.mark.parametrize("how", ["cancel", "reopen"])
def test_cancel_and_reopen_list_what_was_rolled_back(how: str) -> None:
    sb = shop()
    closed(sb)
    state = sb.update("s1", {"state": "cancelled"}) if how == "cancel" else sb.reopen("s1")
    text = state.explain()
    assert "no campaigns" not in text
    assert "rolled back what the close committed" in text
    assert "coupon 'XMAS-2021' (campaign 1, rule '10% off carts over 50')" in text
    assert "discount '10% off' 8.00" in text
    assert "total discount rolled back 8.00" in text
    assert [e.effect_type.value for e in state.rollbacks] == ["rollbackCoupon", "rollbackDiscount"]


def test_a_return_lists_the_discount_share_rolled_back() -> None:
    sb = shop()
    closed(sb)
    text = sb.return_items("s1", [{"position": 0, "quantity": 1}]).explain()
    assert "rolled back for the returned items:" in text
    assert "discount '10% off' 4.00" in text


def test_cancelling_an_open_session_says_there_was_nothing_to_roll_back() -> None:
    sb = shop()
    sb.update("s1", NewCustomerSession(profile_id="p1", total=Decimal("80")))
    text = sb.update("s1", {"state": "cancelled"}).explain()
    assert "nothing to roll back" in text
    assert "no campaigns" not in text


def test_an_unknown_code_effect_prints_without_a_fake_campaign() -> None:
    state = shop().update("s1", {"coupon": "NOPE-1"})
    (effect,) = state.effects_of("rejectCoupon")
    assert str(effect) == "rejectCoupon(value=NOPE-1, rejectionReason=CouponNotFound)"
