"""The session lifecycle state machine, run against a small inventory.

Under the default (or "dev", or "ci") profile it takes a few seconds; under
``--hypothesis-profile=fuzz`` it runs as many examples as the profile asks.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from sandbox import IntegrationState, Limit, NewCustomerSession, NewCustomerSessionV2, Sandbox
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.codec import dumps, parse_json
from sandbox.models import AnySession, SessionState
from strategies import SessionLifecycle


def small_shop() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    xmas = sb.campaign(
        "Xmas",
        limits=[Limit("redeemCoupon", 1, entities=["Profile"])],
        end="2026-12-24T23:59:59Z",
    )
    xmas.coupon("XMAS-2021", usage_limit=3, expiry_date="2026-12-20T00:00:00Z")
    xmas.coupon("XMAS-VIP")
    xmas.rule(
        "10% off carts over 50",
        when=[c.coupon_valid, lambda ctx: ctx.total >= 50],
        then=[e.set_discount("10% off", percent=10)],
    )
    friends = sb.campaign("Friends", limits=[Limit("setDiscount", 30)])
    friends.referral("REF-2740", advocate="p1", usage_limit=2)
    friends.rule(
        "5 off for friends",
        when=[c.referral_valid],
        then=[e.set_discount("friend", 5)],
    )
    friends.rule(
        "3 off each item",
        when=[lambda ctx: len(ctx.items) > 0],
        then=[e.set_discount_per_item("item", amount=Decimal(3))],
    )
    return sb


class ShopLifecycle(SessionLifecycle):
    def make_sandbox(self) -> Sandbox:
        return small_shop()


# A deeper profile (fuzz has max_examples=2000) runs longer; anything at or under
# the default 100 runs the quick 20 so the suite stays fast.
_PROFILE_EXAMPLES = settings.default.max_examples
_DEEP = _PROFILE_EXAMPLES > 100

TestShopLifecycle = ShopLifecycle.TestCase
TestShopLifecycle.settings = settings(
    max_examples=_PROFILE_EXAMPLES if _DEEP else 20,
    stateful_step_count=50 if _DEEP else 20,
    deadline=None,
)


def test_make_sandbox_must_be_overridden() -> None:
    import pytest

    machine = SessionLifecycle()
    with pytest.raises(NotImplementedError, match="must override make_sandbox"):
        machine.setup()


def test_the_three_line_user_test_runs_the_machine_on_a_build_function() -> None:
    machine = SessionLifecycle.for_rules(small_shop)
    assert issubclass(machine, SessionLifecycle)
    case = machine.TestCase
    case.settings = settings(max_examples=3, stateful_step_count=8, deadline=None, database=None)
    case("runTest").runTest()


def test_for_rules_refuses_a_build_that_returns_no_sandbox() -> None:
    import pytest

    machine = SessionLifecycle.for_rules(lambda: "not a sandbox")
    case = machine.TestCase
    case.settings = settings(max_examples=1, stateful_step_count=2, deadline=None, database=None)
    with pytest.raises(TypeError, match=r"must return a sandbox\.Sandbox"):
        case("runTest").runTest()


REMEMBERING_TEST = """
import pytest
from hypothesis import settings

from sandbox import Sandbox, effects as e
from strategies import SessionLifecycle

seen = set()


def first_visit(ctx):
    '''first visit of this profile and total'''
    key = (ctx.profile_id, ctx.total)
    new = key not in seen
    seen.add(key)
    return new


def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Welcome").rule(
        "first visit bonus", when=[first_visit], then=[e.set_discount("welcome", 5)]
    )
    return sb


TestRules = SessionLifecycle.for_rules(build).TestCase
TestRules.settings = settings(
    max_examples=10, stateful_step_count=6, deadline=None, database=None
)
"""


def test_a_rule_keeping_outside_state_fails_plainly_not_as_a_flaky_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_rules=REMEMBERING_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "errors.Flaky" not in out
    assert "Inconsistent results" not in out
    result.stdout.fnmatch_lines(
        [
            "*OutsideStateError: rule 'first visit bonus' in campaign 'Welcome' answered "
            "differently for the same session and sandbox state: it keeps state outside the sandbox"
        ]
    )


def test_a_user_property_violated_only_after_a_cancel_is_found() -> None:
    import pytest
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.stateful import run_state_machine_as_test

    from sandbox import NewCustomerSession, Sandbox
    from sandbox import conditions as c
    from sandbox import effects as e
    from sandbox.invariants import InvariantViolation
    from sandbox.strategies import SessionLifecycle

    def build() -> Sandbox:
        sb = Sandbox(now="2026-12-01T10:00:00Z")
        camp = sb.campaign("C")
        camp.coupon("SAVE-1")
        camp.rule("five", when=[c.coupon_valid], then=[e.set_discount("five", 5)])
        return sb

    def no_cancelled_session(state: object, sb: Sandbox) -> bool:
        return all(s.state.value != "cancelled" for s in sb.sessions.values())

    found = SessionLifecycle.for_rules(build, properties=[no_cancelled_session])

    class Machine(found):  # type: ignore[misc, valid-type]
        def sessions(self, sb: Sandbox) -> st.SearchStrategy[NewCustomerSession]:
            # Cheap sessions: the test is about the property check, not session variety.
            return st.just(NewCustomerSession(coupon="SAVE-1", total=Decimal(10)))

    machine = Machine
    with pytest.raises(InvariantViolation, match="no_cancelled_session"):
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=60, stateful_step_count=10, deadline=None, database=None
            ),
        )


# ---------------------------------------------------------------------------
# V2 merges, profiles and created codes, checked against the test's own model

MERGED = (
    "profile_id",
    "coupon_codes",
    "referral_code",
    "cart_items",
    "additional_costs",
    "identifiers",
    "attributes",
)


def rewards_shop() -> Sandbox:
    """Profile rules, a create-coupon rule and a referral beside the small shop."""
    sb = small_shop()
    next_order = sb.campaign("Next order", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    next_order.rule(
        "10% with a reward code", when=[c.coupon_valid], then=[e.set_discount("Reward", percent=10)]
    )
    sb.campaign("First order reward").rule(
        "a code for the next order",
        when=[c.first_order, c.total_at_least(30)],
        then=[e.create_coupon(pattern="NEXT-####", valid_days=30, campaign="Next order")],
    )
    sb.campaign("Gold").rule(
        "gold shipping",
        when=[c.profile_attribute_equals("tier", "gold")],
        then=[e.set_discount_per_additional_cost("Free shipping", cost="shipping", percent=100)],
    )
    return sb


def _view(session: AnySession) -> dict[str, Any]:
    """The fields a V2 merge works on, for either dialect (V1's coupon is one code)."""
    if isinstance(session, NewCustomerSession):
        return {
            "profile_id": session.profile_id,
            "coupon_codes": None if session.coupon is None else (session.coupon,),
            "referral_code": session.referral,
            "cart_items": session.cart_items,
            "additional_costs": None,
            "identifiers": session.identifiers,
            "attributes": session.attributes,
        }
    return {name: getattr(session, name) for name in MERGED}


def expected_after(
    stored: dict[str, Any] | None, current: SessionState | None, sent: AnySession
) -> tuple[dict[str, Any], SessionState]:
    """Talon.One's merge, restated (reference 1.1): V1 replaces; V2 keeps what it leaves
    out, replaces what it sends, and ``referralCode: ""`` discards. Rolling back a closed
    session keeps its fields; so does cancelling an open one."""
    state = sent.state if sent.state is not None else (current or SessionState.OPEN)
    rollback = state is SessionState.CANCELLED and current is not None
    if rollback and current is not SessionState.OPEN:
        assert stored is not None
        return stored, state
    if isinstance(sent, NewCustomerSession) and not rollback:
        return _view(sent), state
    merged = dict(stored or dict.fromkeys(MERGED))
    for name, value in _view(sent).items():
        if value is not None:
            merged[name] = None if name == "referral_code" and value == "" else value
    return merged, state


class MergeLifecycle(SessionLifecycle):
    """The lifecycle over the rewards shop, every stored session checked against the
    test's own merge model after every update."""

    seen: ClassVar[Counter[str]] = Counter()

    def make_sandbox(self) -> Sandbox:
        self.model: dict[str, dict[str, Any]] = {}
        return rewards_shop()

    def _update(self, session_id: str, session: AnySession) -> IntegrationState:
        before = self.model.get(session_id)
        # The state comes from the sandbox: reopen and returns move it without an update.
        held = self.sb.sessions.get(session_id)
        expected = expected_after(before, held.state if held else None, session)
        state = super()._update(session_id, session)
        stored = self.sb.get_session(session_id)
        assert (_view(stored.submitted), stored.state) == expected, (session_id, session)
        self.model[session_id] = expected[0]
        kind = "v2" if isinstance(session, NewCustomerSessionV2) else "v1"
        self.seen[f"{kind} update"] += 1
        left_out = [n for n in MERGED if getattr(session, n, None) is None]
        self.seen["v2 field left out"] += kind == "v2" and bool(left_out) and before is not None
        self.seen["codes discarded"] += getattr(session, "coupon_codes", None) == ()
        self.seen["created"] += len(state.created_coupons)
        used = {c.upper() for c in state.accepted_coupons}
        self.seen["created code redeemed"] += any(c.startswith("NEXT-") for c in used)
        self.seen["gold shipping"] += "Free shipping" in state.discounts
        return state

    def _check(self, state: IntegrationState) -> None:
        if state.session_id.startswith("profile:"):
            self.seen["profile evaluated"] += 1
        super()._check(state)


def test_v2_updates_merge_as_the_model_says_and_lifecycles_with_profiles_and_created_codes_keep_every_invariant() -> (
    None
):
    MergeLifecycle.seen.clear()
    run_state_machine_as_test(
        MergeLifecycle,
        settings=settings(
            max_examples=60 if not _DEEP else _PROFILE_EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    seen = MergeLifecycle.seen
    # The run reached what it is meant to check, not only empty sessions.
    for what in (
        "v1 update",
        "v2 update",
        "v2 field left out",
        "codes discarded",
        "created",
        "profile evaluated",
    ):
        assert seen[what] > 0, (what, seen)


def test_the_steps_a_lifecycle_records_replay_to_the_same_sandbox() -> None:
    from sandbox.steps import (
        read_step as _step,  # what `fuzz --replay` and `eval` run each line with
    )

    class Recorded(SessionLifecycle):
        runs: ClassVar[list[tuple[list[dict[str, Any]], Sandbox]]] = []

        def make_sandbox(self) -> Sandbox:
            return rewards_shop()

        def teardown(self) -> None:
            if hasattr(self, "sb"):
                # Through JSON text as `fuzz` prints it and the CLI reads it (Decimal money).
                self.runs.append((parse_json(dumps(self.steps)), self.sb))

    run_state_machine_as_test(
        Recorded,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert Recorded.runs
    kinds: Counter[str] = Counter()
    for steps, sb in Recorded.runs:
        again = rewards_shop()
        for number, step in enumerate(steps, start=1):
            _step(step, number)(again, False)
            kinds[next(iter(step))] += 1
        assert again.snapshot() == sb.snapshot(), steps
    assert kinds["updateProfile"] > 0, kinds
    assert kinds["customerSessionId"] > 0, kinds
