"""sandbox.invariants: each check passes on real answers and names what breaks on forged ones."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest

from sandbox import Limit, Sandbox, SandboxError, from_wire
from sandbox import conditions as c
from sandbox import effects as e
from sandbox.invariants import (
    INVARIANTS,
    InvariantViolation,
    OutsideStateError,
    answers_agree,
    cart_order_irrelevant,
    check_sandbox,
    check_state,
    deterministic,
    discounts_within_base,
    dry_run_changes_nothing,
    limits_hold,
    one_outcome_per_code,
    rejected_code_triggers_nothing,
    usage_reconciles,
)
from sandbox.models import NewCustomerSession
from sandbox.talon import EffectType

CART = [
    {"sku": "a", "quantity": 1, "price": 40},
    {"sku": "b", "quantity": 2, "price": 10},
]


def shop() -> Sandbox:
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    promo = sb.campaign("Promo", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
    promo.coupon("SAVE", usage_limit=2)
    promo.rule("10 off", when=[c.coupon_valid], then=[e.set_discount("10 off", 10)])
    items = sb.campaign("Items")
    items.rule("2 off each", then=[e.set_discount_per_item("each", amount=2)])
    return sb


def test_real_answers_and_lifecycles_satisfy_every_default_invariant() -> None:
    sb = shop()
    opened = sb.update("s1", {"profileId": "p1", "coupon": "SAVE", "cartItems": CART})
    check_state(opened)
    closed = sb.update(
        "s1", {"profileId": "p1", "coupon": "SAVE", "cartItems": CART, "state": "closed"}
    )
    check_state(closed)
    check_sandbox(sb)
    check_state(sb.return_items("s1", [{"position": 1, "quantity": 1}]))
    check_sandbox(sb)
    rejected = sb.update("s2", {"profileId": "p1", "coupon": "SAVE", "total": 5})
    assert rejected.rejected_coupons
    check_state(rejected)
    check_state(sb.update("s1", {"state": "cancelled"}))
    check_sandbox(sb)
    assert sb.get_coupon("SAVE").usage_counter == 0


def test_registry_names_every_invariant() -> None:
    assert set(INVARIANTS) == {
        "discounts_within_base",
        "one_outcome_per_code",
        "rejected_code_triggers_nothing",
        "limits_hold",
        "usage_reconciles",
        "dry_run_changes_nothing",
        "deterministic",
        "cart_order_irrelevant",
    }
    assert all(name == f.__name__ for name, f in INVARIANTS.items())


def forged(state, index: int, **props):
    effect = state.effects[index]
    changed = attrs.evolve(effect, props={**effect.props, **props})
    return attrs.evolve(
        state, effects=(*state.effects[:index], changed, *state.effects[index + 1 :])
    )


def test_a_discount_above_its_base_is_named_with_its_values() -> None:
    state = shop().update("s1", {"profileId": "p1", "coupon": "SAVE", "cartItems": CART}, dry=True)
    index = next(i for i, x in enumerate(state.effects) if x.effect_type is EffectType.SET_DISCOUNT)
    with pytest.raises(InvariantViolation, match="setDiscount exceeds the session total") as caught:
        discounts_within_base(forged(state, index, value=Decimal("61")))
    assert caught.value.invariant == "discounts_within_base"
    assert caught.value.session_id == "s1"
    assert caught.value.values["total"] == Decimal(60)
    assert isinstance(caught.value, AssertionError)
    assert isinstance(caught.value, SandboxError)
    per_item = next(
        i for i, x in enumerate(state.effects) if x.effect_type is EffectType.SET_DISCOUNT_PER_ITEM
    )
    with pytest.raises(InvariantViolation, match="line total of cart item 0"):
        discounts_within_base(forged(state, per_item, value=Decimal("41")))


def test_two_outcomes_or_none_for_a_code_are_violations() -> None:
    state = shop().update("s1", {"profileId": "p1", "coupon": "SAVE", "total": 50}, dry=True)
    accept = next(x for x in state.effects if x.effect_type is EffectType.ACCEPT_COUPON)
    with pytest.raises(InvariantViolation, match="got 2 accept/reject effects, expected 1"):
        one_outcome_per_code(attrs.evolve(state, effects=(*state.effects, accept)))
    others = tuple(x for x in state.effects if x is not accept)
    with pytest.raises(InvariantViolation, match="got 0"):
        one_outcome_per_code(attrs.evolve(state, effects=others))


def test_a_rejected_coupon_that_triggers_an_effect_is_a_violation() -> None:
    sb = shop()
    state = sb.update("s1", {"coupon": "NOPE", "total": 50}, dry=True)
    assert state.rejected_coupons
    good = sb.update("s2", {"profileId": "p1", "coupon": "SAVE", "total": 50}, dry=True)
    triggered = next(
        x for x in good.effects if x.triggered_by_coupon is not None and x.effect_type.is_discount
    )
    with pytest.raises(InvariantViolation, match="triggeredByCoupon"):
        rejected_code_triggers_nothing(attrs.evolve(state, effects=(*state.effects, triggered)))


def test_counters_are_checked_against_limits_and_sessions() -> None:
    sb = shop()
    sb.update("s1", {"profileId": "p1", "coupon": "SAVE", "total": 50, "state": "closed"})
    limits_hold(sb)
    usage_reconciles(sb)
    # Forge a second commit of the same charges: the counters no longer match the store.
    sb.ledger.commit(sb.get_session("s1").committed)
    with pytest.raises(InvariantViolation, match="redeemCoupon counter is above its limit"):
        limits_hold(sb)
    with pytest.raises(InvariantViolation, match="usage counter disagrees") as caught:
        usage_reconciles(sb)
    assert caught.value.values == {"usage_counter": 2, "accepting sessions": ["s1"]}


def test_probes_pass_on_the_engine() -> None:
    sb = shop()
    session = from_wire(
        NewCustomerSession, {"profileId": "p1", "coupon": "SAVE", "cartItems": CART}
    )
    before = sb.snapshot()
    assert dry_run_changes_nothing(sb, "s1", session) is not None
    assert (
        dry_run_changes_nothing(sb, "s1", {"state": "cancelled"}) is None
    )  # refused, still nothing
    assert deterministic(sb, session).accepted_coupons == ["SAVE"]
    cart_order_irrelevant(sb, session)
    assert sb.snapshot() == before


def remembering_shop() -> Sandbox:
    """A rule that keeps state outside the sandbox: it fires once per profile, ever."""
    seen: set[str | None] = set()

    def first_visit(ctx) -> bool:  # type: ignore[no-untyped-def]
        """first visit of this profile"""
        new = ctx.profile_id not in seen
        seen.add(ctx.profile_id)
        return new

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    sb.campaign("Welcome").rule(
        "first visit bonus", when=[first_visit], then=[e.set_discount("welcome", 5)]
    )
    return sb


OUTSIDE_SENTENCE = (
    "rule 'first visit bonus' in campaign 'Welcome' answered differently for the same "
    "session and sandbox state: it keeps state outside the sandbox"
)


def test_a_rule_keeping_outside_state_is_named_plainly_by_deterministic() -> None:
    with pytest.raises(OutsideStateError) as caught:
        deterministic(remembering_shop(), {"profileId": "p1", "total": 50}, session_id="s1")
    error = caught.value
    assert str(error).splitlines()[0] == OUTSIDE_SENTENCE
    assert (error.campaign, error.rule, error.invariant) == (
        "Welcome",
        "first visit bonus",
        "rules_keep_no_outside_state",
    )
    assert "first in session 's1': fired: discount 'welcome' 5" in str(error)
    assert "then: did not fire: condition 0 failed: first visit of this profile" in str(error)
    assert isinstance(error, InvariantViolation)


def test_answers_that_differ_with_every_rule_alike_blame_the_sandbox_not_a_rule() -> None:
    sb = shop()
    state = sb.update("s1", {"profileId": "p1", "coupon": "SAVE", "total": 50}, dry=True)
    other = attrs.evolve(state, session=attrs.evolve(state.session, profile_id="p2"))
    answers_agree(state, state, invariant="x", detail="differ")
    with pytest.raises(
        InvariantViolation, match="invariant 'dry_run_matches_update' violated"
    ) as caught:
        answers_agree(state, other, invariant="dry_run_matches_update", detail="differ")
    # No rule answered differently, so no rule may be blamed.
    assert type(caught.value) is InvariantViolation
