"""Rich display for Jupyter: small HTML tables, every user string escaped."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.state import Effect, IntegrationState

__all__ = ["integration_state_html"]

_GREEN, _RED, _AMBER = "#1a7f37", "#cf222e", "#9a6700"
_COLOURS = {
    EffectType.ACCEPT_COUPON: _GREEN,
    EffectType.ACCEPT_REFERRAL: _GREEN,
    EffectType.REJECT_COUPON: _RED,
    EffectType.REJECT_REFERRAL: _RED,
    EffectType.ROLLBACK_COUPON: _AMBER,
    EffectType.ROLLBACK_REFERRAL: _AMBER,
    EffectType.ROLLBACK_DISCOUNT: _AMBER,
}
_CELL = "padding:2px 8px;text-align:left;vertical-align:top"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def integration_state_html(state: IntegrationState) -> str:
    """A heading, an effects table, then why rules did not fire (or what was rolled back)."""
    names = {c.campaign_id: c.name for c in state.trace}
    rows = "".join(_effect_row(effect, names) for effect in state.effects)
    table = (
        "<table style='border-collapse:collapse;margin:4px 0'>"
        f"<thead><tr>{''.join(f'<th style={_CELL!r}>{h}</th>' for h in _HEADINGS)}</tr></thead>"
        f"<tbody>{rows or f'<tr><td colspan=4 style={_CELL!r}><i>no effects</i></td></tr>'}"
        "</tbody></table>"
    )
    return (
        "<div class='promo-sandbox-state' style='font-family:sans-serif;font-size:13px'>"
        f"{_heading(state)}{table}{_why(state)}</div>"
    )


_HEADINGS = ("effect", "campaign", "rule", "props")


def _heading(state: IntegrationState) -> str:
    s = state.session
    codes = "".join(
        [f", coupon <code>{_esc(code)}</code>" for code in s.coupon_codes or ()]
        + ([f", referral <code>{_esc(s.referral_code)}</code>"] if s.referral_code else [])
    )
    state_name = s.state.value if s.state is not None else "open"
    parts = [f"<b>session {_esc(state.session_id)}</b> ({_esc(state_name)})"]
    parts.append(f"total {_esc(s.effective_total)}{codes}")
    rollbacks = state.rollbacks
    if rollbacks:
        back = sum(
            (e.props["value"] for e in rollbacks if e.effect_type is EffectType.ROLLBACK_DISCOUNT),
            Decimal(0),
        )
        parts.append(f"rolled back {len(rollbacks)} effect(s), discounts {_esc(back)}")
    else:
        parts.append(
            f"discount {_esc(state.total_discount)}, after discounts {_esc(state.discounted_total)}"
        )
    dry = (
        f" <span style='color:{_AMBER}'><i>[dry run: nothing stored]</i></span>"
        if state.dry
        else ""
    )
    return f"<div>{', '.join(parts)}{dry}</div>"


def _effect_row(effect: Effect, names: dict[int, str]) -> str:
    colour = _COLOURS.get(effect.effect_type, "inherit")
    props = ", ".join(f"{_esc(k)}={_esc(v)}" for k, v in effect.props.items())
    if effect.campaign_id < 0:
        campaign = "&ndash;"
    elif effect.campaign_id in names:
        campaign = f"{effect.campaign_id} {_esc(names[effect.campaign_id])}"
    else:
        campaign = _esc(effect.campaign_id)
    return (
        f"<tr><td style='{_CELL};color:{colour}'><b>{_esc(effect.effect_type.value)}</b></td>"
        f"<td style={_CELL!r}>{campaign}</td><td style={_CELL!r}>{_esc(effect.rule_name)}</td>"
        f"<td style={_CELL!r}>{props}</td></tr>"
    )


def _why(state: IntegrationState) -> str:
    items: list[str] = []
    for campaign in state.trace:
        name = _esc(campaign.name)
        if campaign.skipped:
            items.append(f"<li>{name}: not evaluated ({_esc(campaign.skipped)})</li>")
            continue
        if campaign.excluded:
            items.append(
                f"<li>{name}: excluded by its evaluation group ({_esc(campaign.excluded)})</li>"
            )
        items.extend(
            f"<li>{name} / {_esc(rule.title)}: {_esc(rule.failure.details)}</li>"
            for rule in campaign.rules
            if not rule.fired and rule.failure is not None
        )
    if not state.trace:
        items = [
            f"<li>{_esc(r.campaign_name)} / {_esc(r.rule_name)}: {_esc(r.details)}</li>"
            for r in state.rule_failure_reasons
        ]
    if not items:
        return ""
    return f"<details><summary>why rules did not fire ({len(items)})</summary><ul>{''.join(items)}</ul></details>"
