"""Planted bug: a voucher earned by an order that was then cancelled.

Orders of 100 or more earn a 20 voucher for the next order. The voucher is created when
the order closes and stays when the order is cancelled (Talon.One keeps created codes
through a rollback), and its rule checks only that the code is valid: a customer who
orders 100, cancels, and orders again pays 20 less for nothing. The promise: a voucher
pays only for a customer with an order kept. Needs a cancel after a close, then the
created code offered to its owner.
"""

from sandbox import IntegrationState, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    voucher = sb.campaign("Voucher")
    voucher.rule(
        "20 off with a voucher",
        when=[c.coupon_valid],  # the bug: c.closed_sessions_at_least(1) missing
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
