"""One-call plots of many evaluated sessions, or of a sandbox's limit counters.

Each function returns a matplotlib ``Figure``; in Jupyter a figure as the
last line of a cell shows once, and ``fig.savefig("x.png")`` works anywhere.
matplotlib comes with the ``notebook`` extra (``pip install
'promo-sandbox[notebook]'``) and is imported only when a function is called.

>>> from sandbox import plots                                    # doctest: +SKIP
>>> states = [sb.update(f"s{i}", s, dry=True) for i, s in enumerate(sessions)]
>>> plots.discount_distribution(states)
<Figure size 640x320 with 1 Axes>
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sandbox.core import LimitCounter, Sandbox
    from sandbox.state import IntegrationState

__all__ = [
    "discount_distribution",
    "limit_usage",
    "paid_before_and_after",
    "rejection_reasons",
    "rules_fired",
]

_OURS = "promo-sandbox-axes"
_BEFORE, _AFTER, _USED, _ROOM = "#8c959f", "#1a7f37", "#0969da", "#d0d7de"


def discount_distribution(
    states: Iterable[IntegrationState], *, bins: int = 20, ax: Axes | None = None
) -> Figure:
    """A histogram of the total discount each session got."""
    found = list(states)
    discounts = [float(s.total_discount) for s in found]
    ax = _axes(ax)
    ax.hist(discounts, bins=bins, color=_AFTER)
    ax.set_xlabel("total discount per session")
    ax.set_ylabel("sessions")
    given = sum(1 for d in discounts if d)
    ax.set_title(f"Discounts over {len(found)} sessions ({given} got one)")
    return _done(ax)


def paid_before_and_after(
    states: Iterable[IntegrationState], *, bins: int = 20, ax: Axes | None = None
) -> Figure:
    """What customers pay: the session total before discounts beside what is left after them."""
    found = list(states)
    before = [float(s.session.effective_total) for s in found]
    after = [float(s.discounted_total) for s in found]
    ax = _axes(ax)
    ax.hist(
        [before, after],
        bins=bins,
        color=[_BEFORE, _AFTER],
        label=["before discounts", "after discounts"],
    )
    ax.set_xlabel("amount the customer pays")
    ax.set_ylabel("sessions")
    saved = sum((s.total_discount for s in found), Decimal(0))
    ax.set_title(f"What {len(found)} customers pay (discounts total {saved})")
    ax.legend()
    return _done(ax)


def rejection_reasons(states: Iterable[IntegrationState], *, ax: Axes | None = None) -> Figure:
    """Talon.One's rejection reasons for coupons and referrals, by count, most frequent on top."""
    reasons: Counter[str] = Counter()
    for state in states:
        reasons.update(state.rejected_coupons.values())
        reasons.update(state.rejected_referrals.values())
    ax = _axes(ax, rows=len(reasons))
    _bars(ax, reasons.most_common(), colour="#cf222e")
    ax.set_xlabel("rejected codes")
    ax.set_title(
        f"Rejection reasons ({sum(reasons.values())} rejected codes)"
        if reasons
        else "No code was rejected"
    )
    return _done(ax)


def rules_fired(states: Iterable[IntegrationState], *, ax: Axes | None = None) -> Figure:
    """Every evaluated rule by the number of sessions it fired in; rules that never fired show 0."""
    fired: Counter[str] = Counter()
    runs = 0
    for state in states:
        runs += 1
        for campaign in state.trace:
            for rule in campaign.rules:
                fired[f"{campaign.name}: {rule.title}"] += rule.fired
    ax = _axes(ax, rows=len(fired))
    _bars(ax, sorted(fired.items(), key=lambda kv: (-kv[1], kv[0])), colour=_USED)
    ax.set_xlabel("sessions in which the rule fired")
    ax.set_title(f"Rules fired over {runs} sessions")
    return _done(ax)


def limit_usage(sb: Sandbox, *, top: int = 25, ax: Axes | None = None) -> Figure:
    """Each limit counter's use as a share of its limit, the fullest on top.

    Counters that have not moved yet show as empty bars, one per limit, so
    every limit appears. Labels give ``used / limit``: a count for
    ``redeemCoupon``/``redeemReferral``/``setDiscountEffect``, money for a
    ``setDiscount`` budget.
    """
    rows = [(_counter_label(c), c.counter, c.limit) for c in sb.limit_counters()]
    moved = {(c.campaign_id, c.action, tuple(c.scope), c.period) for c in sb.limit_counters()}
    for campaign in sb.campaigns:
        for limit in campaign.limits:
            key = (
                campaign.id,
                limit.action.value,
                tuple(e.value for e in limit.entities),
                limit.period.value if limit.period else None,
            )
            if key not in moved:
                rows.append((f"{campaign.name}: {limit.describe()}", Decimal(0), limit.limit))
    rows.sort(key=lambda r: (-(r[1] / r[2] if r[2] else Decimal(1)), r[0]))
    rows = rows[:top]
    ax = _axes(ax, rows=len(rows))
    labels = [r[0] for r in reversed(rows)]
    shares = [float(r[1] / r[2]) if r[2] else 1.0 for r in reversed(rows)]
    ax.barh(labels, [1.0] * len(rows), color=_ROOM)
    ax.barh(labels, shares, color=[_USED if s < 1 else "#cf222e" for s in shares])
    for y, (_, used, room) in enumerate(reversed(rows)):
        ax.text(1.02, y, f"{used} / {room}", va="center")
    ax.set_xlim(0, 1.3)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "25%", "50%", "75%", "100%"])
    ax.set_xlabel("share of the limit used")
    ax.set_title(f"Limits at {sb.now:%Y-%m-%d %H:%M} UTC" if rows else "No limits in this sandbox")
    return _done(ax)


# ---------------------------------------------------------------------------


def _counter_label(counter: LimitCounter) -> str:
    scope = ", ".join(f"{k} {v}" for k, v in counter.scope.items()) or "campaign-wide"
    bucket = f", {counter.bucket}" if counter.bucket else ""
    return f"{counter.campaign_name}: {counter.action} ({scope}{bucket})"


def _axes(ax: Axes | None, *, rows: int = 0) -> Axes:
    """The caller's axes, or new ones tall enough for ``rows`` horizontal bars."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    height = max(3.2, 0.4 * rows + 1.2)
    _, made = plt.subplots(figsize=(6.4, height), layout="constrained")
    made.set_gid(_OURS)
    return made


def _bars(ax: Axes, counts: Sequence[tuple[str, int]], *, colour: str) -> None:
    """Horizontal bars, the first item on top, each labelled with its count."""
    labels = [label for label, _ in reversed(counts)]
    values = [value for _, value in reversed(counts)]
    bars = ax.barh(labels, values, color=colour)
    ax.bar_label(bars, padding=3)
    ax.margins(x=0.15)


def _done(ax: Axes) -> Figure:
    """The axes' figure. One made here is taken off pyplot's list of open figures, so
    Jupyter shows it once (as the cell's value) and a loop of plots keeps no memory;
    the figure of axes the caller passed in is theirs to show."""
    figure = ax.figure.figure  # a subfigure's figure is the whole figure
    if ax.get_gid() == _OURS:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return figure
