"""Hypothesis strategies for promo-sandbox sessions: the documented import.

>>> from hypothesis import given
>>> from sandbox.strategies import sessions
>>> @given(sessions(coupon="XMAS-2021"))
... def test_coupon_is_kept(s):
...     assert s.coupon == "XMAS-2021"

The same names as the top-level ``strategies`` package, which stays (older
tests import it). Many projects keep a ``tests/strategies.py`` of
their own, and pytest puts ``tests/`` first on ``sys.path``, so a plain
``import strategies`` would find that file instead. This module therefore
loads the package that sits beside ``sandbox`` by its location, and leaves
whatever the name ``strategies`` meant before exactly as it was. Importing
it registers ``st.from_type`` for ``NewCustomerSession``, ``NewCustomerSessionV2``
and ``CartItem``.
``import sandbox`` alone never imports this module (nor Hypothesis).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

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

_PACKAGE = Path(__file__).resolve().parent.parent / "strategies"


def _is_ours(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve() == _PACKAGE / "__init__.py"


def _load() -> ModuleType:
    """The top-level ``strategies`` package of this distribution, whoever holds the name."""
    held = sys.modules.get("strategies")
    if held is not None and _is_ours(held):
        return held
    if not (_PACKAGE / "__init__.py").is_file():
        # Not installed side by side (an unusual layout): the ordinary import is all there is.
        return importlib.import_module("strategies")
    spec = importlib.util.spec_from_file_location(
        "strategies", _PACKAGE / "__init__.py", submodule_search_locations=[str(_PACKAGE)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The package's own modules import each other as `strategies._x`, so the name must be
    # ours while it runs; its submodules stay registered under those names afterwards.
    sys.modules["strategies"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if held is None:
            del sys.modules["strategies"]
        else:
            sys.modules["strategies"] = held
    return module


if TYPE_CHECKING:
    from strategies import (
        FLAWS,
        VIOLATION_KINDS,
        Flawed,
        InvalidPayload,
        ProfileChange,
        SessionLifecycle,
        cart_items,
        invalid_sessions,
        payloads,
        profile_updates,
        reachable_flaws,
        sessions,
        unreachable_flaws,
        valid_sessions,
    )
else:
    _strategies = _load()
    globals().update({name: getattr(_strategies, name) for name in __all__})
    del _strategies
