"""A Hypothesis state machine that drives session lifecycles through a Sandbox.

Subclass :class:`SessionLifecycle`, override ``make_sandbox`` (and, if you
like, ``sessions``), and run its ``TestCase``; every step's answer and the
whole sandbox are checked against :mod:`sandbox.invariants`.

A rule that keeps state outside the sandbox answers the same session
differently the second time; the machine reports that as
:class:`~sandbox.invariants.OutsideStateError` naming the rule, and raises it
again whenever Hypothesis replays the same steps, so the run ends with that
plain message instead of Hypothesis' ``FlakyFailure``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from hypothesis.strategies import SearchStrategy

from sandbox.codec import dumps, to_wire
from sandbox.conditions import NotABoolError, as_bool
from sandbox.core import Sandbox
from sandbox.errors import TransitionError
from sandbox.invariants import (
    InvariantViolation,
    OutsideStateError,
    answers_agree,
    check_sandbox,
    check_state,
    deterministic,
    dry_run_changes_nothing,
)
from sandbox.models import (
    AnySession,
    NewCustomerSession,
    NewCustomerSessionV2,
    SessionState,
)
from sandbox.state import IntegrationState
from sandbox.talon import EffectType
from strategies._sessions import sessions as _sessions

__all__ = ["SessionLifecycle", "inventory_sessions"]

_MAX_SESSIONS = 6
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_RETURNED = SessionState.PARTIALLY_RETURNED


def inventory_sessions(sb: Sandbox, **fixed: Any) -> SearchStrategy[NewCustomerSession]:
    """``strategies.sessions(sb, **fixed)``, or the same with a coupon and a
    referral drawn from the sandbox's inventory (or absent)."""
    coupons = sorted(code for c in sb.campaigns for code in c.coupons)
    referrals = sorted(code for c in sb.campaigns for code in c.referrals)
    if not (coupons or referrals):
        return _sessions(sb, **fixed)
    codes = {
        "coupon": (st.none() | st.sampled_from(coupons)) if coupons else st.none(),
        "referral": (st.none() | st.sampled_from(referrals)) if referrals else st.none(),
    }
    return st.one_of(_sessions(sb, **fixed), _sessions(sb, **{**codes, **fixed}))


def _properties(given: Any) -> dict[str, Callable[..., object]]:
    if given is None:
        return {}
    if isinstance(given, Mapping):
        items = list(given.items())
    else:
        items = [(getattr(p, "__name__", f"property_{i}"), p) for i, p in enumerate(given)]
    for name, prop in items:
        if not callable(prop):
            raise TypeError(f"for_rules(properties=...): {name} is not callable: {prop!r}")
    return dict(items)


def _takes_sandbox(prop: Callable[..., object]) -> bool:
    takes = getattr(prop, "takes_sandbox", None)  # a rules file's Property knows
    if takes is not None:
        return bool(takes)
    try:
        inspect.signature(prop).bind(None)
    except TypeError:
        return True
    except ValueError:
        return False
    return False


def _outside_state(
    cls: type[SessionLifecycle],
) -> dict[str, tuple[OutsideStateError, list[dict[str, Any]]]]:
    # Each machine class gets its own registry, not its base class's.
    if "outside_state" not in cls.__dict__:
        cls.outside_state = {}
    return cls.outside_state


class SessionLifecycle(RuleBasedStateMachine):
    """Open, update, close, cancel, reopen and return sessions; check invariants throughout.

    >>> from hypothesis import settings
    >>> from sandbox import Sandbox, conditions as c, effects as e
    >>> class Shop(SessionLifecycle):
    ...     def make_sandbox(self) -> Sandbox:
    ...         sb = Sandbox(now="2026-12-01T10:00:00Z")
    ...         promo = sb.campaign("Promo")
    ...         promo.coupon("SAVE10", usage_limit=2)
    ...         promo.rule("10 off", when=[c.coupon_valid], then=[e.set_discount("10 off", 10)])
    ...         return sb
    >>> TestShop = Shop.TestCase
    >>> TestShop.settings = settings(max_examples=5, stateful_step_count=10, deadline=None)
    """

    sb: Sandbox
    user_properties: ClassVar[Mapping[str, Callable[..., object]]] = {}
    """The user's properties, checked after every step that answers (``for_rules``)."""

    outside_state: ClassVar[dict[str, tuple[OutsideStateError, list[dict[str, Any]]]]]
    """Per machine class: the steps (as JSON) after which a rule was caught
    keeping outside state, with the error and the steps, so that a replay of
    the same steps fails the same way. Filled in by the machine."""

    @classmethod
    def for_rules(
        cls,
        build: Any,
        *,
        name: str | None = None,
        properties: Any = None,
    ) -> type[SessionLifecycle]:
        """A machine over ``build()``'s sandbox, for the three-line test::

        from sandbox.strategies import SessionLifecycle
        from my_rules import build
        TestMyRules = SessionLifecycle.for_rules(build).TestCase

        ``properties`` (a list of functions, or a mapping of names to them) are
        checked after every step that answers, like the built-in invariants: each
        takes the answer (``state``), or the answer and the sandbox (``state, sb``),
        and returns True or False. ``build`` may also be a rules file's path: then
        the file's ``build()`` (or ``sandbox``) and, unless ``properties`` is
        given, its own ``property_*`` functions are used.
        """
        if isinstance(build, str | os.PathLike):
            from sandbox.fuzzing import load_rules

            factory, found = load_rules(os.fspath(build))
            if properties is None:
                properties = found
            name = name or str(build)
            build = factory
        if not callable(build):
            raise TypeError(f"for_rules(build) needs a callable returning a Sandbox, got {build!r}")
        checked = _properties(properties)

        def make_sandbox(self: SessionLifecycle) -> Sandbox:
            sb = build()
            if not isinstance(sb, Sandbox):
                raise TypeError(f"{build!r} must return a sandbox.Sandbox, got {sb!r}")
            return sb

        title = (
            name or f"{getattr(build, '__module__', 'rules')}.{getattr(build, '__name__', 'build')}"
        )
        return type(
            f"Lifecycle[{title}]",
            (cls,),
            {"make_sandbox": make_sandbox, "user_properties": checked},
        )

    def make_sandbox(self) -> Sandbox:
        """The sandbox under test, fresh for every run: override this."""
        raise NotImplementedError(
            f"{type(self).__name__} must override make_sandbox(self) -> Sandbox "
            "to build the rules under test"
        )

    def sessions(self, sb: Sandbox) -> SearchStrategy[NewCustomerSession]:
        """Open sessions to submit; by default ``strategies.sessions(sb)``, half
        of them carrying the sandbox's own codes so that codes get used."""
        return inventory_sessions(sb)

    # -- setup ------------------------------------------------------------------

    @initialize(data=st.data())
    def setup(self, data: st.DataObject | None = None) -> None:
        sb = self.make_sandbox()
        if not isinstance(sb, Sandbox):
            raise TypeError(
                f"{type(self).__name__}.make_sandbox() must return a sandbox.Sandbox, got {sb!r}"
            )
        self.sb = sb
        self._strategy = self.sessions(sb)
        self._next = 0
        # The calls made so far, as replayable wire data (what a report shows).
        self.steps: list[dict[str, Any]] = []
        # Every lifecycle starts from a few orders, open or closed: the moves below
        # (close, return, reopen, cancel, a returning customer) need something to act on.
        if data is not None:  # (None: called by hand, outside a Hypothesis run)
            for _ in range(data.draw(st.integers(1, 3), label="first orders")):
                self._new_session(data, close=data.draw(st.booleans(), label="closed"))

    def _update(self, session_id: str, session: AnySession) -> IntegrationState:
        self.steps.append(
            {"customerSessionId": session_id, "customerSession": to_wire(session, exact=True)}
        )
        return self.sb.update(session_id, session)

    def _ids(self, *states: SessionState) -> list[str]:
        return sorted(i for i, s in self.sb.sessions.items() if s.state in states)

    def _check(self, state: IntegrationState) -> None:
        check_state(state)
        for name, prop in self.user_properties.items():
            try:
                held = prop(state, self.sb) if _takes_sandbox(prop) else prop(state)
            except InvariantViolation:
                raise
            except Exception as exc:
                raise InvariantViolation(
                    name,
                    f"raised {type(exc).__name__}: {exc}",
                    session_id=state.session_id,
                ) from exc
            try:
                ok = as_bool(held)
            except NotABoolError:
                raise InvariantViolation(
                    name, f"returned {held!r}, not a bool", session_id=state.session_id
                ) from None
            if not ok:
                raise InvariantViolation(
                    name,
                    f"returned {held!r} after {state.action} of session {state.session_id!r}",
                    session_id=state.session_id,
                    values={
                        "total": state.session.effective_total,
                        "discount": state.total_discount,
                    },
                )

    # -- moves --------------------------------------------------------------------

    @rule(data=st.data(), close=st.booleans())
    def submit_new(self, data: st.DataObject, close: bool) -> None:
        """A new session, open or closed at once; sometimes a returning customer's."""
        self._new_session(data, close=close)

    def _new_session(self, data: st.DataObject, *, close: bool) -> None:
        if len(self.sb.sessions) >= _MAX_SESSIONS:
            return
        session: AnySession = data.draw(self._strategy, label="session")
        customers = self._customers()
        if customers and data.draw(st.booleans(), label="returning customer") is True:
            # A customer who closed an order comes back and closes another, mostly
            # with a code they have not redeemed yet: "once per customer" promises
            # that hold for one order break on the second (a per-code limit, say).
            profile = data.draw(st.sampled_from(customers), label="profile_id")
            session = attrs.evolve(session, profile_id=profile, state=_CLOSED)
            fresh = self._fresh_codes(profile)
            if fresh and data.draw(st.integers(0, 3), label="with a fresh code") > 0:
                code = data.draw(st.sampled_from(fresh), label="code")
                if isinstance(session, NewCustomerSessionV2):
                    session = attrs.evolve(session, coupon_codes=(code,))
                else:
                    session = attrs.evolve(session, coupon=code)
        elif close:
            session = attrs.evolve(session, state=_CLOSED)
        self._submit(session)

    def _fresh_codes(self, profile: str) -> list[str]:
        used = {
            e.value
            for s in self.sb.sessions.values()
            if s.submitted.profile_id == profile
            for e in s.effects
            if e.effect_type is EffectType.ACCEPT_COUPON
        }
        codes = {code for c in self.sb.campaigns for code in c.coupons}
        return sorted(codes - used)

    def _customers(self) -> list[str]:
        closed = (_CLOSED, _RETURNED)
        return sorted(
            {
                s.submitted.profile_id
                for s in self.sb.sessions.values()
                if s.state in closed and s.submitted.profile_id
            }
        )

    def _submit(self, session: AnySession) -> None:
        session_id = f"s{self._next}"
        self._next += 1
        seen = _outside_state(type(self))
        key = dumps([self.steps, session_id, to_wire(session, exact=True)])
        known = seen.get(key)
        if known is None:
            try:
                self._submit_checked(session_id, session)
            except OutsideStateError as exc:
                known = seen[key] = (exc, list(self.steps))
        if known is not None:
            # The rule's outside state is gone on a replay, so without this a replay
            # would pass and Hypothesis would report a FlakyFailure. Raised from one
            # line for both runs: Hypothesis tells failures apart by where they raise.
            raise known[0].with_traceback(None)

    def _submit_checked(self, session_id: str, session: AnySession) -> None:
        dry = dry_run_changes_nothing(self.sb, session_id, session)
        assert dry is not None, "a dry run of a valid new session was refused"
        again = deterministic(self.sb, session, session_id=session_id)
        answers_agree(
            dry,
            again,
            invariant="deterministic",
            detail="two dry evaluations of the same session differ",
            session_id=session_id,
        )
        state = self._update(session_id, session)
        answers_agree(
            dry,
            state,
            invariant="dry_run_matches_update",
            detail="a dry run answered differently from the real update",
            session_id=session_id,
        )
        self._check(state)

    @precondition(lambda self: bool(self._ids(_OPEN)))
    @rule(data=st.data())
    def update_open(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(self._ids(_OPEN)), label="session_id")
        session = data.draw(self._strategy, label="session")
        self._check(self._update(session_id, session))

    @precondition(lambda self: bool(self._ids(_OPEN)))
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(self._ids(_OPEN)), label="session_id")
        submitted = self.sb.get_session(session_id).submitted
        self._check(self._update(session_id, attrs.evolve(submitted, state=_CLOSED)))

    @precondition(lambda self: bool(self._ids(_OPEN, _CLOSED, _RETURNED)))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ids = self._ids(_OPEN, _CLOSED, _RETURNED)
        session_id = data.draw(st.sampled_from(ids), label="session_id")
        cancelled = NewCustomerSession(state=SessionState.CANCELLED)
        self._check(self._update(session_id, cancelled))

    @precondition(lambda self: bool(self._ids(_CLOSED)))
    @rule(data=st.data())
    def reopen(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(self._ids(_CLOSED)), label="session_id")
        self.steps.append({"reopen": session_id})
        self._check(self.sb.reopen(session_id))

    def _returnable(self) -> list[tuple[str, int]]:
        found = []
        for session_id in self._ids(_CLOSED, _RETURNED):
            stored = self.sb.get_session(session_id)
            for position, item in enumerate(stored.submitted.cart_items or ()):
                if item.quantity > stored.returned[position]:
                    found.append((session_id, position))
        return found

    @precondition(lambda self: bool(self._returnable()))
    @rule(data=st.data())
    def return_one_item(self, data: st.DataObject) -> None:
        session_id, position = data.draw(st.sampled_from(self._returnable()), label="return")
        returned = [{"position": position, "quantity": 1}]
        self.steps.append({"returnItems": session_id, "returnedCartItems": returned})
        self._check(self.sb.return_items(session_id, returned))

    @rule(hours=st.integers(min_value=1, max_value=72))
    def advance_hours(self, hours: int) -> None:
        self.steps.append({"advance": {"hours": hours}})
        self.sb.advance(hours=hours)

    @rule(days=st.integers(min_value=1, max_value=60))
    def advance_days(self, days: int) -> None:
        self.steps.append({"advance": {"days": days}})
        self.sb.advance(days=days)

    @precondition(lambda self: bool(self._ids(_CLOSED, _RETURNED, SessionState.CANCELLED)))
    @rule(data=st.data())
    def illegal_move_changes_nothing(self, data: st.DataObject) -> None:
        """Re-closing or reopening what cannot be is refused, and nothing changes."""
        ids = self._ids(_CLOSED, _RETURNED, SessionState.CANCELLED)
        session_id = data.draw(st.sampled_from(ids), label="session_id")
        stored = self.sb.get_session(session_id)
        before = self.sb.snapshot()
        try:
            if stored.state is _CLOSED:
                self.sb.update(session_id, attrs.evolve(stored.submitted, state=_CLOSED))
            else:
                self.sb.reopen(session_id)
        except TransitionError:
            pass
        else:
            raise InvariantViolation(
                "illegal_moves_refused",
                f"an illegal move from {stored.state.value!r} was accepted",
                session_id=session_id,
            )
        if self.sb.snapshot() != before:
            raise InvariantViolation(
                "illegal_moves_refused",
                "a refused move changed the sandbox",
                session_id=session_id,
            )

    # -- after every step -------------------------------------------------------------

    @invariant()
    def sandbox_invariants(self) -> None:
        if hasattr(self, "sb"):
            check_sandbox(self.sb)
