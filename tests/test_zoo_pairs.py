"""The bug zoo's pairs: the story each planted bug's docstring tells breaks its property,
and the same story keeps the fixed twin's (``examples/zoo/fixed/``).

The stories are written by hand from the docstrings, so these tests check the zoo files
themselves, independently of whether ``fuzz`` finds them (``bench/bug_zoo.py`` measures
that on five seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox import IntegrationState, Sandbox
from sandbox.fuzzing import load_rules

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"

Step = Callable[[Sandbox, dict[str, Any]], Any]


def _item(price: float, quantity: int = 1, **more: Any) -> dict[str, Any]:
    return {"sku": "item", "quantity": quantity, "price": price, **more}


def _order(session_id: str, **fields: Any) -> Step:
    def step(sb: Sandbox, seen: dict[str, Any]) -> IntegrationState:
        wire = {k: (v(seen) if callable(v) else v) for k, v in fields.items()}
        state = sb.update(session_id, wire)
        for created in state.created_coupons:
            seen.setdefault("codes", []).append(created["value"])
        return state

    return step


def _profile(profile_id: str, **attributes: Any) -> Step:
    return lambda sb, seen: sb.update_profile(profile_id, {"attributes": attributes})


def _advance(**delta: int) -> Step:
    return lambda sb, seen: sb.advance(**delta)


def _cancel(session_id: str) -> Step:
    return lambda sb, seen: sb.update(session_id, {"state": "cancelled"})


def _first_code(seen: dict[str, Any]) -> list[str]:
    return [seen["codes"][0]]


STORIES: dict[str, list[Step]] = {
    "shipping_counts_itself": [
        _order("s1", cartItems=[_item(70)], additionalCosts={"shipping": {"price": 5.99}}),
    ],
    "giftwrap_per_line": [
        _order("s1", cartItems=[_item(8, 3, additionalCosts={"giftwrap": {"price": 2}})]),
    ],
    "device_welcome": [
        _order(
            f"s{n}",
            profileId=profile,
            couponCodes=["WELCOME"],
            identifiers=["phone-1"],
            cartItems=[_item(40)],
            state="closed",
        )
        for n, profile in ((1, "p1"), (2, "p2"))
    ],
    "app_by_default": [_order("s1", cartItems=[_item(10)])],
    "silver_and_gold": [
        _profile("p1", points=2500),
        _order("s1", profileId="p1", cartItems=[_item(100)]),
    ],
    "member_price_key": [
        _order("s1", profileId="p1", cartItems=[_item(50, attributes={"memberPrice": True})]),
    ],
    "bf_expiry_typo": [
        _advance(days=5),  # November 27 to December 2
        _order("s1", couponCodes=["BF-1"], cartItems=[_item(40)]),
    ],
    "overlapping_windows": [
        _advance(days=8),  # December 18 to 26
        _order("s1", cartItems=[_item(100)]),
    ],
    "weekly_as_daily": [
        _order("s1", profileId="p1", couponCodes=["DEAL"], cartItems=[_item(30)], state="closed"),
        _advance(days=1),  # Tuesday to Wednesday, the same ISO week
        _order("s2", profileId="p1", couponCodes=["DEAL"], cartItems=[_item(30)], state="closed"),
    ],
    "monthly_as_weekly": [
        _order("s1", profileId="p1", cartItems=[_item(100)], state="closed"),
        _advance(days=7),  # the next ISO week, still December
        _order("s2", profileId="p2", cartItems=[_item(100)], state="closed"),
    ],
    "thank_you_for_anyone": [
        _order(
            "s1", profileId="fred", referralCode="REF-ANN", cartItems=[_item(40)], state="closed"
        ),
        _order("s2", profileId="zoe", couponCodes=_first_code, cartItems=[_item(40)]),
    ],
    "reward_code_reusable": [
        _order("s1", profileId="p1", cartItems=[_item(40)], state="closed"),
        _order(
            "s2", profileId="p1", couponCodes=_first_code, cartItems=[_item(40)], state="closed"
        ),
        _order(
            "s3", profileId="p1", couponCodes=_first_code, cartItems=[_item(40)], state="closed"
        ),
    ],
    "gold_code_after_downgrade": [
        _profile("p1", tier="gold"),
        _order("s1", profileId="p1", cartItems=[_item(40)], state="closed"),
        _profile("p1", tier="silver"),
        _order("s2", profileId="p1", couponCodes=_first_code, cartItems=[_item(40)]),
    ],
    "voucher_after_cancel": [
        _order("s1", profileId="p1", cartItems=[_item(100)], state="closed"),
        _cancel("s1"),
        _order("s2", profileId="p1", couponCodes=_first_code, cartItems=[_item(40)]),
    ],
}


def _holds_throughout(path: Path, story: list[Step]) -> bool:
    factory, properties = load_rules(path)
    (prop,) = properties.values()
    sb = factory()
    seen: dict[str, Any] = {}
    verdicts = []
    for step in story:
        answer = step(sb, seen)
        if isinstance(answer, IntegrationState):
            verdicts.append(bool(prop(answer, sb)))
    return all(verdicts)


@pytest.mark.parametrize("bug", sorted(STORIES))
def test_the_story_breaks_the_planted_bug_and_not_its_fixed_twin(bug: str) -> None:
    story = STORIES[bug]
    assert not _holds_throughout(ZOO / f"{bug}.py", story)
    assert _holds_throughout(ZOO / "fixed" / f"{bug}.py", story)


def test_every_fixed_twin_has_its_planted_bug_and_the_same_property() -> None:
    twins = sorted(p.stem for p in (ZOO / "fixed").glob("*.py"))
    assert twins == sorted(STORIES)
    for name in twins:
        _, bug = load_rules(ZOO / f"{name}.py")
        _, fixed = load_rules(ZOO / "fixed" / f"{name}.py")
        assert list(bug) == list(fixed)
        assert (
            (ZOO / "fixed" / f"{name}.py")
            .read_text()
            .startswith(f'"""Fixed twin of `../{name}.py`')
        )
