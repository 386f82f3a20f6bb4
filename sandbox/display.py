"""Rich display for Jupyter: small HTML tables, every user string escaped."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.state import IntegrationState

__all__ = ["integration_state_html"]

_COLOURS = {
    EffectType.ACCEPT_COUPON: "#1a7f37",
    EffectType.ACCEPT_REFERRAL: "#1a7f37",
    EffectType.REJECT_COUPON: "#cf222e",
    EffectType.REJECT_REFERRAL: "#cf222e",
}


def integration_state_html(state: IntegrationState) -> str:
    """An effects table, then the discount total, then why rules did not fire."""
    esc = html.escape
    rows = []
    for effect in state.effects:
        colour = _COLOURS.get(effect.effect_type, "inherit")
        props = ", ".join(f"{esc(str(k))}={esc(str(v))}" for k, v in effect.props.items())
        rows.append(
            f"<tr><td style='color:{colour}'><b>{esc(effect.effect_type.value)}</b></td>"
            f"<td>{effect.campaign_id}</td><td>{esc(effect.rule_name)}</td><td>{props}</td></tr>"
        )
    failures = "".join(
        f"<li>{esc(r.campaign_name)} / {esc(r.rule_name)}: {esc(r.details)}</li>"
        for r in state.rule_failure_reasons
    )
    s = state.session
    head = (
        f"<b>session {esc(state.session_id)}</b> ({esc(s.state.value)}), total {s.effective_total}"
        f", discount {state.total_discount}, after discounts {state.discounted_total}"
        + (" <i>[dry run]</i>" if state.dry else "")
    )
    table = (
        "<table><thead><tr><th>effect</th><th>campaign</th><th>rule</th><th>props</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=4><i>no effects</i></td></tr>'}</tbody></table>"
    )
    why = (
        f"<details><summary>rules that did not fire</summary><ul>{failures}</ul></details>"
        if failures
        else ""
    )
    return f"<div>{head}{table}{why}</div>"
