"""sandbox.plots: each call returns a Figure whose content (labels, bars, titles) says
what was plotted. Content, not pixels; the Agg backend draws nothing on screen."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox import IntegrationState, Limit, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sandbox import plots  # noqa: E402

NOW = "2026-12-01T10:00:00Z"


def shop() -> Sandbox:
    sb = Sandbox(now=NOW)
    ten = sb.campaign(
        "Ten off",
        limits=[Limit("redeemCoupon", 1, entities=["Profile"]), Limit("setDiscount", 20)],
    )
    ten.coupon("TEN-OFF")
    ten.rule(
        "10% off over 50",
        when=[c.coupon_valid, c.total_at_least(50)],
        then=[e.set_discount("10%", percent=10)],
    )
    shoes = sb.campaign("Shoes", limits=[Limit("setDiscountEffect", 5)])
    shoes.rule("20% off shoes", when=[c.has_item(category="shoes")], then=[])
    return sb


def evaluated(sb: Sandbox) -> list[IntegrationState]:
    """Four sessions: 8.00 off (10% of 80), a coupon below the threshold, two unknown codes."""
    sessions = [
        {"profileId": "p1", "coupon": "TEN-OFF", "total": 80},
        {"profileId": "p2", "coupon": "TEN-OFF", "total": 30},
        {"profileId": "p3", "coupon": "NOPE-1", "total": 100},
        {"profileId": "p4", "coupon": "NOPE-2", "total": 40},
    ]
    return [sb.update(f"s{i}", s, dry=True) for i, s in enumerate(sessions)]


def heights(ax: object) -> list[float]:
    return [p.get_height() for p in ax.patches]  # type: ignore[attr-defined]


def widths_by_label(ax: object) -> dict[str, float]:
    labels = [t.get_text() for t in ax.get_yticklabels()]  # type: ignore[attr-defined]
    bars = ax.containers[-1]  # type: ignore[attr-defined]
    return {label: bar.get_width() for label, bar in zip(labels, bars, strict=True)}


def test_discount_distribution_counts_every_session_once() -> None:
    fig = plots.discount_distribution(evaluated(shop()), bins=5)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "total discount per session"
    assert ax.get_ylabel() == "sessions"
    assert len(ax.patches) == 5
    assert sum(heights(ax)) == 4
    assert ax.get_title() == "Discounts over 4 sessions (1 got one)"


def test_paid_before_and_after_draws_both_totals_for_every_session() -> None:
    fig = plots.paid_before_and_after(evaluated(shop()), bins=4)
    (ax,) = fig.axes
    assert len(ax.patches) == 2 * 4
    assert sum(heights(ax)) == 2 * 4  # each of the 4 sessions, before and after
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "before discounts",
        "after discounts",
    ]
    assert ax.get_xlabel() == "amount the customer pays"
    assert "discounts total 8.00" in ax.get_title()


def test_rejection_reasons_are_counted_most_frequent_on_top() -> None:
    fig = plots.rejection_reasons(evaluated(shop()))
    (ax,) = fig.axes
    assert widths_by_label(ax) == {"CouponRejectedByCondition": 1, "CouponNotFound": 2}
    top = ax.get_yticklabels()[-1].get_text()
    assert top == "CouponNotFound"
    assert ax.get_xlabel() == "rejected codes"
    assert ax.get_title() == "Rejection reasons (3 rejected codes)"


def test_rejection_reasons_of_no_rejections_say_so() -> None:
    fig = plots.rejection_reasons([])
    assert not fig.axes[0].patches
    assert fig.axes[0].get_title() == "No code was rejected"


def test_rules_fired_shows_every_rule_including_those_that_never_fired() -> None:
    fig = plots.rules_fired(evaluated(shop()))
    (ax,) = fig.axes
    assert widths_by_label(ax) == {"Shoes: 20% off shoes": 0, "Ten off: 10% off over 50": 1}
    assert ax.get_xlabel() == "sessions in which the rule fired"
    assert ax.get_title() == "Rules fired over 4 sessions"


def test_limit_usage_shows_each_counter_against_its_limit() -> None:
    sb = shop()
    sb.update("s1", {"profileId": "p1", "coupon": "TEN-OFF", "total": 80, "state": "closed"})
    fig = plots.limit_usage(sb)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # p1's one redemption (full), the 20 budget with 8.00 spent, the untouched effect count
    assert labels == [
        "Shoes: setDiscountEffect <= 5 (campaign-wide)",
        "Ten off: setDiscount (campaign-wide)",
        "Ten off: redeemCoupon (Profile p1)",
    ]
    used = ax.containers[-1]
    assert [round(bar.get_width(), 2) for bar in used] == [0.0, 0.4, 1.0]
    assert [t.get_text() for t in ax.texts] == ["0 / 5", "8.00 / 20", "1 / 1"]
    assert len(ax.patches) == 2 * 3  # the limit's full room behind each counter
    assert ax.get_xlabel() == "share of the limit used"
    assert ax.get_title() == "Limits at 2026-12-01 10:00 UTC"


def test_plots_draw_into_the_callers_axes_and_leave_that_figure_open() -> None:
    fig, (left, right) = plt.subplots(1, 2)
    try:
        states = evaluated(shop())
        assert plots.discount_distribution(states, ax=left) is fig
        assert plots.rules_fired(states, ax=right) is fig
        assert fig.number in plt.get_fignums()
    finally:
        plt.close(fig)


def test_figures_made_here_are_not_left_open_in_pyplot() -> None:
    before = set(plt.get_fignums())
    plots.discount_distribution(evaluated(shop()))
    assert set(plt.get_fignums()) == before


def test_totals_are_money_not_floats_in_titles() -> None:
    sb = Sandbox(now=NOW)
    sb.campaign("Third").rule(
        "a third off", when=[], then=[e.set_discount("1/3", percent=Decimal("33.33"))]
    )
    states = [sb.update(f"s{i}", {"total": 10}, dry=True) for i in range(3)]
    assert "discounts total 9.99" in plots.paid_before_and_after(states).axes[0].get_title()
