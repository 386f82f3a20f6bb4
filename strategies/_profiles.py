"""Customer profile updates whose attributes come from the rules' own constants.

A rule such as ``c.profile_attribute_equals("tier", "gold")`` only fires for a
profile that has that attribute, and profiles live in the sandbox, not in the
session. :func:`profile_updates` draws what ``sb.update_profile`` takes: a
profile from the same pool the rule-aware sessions draw from, and attributes
mixing random ones with the keys and values (a threshold, a cent either side)
the rules compare profiles against. Apply them before the sessions.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from sandbox.core import Sandbox
from sandbox.profiles import ProfileUpdate
from sandbox.state import ProfileState
from strategies._inventory import Inventory, check_sandbox, inventory
from strategies._sessions import _ATTRIBUTE_DICTS, _PROFILE_IDS, _merge, _shown_as

__all__ = ["ProfileChange", "profile_updates"]


@attrs.frozen
class ProfileChange:
    """A drawn ``updateCustomerProfileV2``: ``profile_id`` and its ``update``.

    ``apply(sb)`` sends it: ``sb.update_profile(profile_id, update, ...)``.
    """

    profile_id: str
    update: ProfileUpdate

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self.update.attributes or {})

    def apply(self, sb: Sandbox, *, run_rule_engine: bool = False) -> ProfileState:
        return sb.update_profile(self.profile_id, self.update, run_rule_engine=run_rule_engine)

    def to_wire(self) -> dict[str, Any]:
        """The step as ``fuzz`` reports it: ``{"updateProfile": id, "attributes": {...}}``."""
        from sandbox.codec import to_plain

        return {"updateProfile": self.profile_id, "attributes": to_plain(self.attributes)}


def profile_updates(sb: Sandbox | None = None) -> SearchStrategy[ProfileChange]:
    """Profile updates to apply before sessions (``change.apply(sb)``).

    Without a sandbox: a profile ``p1`` .. ``p99`` and a small random attribute
    dict. With ``sb``: profiles from the rule-aware sessions' pool (``p1``,
    ``p2``, the codes' recipients, advocates and friends, profiles with
    counters), and attributes that include the keys and values the rules'
    profile conditions compare against (``profile_attribute_equals``,
    ``_in``, ``_at_least`` a cent either side, ``profile_has_attribute``) and
    the loose key/value pairs of lambdas. Shrinks to ``p1`` with no attributes.

    >>> change = profile_updates().example()
    >>> change.profile_id.startswith("p")
    True
    """
    check_sandbox("profile_updates", sb, optional=True)
    return _draw_profile_update(sb)


def _attributes(inv: Inventory | None) -> SearchStrategy[dict[str, Any]]:
    if inv is None:
        return _ATTRIBUTE_DICTS
    found: SearchStrategy[dict[str, Any]] | None = inv.memo.get("profile_attributes")
    if found is None:
        pairs = tuple(dict.fromkeys([*inv.profile_pairs, *inv.attribute_pairs]))
        found = _ATTRIBUTE_DICTS
        if pairs:
            hinted = st.lists(st.sampled_from(pairs), max_size=3)
            found = st.builds(_merge, _ATTRIBUTE_DICTS, hinted)
        inv.memo["profile_attributes"] = found
    return found


@st.composite
@_shown_as("profile_updates")
def _draw_profile_update(draw: st.DrawFn, sb: Sandbox | None = None) -> ProfileChange:
    inv = None if sb is None else inventory(sb)
    if inv is None:
        profile = draw(_PROFILE_IDS)
    else:
        profile = draw(st.sampled_from(inv.profiles) | _PROFILE_IDS)
    attributes = draw(_attributes(inv))
    return ProfileChange(profile, ProfileUpdate(attributes=attributes))
