"""What a user reads: IntegrationState.explain(), its Jupyter HTML, and Effect's str."""

from decimal import Decimal

import pytest

from sandbox import CartItem, Limit, NewCustomerSession, Sandbox
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


# ---------------------------------------------------------------------------
# Explanation: a str with today's text, rendered as tables in Jupyter

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_explain_is_a_str_with_exactly_the_text_it_always_had() -> None:
    sb = shop()
    text = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}).explain()
    expected = (
        "session 's1' (open), total 80, coupon 'XMAS-2021'\n"
        "  coupon 'XMAS-2021' accepted\n"
        "campaign 1 'Xmas':\n"
        "  rule 0 '10% off carts over 50': fired: discount '10% off' 8.00\n"
        "total discount 8.00, total after discounts 72.00"
    )
    assert isinstance(text, str)
    assert text == expected
    assert str(text) == expected
    assert type(str(text)) is str  # str() gives a plain str, as before
    assert text.splitlines()[0] == "session 's1' (open), total 80, coupon 'XMAS-2021'"


def test_jupyter_gets_html_and_ipython_plain_text_for_a_bare_explain() -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    sb = shop()
    explanation = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 30}).explain()
    bundle, _ = formatters.DisplayFormatter().format(explanation)
    assert "promo-sandbox-explanation" in bundle["text/html"]
    # The text itself, with real line breaks: not a quoted string full of '\n'.
    assert bundle["text/plain"] == str(explanation)
    assert "\\n" not in bundle["text/plain"]
    assert repr(explanation) == repr(str(explanation))  # repr stays str's


def test_explanation_html_names_the_failing_condition_and_the_value_it_saw() -> None:
    sb = shop()
    page = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 30}).explain()
    html = page._repr_html_()
    assert "CouponRejectedByCondition" in html
    assert "did not fire" in html
    assert "condition 1 failed: cart total &gt;= 50" in html
    # the values seen get their own cell, split from the description
    assert "<td style='padding:2px 8px;text-align:left;vertical-align:top'>total=30</td>" in html


def test_explanation_html_shows_fired_rules_with_what_they_gave() -> None:
    sb = shop()
    html = sb.update("s1", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}).explain()
    page = html._repr_html_()
    assert "fired" in page
    assert "discount &#x27;10% off&#x27; 8.00" in page
    assert "total discount <b>8.00</b>, total after discounts <b>72.00</b>" in page


def test_explanation_html_shows_a_campaign_excluded_by_its_group() -> None:
    sb = Sandbox(now=NOW)
    best = sb.group("Best", mode="highestDiscount")
    sb.campaign("Big", group=best).rule("5 off", when=[], then=[e.set_discount("Big", 5)])
    small = sb.campaign("Small", group=best)
    small.rule("3 off", when=[], then=[e.set_discount("Small", 3)])
    page = sb.update("s1", {"total": 80}).explain()._repr_html_()
    assert "excluded by its evaluation group: CampaignGaveLowerDiscount" in page
    assert "conditions held, effects dropped" in page


def test_explanation_html_of_a_cancel_lists_the_rollbacks() -> None:
    sb = shop()
    closed(sb)
    page = sb.update("s1", {"state": "cancelled"}).explain()._repr_html_()
    assert "rolled back what the close committed" in page
    assert page.count("rollbackCoupon") == 1
    assert "discount &#x27;10% off&#x27; 8.00" in page
    assert "did not fire" not in page


def test_explanation_html_escapes_names_conditions_and_the_values_seen() -> None:
    sb = Sandbox(now=NOW)
    campaign = sb.campaign(EVIL)
    campaign.rule(
        "<b>vip</b>",
        when=[c.named("tier is <i>vip</i>", lambda ctx: ctx.attributes.get("tier") == "vip")],
        then=[e.set_discount("x", 1)],
    )
    page = sb.update("s1", {"total": 10, "attributes": {"tier": EVIL}}).explain()._repr_html_()
    assert "<script>" not in page
    assert "<b>vip</b>" not in page
    assert "<i>vip</i>" not in page
    assert EVIL_ESCAPED in page  # the campaign name
    assert "attributes[&#x27;tier&#x27;]=&#x27;&lt;script&gt;" in page  # the value seen


def test_an_explanation_survives_pickling_and_one_made_from_text_alone_renders_it() -> None:
    import pickle

    from sandbox.display import Explanation

    text = shop().update("s1", {"total": 80}).explain()
    back = pickle.loads(pickle.dumps(text))
    assert back == text
    assert back._repr_html_() == text._repr_html_()
    alone = Explanation("line <1>\nline 2")
    assert alone._repr_html_().endswith("<pre>line &lt;1&gt;\nline 2</pre></div>")


# ---------------------------------------------------------------------------
# Sessions


def test_session_html_shows_the_cart_as_a_table_with_line_totals_and_the_totals() -> None:
    session = NewCustomerSession(
        profile_id="p1",
        coupon="XMAS-2021",
        cart_items=(
            CartItem(sku="BOOT-1", quantity=2, price=Decimal("30"), category="shoes"),
            CartItem(sku="HAT-1", quantity=1, price=Decimal("7.50")),
        ),
    )
    page = session._repr_html_()
    assert page.count("<tr><td") == 2  # a row per cart item
    assert "BOOT-1" in page
    assert ">60<" in page  # 2 x 30, the first line's total
    assert "cart total" in page
    assert "<b>67.50</b>" in page  # 60 + 7.50
    assert repr(session).startswith("NewCustomerSession(profile_id='p1'")  # plain repr unchanged


def test_session_html_escapes_a_script_in_an_attribute_value() -> None:
    session = NewCustomerSession(
        profile_id="<p&1>",
        attributes={"note": EVIL},
        cart_items=(CartItem(sku="A", quantity=1, price=Decimal(1), attributes={"x": EVIL}),),
    )
    page = session._repr_html_()
    assert "<script>" not in page
    assert page.count(EVIL_ESCAPED) == 2
    assert "&lt;p&amp;1&gt;" in page


def test_the_session_renderer_takes_any_attrs_session_model() -> None:
    import attrs

    from sandbox import AdditionalCost
    from sandbox.display import session_html

    @attrs.frozen
    class OtherSession:  # the shape of a V2 session: a list of codes, costs by name
        coupon_codes: tuple[str, ...]
        cart_items: tuple[CartItem, ...]
        additional_costs: dict[str, AdditionalCost]

        @property
        def cart_item_total(self) -> Decimal:
            return sum((i.line_total for i in self.cart_items), Decimal(0))

    page = session_html(
        OtherSession(
            ("A-CODE", "B-CODE"),
            (CartItem(sku="S1", quantity=3, price=Decimal(2)),),
            {"shipping": AdditionalCost(price=Decimal("4.99"))},
        )
    )
    assert "OtherSession" in page
    assert "A-CODE, B-CODE" in page
    assert "shipping" in page
    assert "4.99" in page
    assert "cart item total" in page
    assert "<b>6</b>" in page


# ---------------------------------------------------------------------------
# StoredSession, Sandbox, Campaign


def test_stored_session_html_shows_state_answer_and_what_is_committed() -> None:
    sb = shop()
    closed(sb)
    stored = sb.get_session("s1")
    page = stored._repr_html_()
    assert "stored session s1</b> (closed)" in page
    assert "acceptCoupon" in page
    assert "redeemCoupon (Profile p1)" in page  # the per-profile limit's counter, +1
    assert "couponUsage (Coupon XMAS-2021)" in page
    assert "discount &#x27;10% off&#x27; 8.00" in page  # 10% of 80, still committed
    assert repr(stored).startswith("StoredSession(session_id='s1'")


def test_stored_session_html_after_cancel_and_return() -> None:
    sb = shop()
    closed(sb)
    sb.update(
        "s2", {"profileId": "p2", "coupon": "XMAS-2021", "cartItems": CART, "state": "closed"}
    )
    sb.update("s1", {"state": "cancelled"})
    assert "nothing committed" in sb.get_session("s1")._repr_html_()
    sb.return_items("s2", [{"position": 0, "quantity": 1}])
    page = sb.get_session("s2")._repr_html_()
    assert "(partially_returned)" in page
    assert "<b>returned</b>" in page
    # half of the 8.00 discount on the 80 cart went back with one of the two items
    assert (
        "discount &#x27;10% off&#x27; 8.00</td><td style='padding:2px 8px;text-align:left;vertical-align:top'>4.00"
        in page
    )


def test_sandbox_html_lists_campaigns_codes_usage_limits_room_and_clock() -> None:
    sb = shop()
    friends = sb.campaign("Friends", limits=[Limit("redeemReferral", 3)])
    friends.referral("REF-1", advocate="adv-1", usage_limit=2)
    closed(sb)
    page = sb._repr_html_()
    assert "2026-12-01T10:00:00+00:00" in page  # the clock
    assert "Xmas" in page
    assert "Friends" in page
    assert "1 / unlimited" in page  # XMAS-2021 used once, no usage limit
    assert "0 / 2" in page  # REF-1 unused, usage limit 2
    assert "adv-1" in page
    assert "redeemCoupon &lt;= 1 (per Profile)" in page
    assert "Profile p1" in page
    # p1 used its one redemption: no room left, shown in red
    assert "<span style='color:#cf222e'><b>0</b></span>" in page
    assert "none moved yet" in page  # the referral limit, untouched
    assert "1 closed" in page
    assert repr(sb).startswith("<Sandbox now=")


def test_sandbox_html_escapes_names_and_cuts_long_tables() -> None:
    sb = Sandbox(now=NOW)
    evil = sb.campaign(EVIL)
    for i in range(60):
        evil.coupon(f"CODE-{i:03}")
    evil.rule("<img src=x>", when=[c.named("<b>when</b>", lambda ctx: True)], then=[])
    page = sb._repr_html_()
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>when</b>" not in page
    assert EVIL_ESCAPED in page
    assert "CODE-049" in page
    assert "CODE-050" not in page
    assert "... and 10 more" in page


def test_campaign_html_shows_rules_limits_and_codes() -> None:
    sb = shop()
    closed(sb)
    campaign = sb.get_campaign("Xmas")
    page = campaign._repr_html_()
    assert "campaign 1 Xmas" in page
    assert "10% off carts over 50" in page
    assert "1: cart total &gt;= 50" in page
    assert "set_discount(&#x27;10% off&#x27;, percent=10)" in page
    assert "XMAS-2021" in page
    assert "Profile p1" in page
    assert repr(campaign).startswith("<Campaign 1 'Xmas'")


@pytest.mark.parametrize(
    "kind", ["state", "explanation", "session", "stored", "sandbox", "campaign"]
)
def test_ipython_bundles_html_beside_the_unchanged_plain_repr(kind: str) -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    sb = shop()
    closed(sb)
    state = sb.update("s2", {"profileId": "p2", "coupon": "XMAS-2021", "total": 80})
    obj = {
        "state": state,
        "explanation": state.explain(),
        "session": state.session,
        "stored": sb.get_session("s1"),
        "sandbox": sb,
        "campaign": sb.get_campaign("Xmas"),
    }[kind]
    bundle, _ = formatters.DisplayFormatter().format(obj)
    assert bundle["text/html"].startswith("<div class='promo-sandbox-")
    if kind != "explanation":
        assert bundle["text/plain"] == repr(obj)
