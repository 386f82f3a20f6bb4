"""Rich display for Jupyter: small self-contained HTML, every user string escaped.

Each renderer is registered for its class (``sandbox._html.renders``); a model's
``_repr_html_`` asks the registry, so the models need not import this module. Plain
``repr`` stays the attrs repr. :class:`~sandbox.state.Explanation`, what
``IntegrationState.explain()`` returns, renders as tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox._html import (
    AMBER,
    CELL,
    GREEN,
    GREY,
    RED,
    box,
    code,
    coloured,
    esc,
    fold,
    pairs,
    plain,
    renders,
    section,
    table,
)
from sandbox.conditions import as_condition
from sandbox.core import LimitCounter, Sandbox
from sandbox.coverage import REASONS, Coverage
from sandbox.models import NewCustomerSession, NewCustomerSessionV2, SessionState, wire_name
from sandbox.profiles import CustomerProfile
from sandbox.rules import Campaign
from sandbox.sessions import StoredSession
from sandbox.state import (
    EXCLUSION_REASONS,
    CampaignTrace,
    Effect,
    Explanation,
    IntegrationState,
    ProfileState,
    RuleTrace,
    effect_phrase,
)
from sandbox.talon import EffectType

if TYPE_CHECKING:
    from sandbox.rules import Limit

__all__ = [
    "Explanation",
    "campaign_html",
    "effect_spec_text",
    "explanation_html",
    "integration_state_html",
    "sandbox_html",
    "session_html",
    "stored_session_html",
]

_COLOURS = {
    EffectType.ACCEPT_COUPON: GREEN,
    EffectType.ACCEPT_REFERRAL: GREEN,
    EffectType.REJECT_COUPON: RED,
    EffectType.REJECT_REFERRAL: RED,
    EffectType.ROLLBACK_COUPON: AMBER,
    EffectType.ROLLBACK_REFERRAL: AMBER,
    EffectType.ROLLBACK_DISCOUNT: AMBER,
}
_CODE_OUTCOMES = (
    EffectType.ACCEPT_COUPON,
    EffectType.REJECT_COUPON,
    EffectType.ACCEPT_REFERRAL,
    EffectType.REJECT_REFERRAL,
)


# ---------------------------------------------------------------------------
# IntegrationState


def integration_state_html(state: IntegrationState) -> str:
    """A heading, an effects table, then why rules did not fire (or what was rolled back)."""
    names = {c.campaign_id: c.name for c in state.trace}
    return (
        "<div class='promo-sandbox-state' style='font-family:sans-serif;font-size:13px'>"
        f"{_heading(state)}{_effects_table(state.effects, names)}{_why(state)}</div>"
    )


_HEADINGS = ("effect", "campaign", "rule", "props")


def _effects_table(effects: Sequence[Effect], names: Mapping[int, str]) -> str:
    rows = "".join(_effect_row(effect, names) for effect in effects)
    return (
        "<table style='border-collapse:collapse;margin:4px 0'>"
        f"<thead><tr>{''.join(f'<th style={CELL!r}>{h}</th>' for h in _HEADINGS)}</tr></thead>"
        f"<tbody>{rows or f'<tr><td colspan=4 style={CELL!r}><i>no effects</i></td></tr>'}"
        "</tbody></table>"
    )


def _heading(state: IntegrationState) -> str:
    s = state.session
    codes = "".join(
        [f", coupon <code>{esc(code)}</code>" for code in s.coupon_codes or ()]
        + ([f", referral <code>{esc(s.referral_code)}</code>"] if s.referral_code else [])
    )
    state_name = s.state.value if s.state is not None else "open"
    parts = [f"<b>session {esc(state.session_id)}</b> ({esc(state_name)})"]
    parts.append(f"total {esc(s.effective_total)}{codes}")
    rollbacks = state.rollbacks
    if rollbacks:
        back = sum(
            (e.props["value"] for e in rollbacks if e.effect_type is EffectType.ROLLBACK_DISCOUNT),
            Decimal(0),
        )
        parts.append(f"rolled back {len(rollbacks)} effect(s), discounts {esc(back)}")
    else:
        parts.append(
            f"discount {esc(state.total_discount)}, after discounts {esc(state.discounted_total)}"
        )
    dry = (
        f" <span style='color:{AMBER}'><i>[dry run: nothing stored]</i></span>" if state.dry else ""
    )
    return f"<div>{', '.join(parts)}{dry}</div>"


def _effect_row(effect: Effect, names: Mapping[int, str]) -> str:
    colour = _COLOURS.get(effect.effect_type, "inherit")
    props = ", ".join(f"{esc(k)}={esc(v)}" for k, v in effect.props.items())
    if effect.campaign_id < 0:
        campaign = "&ndash;"
    elif effect.campaign_id in names:
        campaign = f"{effect.campaign_id} {esc(names[effect.campaign_id])}"
    else:
        campaign = esc(effect.campaign_id)
    return (
        f"<tr><td style='{CELL};color:{colour}'><b>{esc(effect.effect_type.value)}</b></td>"
        f"<td style={CELL!r}>{campaign}</td><td style={CELL!r}>{esc(effect.rule_name)}</td>"
        f"<td style={CELL!r}>{props}</td></tr>"
    )


def _why(state: IntegrationState) -> str:
    items: list[str] = []
    for campaign in state.trace:
        name = esc(campaign.name)
        if campaign.skipped:
            items.append(f"<li>{name}: not evaluated ({esc(campaign.skipped)})</li>")
            continue
        if campaign.excluded:
            items.append(
                f"<li>{name}: excluded by its evaluation group ({esc(campaign.excluded)})</li>"
            )
        items.extend(
            f"<li>{name} / {esc(rule.title)}: {esc(rule.failure.details)}</li>"
            for rule in campaign.rules
            if not rule.fired and rule.failure is not None
        )
    if not state.trace:
        items = [
            f"<li>{esc(r.campaign_name)} / {esc(r.rule_name)}: {esc(r.details)}</li>"
            for r in state.rule_failure_reasons
        ]
    if not items:
        return ""
    return f"<details><summary>why rules did not fire ({len(items)})</summary><ul>{''.join(items)}</ul></details>"


# ---------------------------------------------------------------------------
# Explanation


def explanation_html(state: IntegrationState) -> str:
    """Codes accepted and rejected, then each campaign's rules: fired or why not."""
    parts = [_heading(state)]
    codes = [_code_row(e) for e in state.effects if e.effect_type in _CODE_OUTCOMES]
    if codes:
        parts.append(section("codes", table(("code", "outcome", "reason", "details"), codes)))
    if state.action != "update":
        parts.append(_rollback_section(state))
        return box("explanation", "".join(parts))
    if not state.trace:
        parts.append("<div><i>no campaigns to evaluate</i></div>")
    parts.extend(_campaign_explanation(state, campaign) for campaign in state.trace)
    parts.append(_outcome_line(state))
    return box("explanation", "".join(parts))


def _code_row(effect: Effect) -> list[str]:
    kind = "coupon" if effect.effect_type in _CODE_OUTCOMES[:2] else "referral"
    what = f"{kind} {code(effect.value)}"
    if effect.rejection_reason is None:
        return [what, coloured("accepted", GREEN, bold=True), "", ""]
    return [
        what,
        coloured("rejected", RED, bold=True),
        esc(effect.rejection_reason),
        esc(effect.props.get("details", "")),
    ]


def _campaign_explanation(state: IntegrationState, campaign: CampaignTrace) -> str:

    head = f"campaign {campaign.campaign_id} {esc(campaign.name)}"
    if campaign.skipped:
        return (
            f"<div style='margin-top:6px'><b>{head}</b>: "
            f"{coloured('not evaluated', GREY)} ({esc(campaign.skipped)})</div>"
        )
    note = ""
    if campaign.excluded:
        why = EXCLUSION_REASONS.get(campaign.excluded, "")
        note = ": " + coloured(
            f"excluded by its evaluation group: {esc(campaign.excluded)}"
            + (f" ({esc(why)})" if why else ""),
            AMBER,
        )
    rows = [_rule_row(state, campaign, rule) for rule in campaign.rules]
    headings = ("rule", "title", "outcome", "why not", "values seen", "effects")
    return (
        f"<div style='margin-top:6px'><b>{head}</b>{note}"
        f"{table(headings, rows, empty='no rules')}</div>"
    )


def _rule_row(state: IntegrationState, campaign: CampaignTrace, rule: RuleTrace) -> list[str]:

    cells = [esc(rule.index), esc(rule.title)]
    if rule.fired:
        gave = [
            esc(effect_phrase(e))
            for e in state.effects
            if e.campaign_id == campaign.campaign_id
            and e.rule_index == rule.index
            and e.effect_type not in _CODE_OUTCOMES
        ]
        return [*cells, coloured("fired", GREEN, bold=True), "", "", "<br>".join(gave)]
    failure = rule.failure
    not_fired = coloured("did not fire", RED, bold=True)
    if failure is None:
        return [*cells, not_fired, "", "", ""]
    if campaign.excluded and failure.condition_index is None and failure.effect_index is None:
        dropped = coloured("conditions held, effects dropped", AMBER, bold=True)
        return [*cells, dropped, "campaign excluded", "", ""]
    if failure.condition_index is not None:
        described, seen = _split_seen(failure.details)
        why = f"condition {failure.condition_index} failed: {esc(described)}"
        return [*cells, not_fired, why, esc(seen), ""]
    if failure.effect_index is not None:
        why = f"effect {failure.effect_index} could not be applied: {esc(failure.details)}"
        return [*cells, not_fired, why, "", ""]
    return [*cells, not_fired, esc(failure.details), "", ""]


def _split_seen(details: str) -> tuple[str, str]:
    """``"cart total >= 50 (saw total=30)"`` -> ``("cart total >= 50", "total=30")``.

    The engine appends what a failing condition read as ``(saw ...)``; details
    without it come back whole, with no values.
    """
    described, marker, seen = details.rpartition(" (saw ")
    if not marker or not seen.endswith(")"):
        return details, ""
    return described, seen[:-1]


def _outcome_line(state: IntegrationState) -> str:

    lines = []
    if state.total_discount:
        lines.append(
            f"total discount <b>{esc(state.total_discount)}</b>, "
            f"total after discounts <b>{esc(state.discounted_total)}</b>"
        )
    if state.dry:
        lines.append(coloured("dry run: nothing was stored and no counter moved", AMBER))
    elif state.session.state is SessionState.CLOSED:
        if state.accepted_coupons or state.accepted_referrals or state.discounts:
            lines.append("closed: the accepted codes and discounts are committed to the counters")
        else:
            lines.append("closed: no code accepted and no discount given, so no counter moved")
    return "".join(f"<div style='margin-top:6px'>{line}</div>" for line in lines)


def _rollback_section(state: IntegrationState) -> str:

    rollbacks = state.rollbacks
    if not rollbacks:
        return "<div style='margin-top:6px'><i>nothing to roll back</i></div>"
    where = (
        "rolled back for the returned items"
        if state.session.state is SessionState.PARTIALLY_RETURNED
        else "rolled back what the close committed"
    )
    rows = [
        [
            coloured(esc(e.effect_type.value), AMBER, bold=True),
            esc(effect_phrase(e)),
            esc(e.campaign_id),
            esc(e.rule_name),
        ]
        for e in rollbacks
    ]
    return section(where, table(("effect", "what", "campaign", "rule"), rows))


# ---------------------------------------------------------------------------
# Sessions (generic over attrs fields, so a V2 session model renders too)


def session_html(session: Any, *, title: str | None = None) -> str:
    """Scalar fields as a list, each list of models (the cart) as a table, then the totals."""
    cls = type(session)
    scalars: list[tuple[str, str]] = []
    tables: list[str] = []
    for field in attrs.fields(cls):
        value = getattr(session, field.name)
        if value is None:
            continue
        label = _wire(field)
        if _is_models(value):
            tables.append(section(label, _models_table(value)))
        elif isinstance(value, Mapping) and value and all(_is_model(v) for v in value.values()):
            tables.append(section(label, _models_table(list(value.values()), keys=list(value))))
        else:
            scalars.append((label, esc(plain(value))))
    totals = [
        (name.replace("_", " "), f"<b>{esc(getattr(session, name))}</b>")
        for name in _total_properties(cls)
    ]
    heading = f"<b>{esc(title or cls.__name__)}</b>"
    body = heading + pairs(scalars) + "".join(tables)
    if totals:
        body += section("totals", pairs(totals))
    return box("session", body)


def _wire(field: attrs.Attribute[Any]) -> str:

    return wire_name(field) if "wire" in field.metadata else field.name


def _is_model(value: Any) -> bool:
    return attrs.has(type(value))


def _is_models(value: Any) -> bool:
    return isinstance(value, tuple | list) and bool(value) and all(_is_model(v) for v in value)


def _models_table(items: Sequence[Any], *, keys: Sequence[str] | None = None) -> str:
    """One row per model; a column for each field some row has, plus line totals."""
    cls = type(items[0])
    used = [
        f for f in attrs.fields(cls) if any(getattr(item, f.name) is not None for item in items)
    ]
    headings = (["key"] if keys is not None else ["#"]) + [_wire(f) for f in used]
    extra = _total_properties(cls)
    headings += [name.replace("_", " ") for name in extra]
    rows = []
    for i, item in enumerate(items):
        row = [esc(keys[i] if keys is not None else i)]
        row += [esc(plain(_flat(getattr(item, f.name)))) for f in used]
        row += [esc(getattr(item, name)) for name in extra]
        rows.append(row)
    return table(headings, rows)


def _flat(value: Any) -> Any:
    """A nested model as its non-empty fields, so a cell reads ``name=Boots``."""
    if _is_model(value):
        return {
            f.name: getattr(value, f.name)
            for f in attrs.fields(type(value))
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {k: _flat(v) for k, v in value.items()}
    return value


def _total_properties(cls: type) -> list[str]:
    """The computed totals a model offers (``cart_total``, ``effective_total``, ``line_total``).

    Found by name, not by descriptor type: attrs turns a slotted class's
    ``cached_property`` into a plain slot.
    """
    fields = {f.name for f in attrs.fields(cls)}
    return [
        name
        for name in dir(cls)
        if name.endswith("total")
        and not name.startswith("_")
        and name not in fields
        and not callable(getattr(cls, name, None))
    ]


# ---------------------------------------------------------------------------
# StoredSession


def stored_session_html(stored: StoredSession) -> str:
    """The stored session, its last answer, what its close committed and what is left."""

    state = stored.state.value
    body = [f"<div><b>stored session {esc(stored.session_id)}</b> ({esc(state)})</div>"]
    body.append(session_html(stored.session, title="session as stored"))
    closing = stored.closed_with.effects if stored.closed_with is not None else ()
    last = "last answer (the close, committed)" if closing == stored.effects else "last answer"
    answers = [section(last, _effects_table(stored.effects, {}))]
    if closing and closing != stored.effects:
        answers.append(section("answer at close", _effects_table(closing, {})))
    body.append(fold(f"answers ({len(answers)})", "".join(answers), open_=True))
    committed = [
        [
            esc(c.key.campaign_id),
            esc(_counter_name(c.key.action, c.key.scope, c.key.bucket)),
            esc(c.amount),
        ]
        for c in stored.committed
    ]
    body.append(
        section(
            "committed to the counters",
            table(("campaign", "counter", "amount"), committed, empty="nothing committed"),
        )
    )
    left = [
        [esc(effect_phrase(closing[i]) if i < len(closing) else i), esc(value)]
        for i, value in stored.discounts_left
    ]
    if left:
        body.append(section("discounts still committed", table(("discount", "left"), left)))
    cart = stored.submitted.cart_items or ()
    returned = [
        [esc(pos), esc(cart[pos].sku if pos < len(cart) else ""), esc(back)]
        for pos, back in enumerate(stored.returned)
        if back
    ]
    if returned:
        body.append(section("returned", table(("position", "sku", "quantity"), returned)))
    if stored.closed_with is not None:
        body.append(f"<div>sales still counted for the profile: {esc(stored.sales_left)}</div>")
    return box("stored-session", "".join(body))


def _counter_name(action: str, scope: Iterable[tuple[str, str]], bucket: str | None) -> str:
    return f"{action} ({_scope_text(scope, bucket)})"


def _scope_text(scope: Iterable[tuple[str, str]], bucket: str | None) -> str:
    where = ", ".join(f"{entity} {value}" for entity, value in scope) or "campaign-wide"
    return where + (f", {bucket}" if bucket else "")


# ---------------------------------------------------------------------------
# Sandbox and Campaign


def sandbox_html(sb: Sandbox) -> str:
    """Clock and settings, campaigns, rules, codes with usage, limits with room, sessions."""
    counters = sb.limit_counters()
    settings = sb.settings
    head = pairs(
        [
            ("clock", esc(sb.now.isoformat())),
            (
                "settings",
                esc(
                    f"precision {settings.precision}, rounding {settings.rounding}, "
                    f"partial discounts {'on' if settings.partial_discounts else 'off'}, "
                    f"codes {sb.case_sensitivity}, strict total {'on' if sb.strict_total else 'off'}"
                ),
            ),
            ("sessions", esc(_session_counts(sb)) or "none yet"),
            ("profiles", esc(len(sb.ledger.profiles))),
        ]
    )
    campaigns = sb.campaigns
    rows = [_campaign_row(sb, c) for c in campaigns]
    body = [
        "<div><b>Sandbox</b></div>",
        head,
        section(
            f"campaigns ({len(campaigns)})",
            table(
                ("id", "name", "state", "window", "group", "rules", "coupons", "referrals"),
                rows,
                empty="no campaigns yet: sb.campaign(name)",
            ),
        ),
        fold(
            f"rules ({sum(len(c.rules) for c in campaigns)})",
            _rules_table(campaigns),
            open_=True,
        ),
        section("coupons", _coupons_table(sb, campaigns)),
        section("referrals", _referrals_table(sb, campaigns)),
        section("limits", _limits_table(campaigns, counters)),
    ]
    return box("sandbox", "".join(body))


def campaign_html(campaign: Campaign) -> str:
    """One campaign: state and window, limits with room, rules, coupons and referrals."""
    sb = campaign._sandbox
    counters = [c for c in sb.limit_counters() if c.campaign_id == campaign.id]
    group = campaign.group
    head = pairs(
        [
            ("state", _running(sb, campaign)),
            ("window", esc(_window(campaign))),
            ("group", esc(f"{group.name} ({group.mode.value})" if group else "none (stackable)")),
        ]
    )
    body = [
        f"<div><b>campaign {campaign.id} {esc(campaign.name)}</b></div>",
        head,
        section("rules", _rules_table([campaign])),
        section("limits", _limits_table([campaign], counters)),
        section("coupons", _coupons_table(sb, [campaign])),
        section("referrals", _referrals_table(sb, [campaign])),
    ]
    return box("campaign", "".join(body))


def _session_counts(sb: Sandbox) -> str:
    counts: dict[str, int] = {}
    for stored in sb.sessions.values():
        counts[stored.state.value] = counts.get(stored.state.value, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _running(sb: Sandbox, campaign: Campaign) -> str:
    state = campaign.state.value
    if campaign.is_running(sb.now):
        return coloured(f"{esc(state)}, running", GREEN)
    if state == "enabled":
        return coloured(f"{esc(state)}, not running at {esc(sb.now.isoformat())}", AMBER)
    return coloured(esc(state), GREY)


def _window(campaign: Campaign) -> str:
    start = campaign.start.isoformat() if campaign.start else "always"
    end = campaign.end.isoformat() if campaign.end else "open-ended"
    return f"{start} to {end}" if campaign.start or campaign.end else "always"


def _campaign_row(sb: Sandbox, campaign: Campaign) -> list[str]:
    group = campaign.group
    return [
        esc(campaign.id),
        f"<b>{esc(campaign.name)}</b>",
        _running(sb, campaign),
        esc(_window(campaign)),
        esc(f"{group.name} ({group.mode.value})" if group else ""),
        esc(len(campaign.rules)),
        esc(len(campaign.coupons)),
        esc(len(campaign.referrals)),
    ]


def _rules_table(campaigns: Sequence[Campaign]) -> str:
    several = len(campaigns) > 1
    rows = [
        [esc(campaign.name)] * several
        + [
            esc(rule.index),
            f"<b>{esc(rule.title)}</b>",
            "<br>".join(f"{i}: {esc(c.description)}" for i, c in enumerate(rule.conditions))
            or "<i>always</i>",
            "<br>".join(esc(effect_spec_text(effect)) for effect in rule.effects) or "<i>none</i>",
        ]
        for campaign in campaigns
        for rule in campaign.rules
    ]
    headings = ["campaign"] * several + ["#", "rule", "when", "then"]
    return table(headings, rows, empty="no rules yet")


def effect_spec_text(spec: Any) -> str:
    """A rule's effect as the call that made it, callables shown by their source.

    >>> from sandbox import effects as e
    >>> effect_spec_text(e.set_discount_per_item("Shoes", percent=20, where=lambda i: i.category == 'shoes'))
    "set_discount_per_item('Shoes', percent=20, where=i.category == 'shoes')"
    """

    def show(value: Any) -> str:
        if isinstance(value, Decimal):
            return str(value)
        if callable(value):
            return as_condition(value).description
        return repr(value)

    fields = [f.name for f in attrs.fields(type(spec))]
    values = [getattr(spec, name) for name in fields]
    if not fields:
        return repr(spec)
    shown = [show(values[0])]
    shown += [
        f"{n}={show(v)}" for n, v in zip(fields[1:], values[1:], strict=True) if v is not None
    ]
    return f"{getattr(spec, 'builder', type(spec).__name__)}({', '.join(shown)})"


def _used(counter: int, limit: int) -> str:
    return f"{counter} / {limit}" if limit else f"{counter} / unlimited"


def _date(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _coupons_table(sb: Sandbox, campaigns: Sequence[Campaign]) -> str:
    rows = (
        [
            code(view.code),
            esc(campaign.name),
            esc(_used(view.usage_counter, view.usage_limit)),
            esc(_date(view.start_date)),
            esc(_date(view.expiry_date)),
            esc(view.recipient or ""),
        ]
        for campaign in campaigns
        for view in (sb.get_coupon(c) for c in campaign.coupons)
    )
    headings = ("code", "campaign", "used / limit", "starts", "expires", "recipient")
    return table(headings, rows, empty="no coupons")


def _referrals_table(sb: Sandbox, campaigns: Sequence[Campaign]) -> str:
    rows = (
        [
            code(view.code),
            esc(campaign.name),
            esc(view.advocate),
            esc(view.friend or ""),
            esc(_used(view.usage_counter, view.usage_limit)),
            esc(_date(view.start_date)),
            esc(_date(view.expiry_date)),
        ]
        for campaign in campaigns
        for view in (sb.get_referral(r) for r in campaign.referrals)
    )
    headings = ("code", "campaign", "advocate", "friend", "used / limit", "starts", "expires")
    return table(headings, rows, empty="no referrals")


def _limits_table(campaigns: Sequence[Campaign], counters: Sequence[LimitCounter]) -> str:
    """Every limit, with each counter that moved (or its full room when none has)."""
    rows: list[list[str]] = []
    for campaign in campaigns:
        for limit in campaign.limits:
            moved: list[LimitCounter | None] = [
                c for c in counters if c.campaign_id == campaign.id and _counts(c, limit)
            ]
            for counter in moved or [None]:
                rows.append(_limit_row(campaign, limit, counter))
    headings = ("campaign", "limit", "counter", "used", "limit", "remaining")
    return table(headings, rows, empty="no limits")


def _counts(counter: LimitCounter, limit: Limit) -> bool:
    period = limit.period.value if limit.period else None
    return (
        counter.action == limit.action.value
        and counter.period == period
        and tuple(counter.scope) == tuple(e.value for e in limit.entities)
    )


def _limit_row(campaign: Campaign, limit: Limit, counter: LimitCounter | None) -> list[str]:
    cells = [esc(campaign.name), esc(limit.describe())]
    if counter is None:
        return [*cells, "<i>none moved yet</i>", "0", esc(limit.limit), esc(limit.limit)]
    where = _scope_text(counter.scope.items(), counter.bucket)
    remaining = counter.remaining
    colour = RED if not remaining else "inherit"
    return [
        *cells,
        esc(where),
        esc(counter.counter),
        esc(counter.limit),
        coloured(esc(remaining), colour, bold=not remaining),
    ]


def profile_html(profile: CustomerProfile) -> str:
    """A customer profile: its counters, its activity and its attributes."""
    heading = f"<div><b>profile {esc(profile.integration_id or '(anonymous)')}</b></div>"
    facts = pairs(
        [
            ("closed sessions", esc(profile.closed_sessions)),
            ("total sales", esc(profile.total_sales)),
            ("created", esc(_date(profile.created))),
            ("last activity", esc(_date(profile.last_activity))),
        ]
    )
    attributes = table(
        ("attribute", "value"),
        ([esc(k), esc(plain(v))] for k, v in profile.attributes.items()),
        empty="no attributes",
    )
    return box("profile", heading + facts + section("attributes", attributes))


def profile_state_html(state: ProfileState) -> str:
    """A profile update's answer: the profile, then what its rules did (if they ran)."""
    parts = [profile_html(state.profile)]
    if state.evaluation is not None:
        parts.append(integration_state_html(state.evaluation))
    elif not state.dry:
        parts.append("<div><i>rules not run (run_rule_engine=False)</i></div>")
    return box("profile-state", "".join(parts))


def coverage_html(cov: Coverage) -> str:
    """Rule coverage as tables; what never happened is highlighted."""
    never = f"background:#ffebe9;color:{RED}"

    def cell(n: int, text: str) -> str:
        return esc(n) if n else f"<span style='{never}'>{esc(text)}</span>"

    rows = []
    for r in cov.rules.values():
        rows.append(
            [
                esc(r.campaign),
                esc(r.rule),
                "",
                esc(r.evaluated),
                cell(r.fired, "never fired"),
                esc(r.excluded) if r.excluded else "",
            ]
        )
        for index, description in enumerate(r.conditions):
            rows.append(
                [
                    "",
                    "",
                    f"condition {index}: {esc(description)}",
                    "",
                    cell(r.failed_at.get(index, 0), "never failed"),
                    "",
                ]
            )
    rules = table(
        ("campaign", "rule", "condition", "evaluated", "fired / failed", "excluded"),
        rows,
        empty="no rules seen",
        max_rows=500,
    )
    reasons = table(
        ("code", "reason", "produced"),
        (
            [esc(kind), esc(reason), cell(cov.reasons.get((kind, reason), 0), "never")]
            for kind, reason in _all_reasons()
        ),
        max_rows=100,
    )
    heading = f"<div><b>rule coverage</b> over {esc(cov.answers)} answer(s)</div>"
    return box("coverage", heading + rules + section("rejection reasons", reasons))


def _all_reasons() -> list[tuple[str, str]]:

    return list(REASONS)


# ---------------------------------------------------------------------------
# Which renderer shows which class in Jupyter


def _explanation(explanation: Explanation) -> str:
    if explanation.state is None:  # made from text alone: show the text
        return box("explanation", f"<pre>{esc(explanation)}</pre>")
    return explanation_html(explanation.state)


renders(NewCustomerSession, NewCustomerSessionV2)(session_html)
renders(CustomerProfile)(profile_html)
renders(Campaign)(campaign_html)
renders(StoredSession)(stored_session_html)
renders(IntegrationState)(integration_state_html)
renders(ProfileState)(profile_state_html)
renders(Sandbox)(sandbox_html)
renders(Coverage)(coverage_html)
renders(Explanation)(_explanation)
