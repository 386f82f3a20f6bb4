"""Planted bug: "once per device" written as once per profile.

The welcome offer (15% with the public code WELCOME, on a device the shop has not seen)
should be redeemed once per device, whatever account is used. The limit is per Profile,
so one phone that signs up a second account closes a second welcome order. Needs
sessions that carry identifiers, the same device coming back under another profile.
"""

from sandbox import IntegrationState, Limit, Sandbox, SessionState
from sandbox import conditions as c
from sandbox import effects as e


def build() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    welcome = sb.campaign(
        "Welcome",
        limits=[Limit("redeemCoupon", 1, entities=["Profile"])],  # the bug: ["Identifier"]
    )
    welcome.coupon("WELCOME")
    welcome.rule(
        "15% on a new device",
        when=[c.coupon_valid, c.identifier_present()],
        then=[e.set_discount("Welcome 15%", percent=15)],
    )
    return sb


def property_one_welcome_per_device(state: IntegrationState, sb: Sandbox) -> bool:
    """No device (identifier) redeems the welcome code in two orders that were kept."""
    seen: dict[str, int] = {}
    kept = (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED)
    for stored in sb.sessions.values():
        redeemed = any(e.effect_type.value == "acceptCoupon" for e in stored.effects)
        if stored.state in kept and redeemed:
            for device in stored.submitted.identifiers or ():
                seen[device] = seen.get(device, 0) + 1
    return all(n <= 1 for n in seen.values())
