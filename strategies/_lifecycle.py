"""A Hypothesis state machine that drives session lifecycles through a Sandbox.

Subclass :class:`SessionLifecycle`, override ``make_sandbox`` (and, if you
like, ``sessions``), and run its ``TestCase``; every step's answer and the
whole sandbox are checked against :mod:`sandbox.invariants`.

Sessions are sent as V1 and V2 updates. V2 updates leave fields out, send
``couponCodes: []`` or ``referralCode: ""``, and close or cancel with
``{"state": ...}`` alone, so Talon.One's merge (a field sent replaces, a
field left out keeps, ``[]`` and ``""`` discard) is exercised at every step.
Profile updates (attributes from the rules' constants, sometimes with the
rule engine run) and the codes that rules create at close take part too.

A rule that keeps state outside the sandbox answers the same session
differently the second time; the machine reports that as
:class:`~sandbox.invariants.OutsideStateError` naming the rule, and raises it
again whenever Hypothesis replays the same steps, so the run ends with that
plain message instead of Hypothesis' ``FlakyFailure``.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from hypothesis.strategies import SearchStrategy

from sandbox.codec import dumps, to_wire
from sandbox.conditions import NotABoolError, as_bool
from sandbox.core import Sandbox, as_v2
from sandbox.errors import TransitionError
from sandbox.invariants import (
    OUTSIDE_STATE,
    InvariantViolation,
    OutsideStateError,
    answers_agree,
    check_sandbox,
    check_state,
    deterministic,
    dry_run_changes_nothing,
)
from sandbox.models import AnySession, NewCustomerSession, NewCustomerSessionV2, SessionState
from sandbox.models import replace as replace_model
from sandbox.state import IntegrationState
from sandbox.talon import EffectType
from strategies._inventory import Inventory, inventory
from strategies._profiles import profile_updates
from strategies._sessions import _shown_as, check_version, draw_session
from strategies._sessions import sessions as _sessions

__all__ = ["SessionLifecycle", "inventory_sessions"]

_MAX_SESSIONS = 6
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_RETURNED = SessionState.PARTIALLY_RETURNED
_MERGED_FIELDS = (
    "profile_id",
    "coupon_codes",
    "referral_code",
    "cart_items",
    "additional_costs",
    "identifiers",
    "attributes",
    "state",
)
"""The V2 fields an update may leave out (the stored value stays)."""


def inventory_sessions(sb: Sandbox, *, version: int = 1, **fixed: Any) -> SearchStrategy[Any]:
    """``strategies.sessions(sb, **fixed)``, or the same with codes drawn from the
    sandbox's inventory as it is when drawn (created codes included) or absent:
    a coupon and a referral (``version=2``: up to three coupon codes)."""
    check_version("inventory_sessions", version)
    plain = _sessions(sb, **fixed) if version == 1 else _sessions(sb, version=version, **fixed)
    return st.one_of(plain, _with_inventory_codes(sb, version, fixed))


def _code_strategies(inv: Inventory) -> tuple[Any, Any]:
    found: tuple[Any, Any] | None = inv.memo.get("inventory_codes")
    if found is None:
        coupons = tuple(sorted(e.code for e in inv.of_kind("coupon")))
        referrals = tuple(sorted(e.code for e in inv.of_kind("referral")))
        found = inv.memo["inventory_codes"] = (
            st.sampled_from(coupons) if coupons else None,
            st.sampled_from(referrals) if referrals else None,
        )
    return found


@st.composite
@_shown_as("inventory_sessions")
def _with_inventory_codes(
    draw: st.DrawFn, sb: Sandbox, version: int, fixed: Mapping[str, Any]
) -> AnySession:
    inv = inventory(sb)
    coupons, referrals = _code_strategies(inv)
    referral = draw(st.none() | referrals) if referrals is not None else None
    codes: dict[str, Any]
    if version == 1:
        coupon = draw(st.none() | coupons) if coupons is not None else None
        codes = {"coupon": coupon, "referral": referral}
    else:
        picked = draw(st.lists(coupons, max_size=3, unique=True)) if coupons is not None else []
        codes = {"coupon_codes": tuple(picked) or None, "referral_code": referral}
    return draw_session(draw, sb, {**codes, **fixed}, version, inv)


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


_ANSWERS_KEPT = 20_000
"""How many answers a machine class remembers by the steps that led to them."""


def _answers(cls: type[SessionLifecycle]) -> dict[int, IntegrationState]:
    # Each machine class gets its own record, not its base class's.
    if "answers_by_path" not in cls.__dict__:
        cls.answers_by_path = {}
    return cls.answers_by_path


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
    answers_by_path: ClassVar[dict[int, IntegrationState]]
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

    def sessions(self, sb: Sandbox) -> SearchStrategy[AnySession]:
        """Open sessions to submit; by default ``strategies.sessions(sb)`` in both
        dialects (V1 and V2), half of them carrying the sandbox's own codes so that
        codes get used."""
        return st.one_of(inventory_sessions(sb), inventory_sessions(sb, version=2))

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
        self._profiles = profile_updates(sb)
        self._next = 0
        # The calls made so far, as replayable wire data (what a report shows).
        self.steps: list[dict[str, Any]] = []
        # A fingerprint of self.steps[: self._folded], extended as steps are checked.
        self._path = 0
        self._folded = 0
        # Every lifecycle starts from a few orders, open or closed: the moves below
        # (close, return, reopen, cancel, a returning customer) need something to act on.
        if data is not None:  # (None: called by hand, outside a Hypothesis run)
            for _ in range(data.draw(st.integers(1, 3), label="first orders")):
                self._new_session(data, close=data.draw(st.booleans(), label="closed"))

    def _update(self, session_id: str, session: AnySession) -> IntegrationState:
        self.steps.append({"customerSessionId": session_id, "customerSession": _step(session)})
        return self.sb.update(session_id, session)

    def _ids(self, *states: SessionState) -> list[str]:
        return sorted(i for i, s in self.sb.sessions.items() if s.state in states)

    def _same_as_before(self, state: IntegrationState) -> None:
        """The same steps from a new sandbox must give the same answer.

        Hypothesis replays step sequences while it shrinks: an answer that differs
        from the one the same steps gave before comes from state a rule keeps outside
        the sandbox. Raising here would change the replay's course (Hypothesis would
        call the test flaky); the OutsideStateError naming the rule is made and
        recorded instead (``OutsideStateError.latest``), and the pytest plugin shows it
        when Hypothesis ends the run as flaky."""
        for step in self.steps[self._folded :]:
            self._path = hash((self._path, dumps(step)))
        self._folded = len(self.steps)
        answers = _answers(type(self))
        first = answers.get(self._path)
        if first is None:
            if len(answers) >= _ANSWERS_KEPT:
                answers.pop(next(iter(answers)))
            answers[self._path] = state
            return
        with contextlib.suppress(InvariantViolation):
            answers_agree(
                first,
                state,
                invariant=OUTSIDE_STATE,
                detail="the same steps from a new sandbox answered differently",
                session_id=state.session_id,
            )

    def _check(self, state: IntegrationState) -> None:
        self._same_as_before(state)
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
        if f"s{self._next - 1}" in self.sb.sessions:
            self._maybe_return(data, f"s{self._next - 1}")

    def _fresh_codes(self, profile: str) -> list[str]:
        used = {
            e.value
            for s in self.sb.sessions.values()
            if s.submitted.profile_id == profile
            for e in s.effects
            if e.effect_type is EffectType.ACCEPT_COUPON
        }
        # A few unused codes per campaign are enough, and keep a draw cheap on an
        # inventory of 100,000 coupons.
        return [
            code
            for c in self.sb.campaigns
            for code in itertools.islice((k for k in c.coupons if k not in used), 10)
        ]

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
    def update_open_v2(self, data: st.DataObject) -> None:
        """A V2 update that leaves fields out or discards codes: Talon.One's merge."""
        session_id = data.draw(st.sampled_from(self._ids(_OPEN)), label="session_id")
        full = data.draw(self._strategy, label="session")
        session = data.draw(partial_updates(full), label="update")
        self._check(self._update(session_id, session))

    @precondition(lambda self: bool(self._ids(_OPEN)))
    @rule(data=st.data(), state_only=st.booleans())
    def close(self, data: st.DataObject, state_only: bool) -> None:
        """Close by re-sending the session (V1 or V2 alike), or by a V2 ``{"state":
        "closed"}`` that keeps everything stored."""
        session_id = data.draw(st.sampled_from(self._ids(_OPEN)), label="session_id")
        submitted = self.sb.get_session(session_id).submitted
        closing: AnySession = attrs.evolve(submitted, state=_CLOSED)
        if state_only:
            closing = NewCustomerSessionV2(state=_CLOSED)
        self._check(self._update(session_id, closing))
        self._maybe_return(data, session_id)

    @precondition(lambda self: bool(self._ids(_OPEN, _CLOSED, _RETURNED)))
    @rule(data=st.data(), v2=st.booleans())
    def cancel(self, data: st.DataObject, v2: bool) -> None:
        ids = self._ids(_OPEN, _CLOSED, _RETURNED)
        session_id = data.draw(st.sampled_from(ids), label="session_id")
        cancelled: AnySession = NewCustomerSession(state=SessionState.CANCELLED)
        if v2:
            cancelled = NewCustomerSessionV2(state=SessionState.CANCELLED)
        self._check(self._update(session_id, cancelled))

    @rule(data=st.data(), run_rule_engine=st.booleans())
    def update_profile(self, data: st.DataObject, run_rule_engine: bool) -> None:
        """``updateCustomerProfileV2`` with attributes the profile rules compare against."""
        change = data.draw(self._profiles, label="profile")
        step = change.to_wire()
        if run_rule_engine:
            step["runRuleEngine"] = True
        self.steps.append(step)
        answer = change.apply(self.sb, run_rule_engine=run_rule_engine)
        if answer.evaluation is not None:
            self._check(answer.evaluation)

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
        self._return(session_id, position)

    def _maybe_return(self, data: st.DataObject, session_id: str) -> None:
        """Sometimes part of an order comes back right after its close. (Also a rule of
        its own, but Hypothesis' swarm testing switches rules off for whole runs.)"""
        if self.sb.get_session(session_id).state is not _CLOSED:
            return
        positions = [p for s, p in self._returnable() if s == session_id]
        if positions and data.draw(st.booleans(), label="return part at once") is True:
            self._return(session_id, data.draw(st.sampled_from(positions), label="position"))

    def _return(self, session_id: str, position: int) -> None:
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


def partial_updates(session: AnySession) -> SearchStrategy[NewCustomerSessionV2]:
    """V2 updates made from ``session``: some fields left out (the stored values stay),
    maybe ``coupon_codes=()`` or ``referral_code=""`` (which discard the stored ones)."""
    full = as_v2(session)
    return st.builds(
        _partial,
        st.just(full),
        st.sets(st.sampled_from(_MERGED_FIELDS)),
        st.booleans(),
        st.booleans(),
    )


def _partial(
    full: NewCustomerSessionV2, left_out: set[str], no_coupons: bool, no_referral: bool
) -> NewCustomerSessionV2:
    changes: dict[str, Any] = dict.fromkeys(left_out)
    if no_coupons:
        changes["coupon_codes"] = ()
    if no_referral:
        changes["referral_code"] = ""
    if "state" not in left_out:
        changes["state"] = _OPEN
    return replace_model(full, **changes)


def _step(session: AnySession) -> dict[str, Any]:
    """The session as a replayable wire dict, in its own dialect: a bare dict without
    ``coupon``, ``referral`` or ``total`` reads as V2 (see ``Sandbox.update``), so a V1
    session that sends none of them says ``"coupon": null``."""
    wire: dict[str, Any] = to_wire(session, exact=True)
    if isinstance(session, NewCustomerSession) and not {"coupon", "referral", "total"} & set(wire):
        wire["coupon"] = None
    return wire
