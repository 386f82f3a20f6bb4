"""Hypothesis strategies for promo-sandbox sessions.

Importing this package registers ``st.from_type`` for ``NewCustomerSession``,
``NewCustomerSessionV2`` and ``CartItem``. There is deliberately no Hypothesis entry
point: one would import this package whenever Hypothesis is imported, and a project's
own ``tests/strategies.py`` would then break ``import hypothesis``.

>>> from hypothesis import given
>>> from strategies import sessions
>>> @given(sessions(coupon="XMAS-2021"))
... def test_coupon_is_kept(s):
...     assert s.coupon == "XMAS-2021"
"""

from strategies._flaws import (
    FLAWS,
    Flawed,
    invalid_sessions,
    reachable_flaws,
    unreachable_flaws,
    valid_sessions,
)
from strategies._payloads import VIOLATION_KINDS, InvalidPayload, payloads
from strategies._profiles import ProfileChange, profile_updates
from strategies._sessions import cart_items, sessions

__all__ = [
    "FLAWS",
    "VIOLATION_KINDS",
    "Flawed",
    "InvalidPayload",
    "ProfileChange",
    "SessionLifecycle",
    "cart_items",
    "invalid_sessions",
    "payloads",
    "profile_updates",
    "reachable_flaws",
    "sessions",
    "unreachable_flaws",
    "valid_sessions",
]
from strategies._lifecycle import SessionLifecycle
