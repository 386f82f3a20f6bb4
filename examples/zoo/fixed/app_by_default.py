"""Fixed twin of `../app_by_default.py`: a session without a channel is not the app.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    app = sb.campaign("App week")
    app.rule(
        "20% in the app",
        when=[c.attribute_equals("channel", "app")],
        then=[e.set_discount("App 20%", percent=20)],
    )
    return sb


def property_app_discount_only_in_the_app(state: IntegrationState) -> bool:
    """Only sessions that say they come from the app get the app discount."""
    attributes = state.session.attributes or {}
    return "App 20%" not in state.discounts or attributes.get("channel") == "app"
