"""Fixed twin of `../voucher_after_cancel.py`: a voucher pays only for a customer with an order kept.

The same rules and property as the planted bug, with the mistake fixed; `fuzz` finds nothing.
"""

from sandbox import IntegrationState, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    voucher = sb.campaign("Voucher")
    voucher.rule(
        "20 off with a voucher",
        when=[c.coupon_valid, c.closed_sessions_at_least(1)],
        then=[e.set_discount("Voucher 20", 20)],
    )
    earn = sb.campaign("Big order voucher")
    earn.rule(
        "a voucher for orders of 100",
        when=[c.profile_present, c.total_at_least(100)],
        then=[
            e.create_coupon(
                pattern="VOUCHER-####", recipient=lambda ctx: ctx.profile_id, campaign="Voucher"
            )
        ],
    )
    return sb


def property_vouchers_pay_only_customers_with_a_kept_order(
    state: IntegrationState, sb: Sandbox
) -> bool:
    """A voucher gives its 20 only to a customer with another order kept."""
    if "Voucher 20" not in state.discounts:
        return True
    kept = (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED)
    return any(
        stored.state in kept
        and stored.submitted.profile_id == state.session.profile_id
        and stored.session_id != state.session_id
        for stored in sb.sessions.values()
    )
