"""Planted bug: an app-only offer that takes a missing channel for the app.

"20% off in the app" reads the session attribute `channel` with a default of "app", so
every session that sends no channel (the web shop's integration never did) gets the app
discount too. Needs sessions with and without session attributes.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    app = sb.campaign("App week")
    app.rule(
        "20% in the app",
        when=[lambda ctx: ctx.attributes.get("channel", "app") == "app"],  # the bug: no default
        then=[e.set_discount("App 20%", percent=20)],
    )
    return sb


def property_app_discount_only_in_the_app(state: IntegrationState) -> bool:
    """Only sessions that say they come from the app get the app discount."""
    attributes = state.session.attributes or {}
    return "App 20%" not in state.discounts or attributes.get("channel") == "app"
