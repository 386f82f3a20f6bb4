"""Hypothesis strategies for promo-sandbox sessions.

Importing this package registers ``st.from_type`` for ``NewCustomerSession``
and ``CartItem``.

>>> from hypothesis import given
>>> from strategies import sessions
>>> @given(sessions(coupon="XMAS-2021"))
... def test_coupon_is_kept(s):
...     assert s.coupon == "XMAS-2021"
"""

from strategies._sessions import cart_items, sessions

__all__ = ["cart_items", "sessions"]
