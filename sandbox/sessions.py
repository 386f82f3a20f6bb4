"""The session store and its lifecycle: which state changes are legal, and what an
update evaluates and stores (V1 replaces, V2 merges).

States (Talon.One's): open -> closed | cancelled; closed -> cancelled (update),
partially_returned (a return), open (reopen); partially_returned -> cancelled, or
another return. A new session starts open or closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from sandbox._html import html_of
from sandbox.errors import Problem, TransitionError, ValidationError
from sandbox.ledger import Charge
from sandbox.models import (
    AnySession,
    NewCustomerSession,
    NewCustomerSessionV2,
    ReturnedCartItem,
    SessionState,
    cross_field_rules,
    wire_name,
)
from sandbox.models import replace as replace_model
from sandbox.state import Effect, SessionMeta

if TYPE_CHECKING:
    from sandbox.engine import Evaluation

__all__ = [
    "Move",
    "SessionStore",
    "StoredSession",
    "as_v2",
    "legal_moves",
    "move",
]

ZERO = Decimal(0)
IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long an Idempotency-Key answers its first answer (Talon.One keeps them 24 hours)."""
OPEN = SessionState.OPEN
CLOSED = SessionState.CLOSED
CANCELLED = SessionState.CANCELLED
PARTIALLY_RETURNED = SessionState.PARTIALLY_RETURNED
COMMITTED = (CLOSED, PARTIALLY_RETURNED)

# Legal moves by update (PUT), from each stored state (None: a new session).
# reopen and return_items have their own methods.
UPDATE_MOVES: dict[SessionState | None, tuple[SessionState, ...]] = {
    None: (OPEN, CLOSED),
    OPEN: (OPEN, CLOSED, CANCELLED),
    CLOSED: (CANCELLED,),
    PARTIALLY_RETURNED: (CANCELLED,),
    CANCELLED: (),
}
_OTHER_MOVES: dict[SessionState | None, tuple[str, ...]] = {
    CLOSED: ("open (sb.reopen)", "partially_returned (sb.return_items)"),
    PARTIALLY_RETURNED: ("partially_returned (sb.return_items)",),
}


def legal_moves(current: SessionState | None) -> list[str]:
    """What a session in ``current`` may become, for error messages."""
    return [s.value for s in UPDATE_MOVES[current]] + list(_OTHER_MOVES.get(current, ()))


@attrs.frozen
class StoredSession:
    """A session as the store keeps it.

    ``submitted`` is what the client sent last; ``closed_with`` the evaluation
    committed at close; ``committed`` what is still on the counters (returns
    release part of it); ``discounts_left`` each committed discount's value
    not yet rolled back; ``returned`` quantities by cart position.
    """

    session_id: str
    submitted: AnySession
    state: SessionState
    effects: tuple[Effect, ...]
    closed_with: Evaluation | None = None
    committed: tuple[Charge, ...] = ()
    discounts_left: tuple[tuple[int, Decimal], ...] = ()
    returned: tuple[int, ...] = ()
    sales_left: Decimal = ZERO
    meta: SessionMeta | None = None
    returns: tuple[tuple[int, datetime, tuple[ReturnedCartItem, ...]], ...] = ()
    """Each return so far: its id, when, and what it returned (``previousReturns``)."""
    created: tuple[str, ...] = ()
    """The codes its close created (they stay through a cancel or reopen)."""

    @property
    def session(self) -> AnySession:
        """The session with its current state and returned quantities."""
        items = self.submitted.cart_items
        if items is not None and any(self.returned):
            items = tuple(
                replace_model(item, returned_quantity=back, remaining_quantity=item.quantity - back)
                for item, back in zip(items, self.returned, strict=True)
            )
        return replace_model(self.submitted, state=self.state, cart_items=items)

    def _repr_html_(self) -> str:
        return html_of(self)


class SessionStore:
    """The stored sessions, each profile's first session, and the count of stored
    updates (the id of the last event)."""

    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}
        self.first_sessions: dict[str, str] = {}  # profile -> the id of its first session
        self.events = 0
        # Idempotency-Key -> (what was asked, when, the first answer), kept 24 hours.
        self.idempotency: dict[str, tuple[Any, datetime, Any]] = {}

    def idempotent(self, key: str, asked: Any, now: datetime) -> Any:
        """The first answer to a request made again with its idempotency key (None: a
        new key, or one older than 24 hours); the key reused for another request is a
        ValidationError."""
        for old, (_, at, _) in list(self.idempotency.items()):
            if now - at >= IDEMPOTENCY_WINDOW:
                del self.idempotency[old]
        found = self.idempotency.get(key)
        if found is None:
            return None
        first_asked, at, answer = found
        if first_asked != asked:
            raise ValidationError(
                [
                    Problem(
                        "Idempotency-Key",
                        f"the key {key!r} was used at {at.isoformat()} for another request "
                        f"(session {first_asked[0]!r}); send a new key for a new request",
                    )
                ],
                subject="return",
            )
        return answer

    def remember(self, key: str, asked: Any, now: datetime, answer: Any) -> None:
        self.idempotency[key] = (asked, now, answer)

    def get(self, session_id: str) -> StoredSession | None:
        return self.sessions.get(session_id)

    def keep(self, stored: StoredSession) -> None:
        """Store a session (an update or close), noting a profile's first session."""
        self.events += 1
        profile = stored.submitted.profile_id
        if profile:
            self.first_sessions.setdefault(profile, stored.session_id)
        self.sessions[stored.session_id] = stored

    def replace(self, stored: StoredSession) -> None:
        """Store a session's new state (a cancel, reopen or return)."""
        self.sessions[stored.session_id] = stored

    def next_number(self) -> int:
        # Sessions are never deleted, so the next one's number is the count so far plus one.
        return len(self.sessions) + 1

    def meta(
        self,
        session_id: str,
        stored: StoredSession | None,
        session: AnySession,
        at: datetime,
        application_id: int,
    ) -> SessionMeta:
        """The CustomerSessionV2 fields of this answer; a dry run gets what the real one would."""
        profile = session.profile_id
        first = not profile or self.first_sessions.get(profile, session_id) == session_id
        if stored is not None and stored.meta is not None:
            meta = stored.meta
            return SessionMeta(
                meta.id, meta.created, at, meta.application_id, first, meta.update_count + 1
            )
        return SessionMeta(self.next_number(), at, at, application_id, first, 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sessions)

    def __len__(self) -> int:
        return len(self.sessions)


def touched(stored: StoredSession, at: datetime) -> SessionMeta:
    """The stored session's meta after one more update (a cancel, reopen or return)."""
    assert stored.meta is not None  # every stored session has one
    meta = stored.meta
    return SessionMeta(
        meta.id, meta.created, at, meta.application_id, meta.first_session, meta.update_count + 1
    )


# ---------------------------------------------------------------------------
# The transition of an update


@attrs.frozen
class Move:
    """What an update does to a session: from ``current`` to ``asked``, evaluating
    ``session`` (merged or replaced), or rolling back what its close committed."""

    session_id: str
    stored: StoredSession | None
    current: SessionState | None
    asked: SessionState
    session: AnySession

    @property
    def rolls_back(self) -> bool:
        """A cancel of a committed session: what its close committed goes back."""
        return self.asked is CANCELLED and self.current in COMMITTED

    @property
    def cancels_open(self) -> bool:
        """A cancel of an open session: nothing was committed, nothing to roll back."""
        return self.asked is CANCELLED and self.current is OPEN


def move(
    session_id: str,
    stored: StoredSession | None,
    asked_session: AnySession,
    *,
    dry: bool,
    prefix: str,
) -> Move:
    """Check an update's transition and work out what it evaluates, or raise.

    A :class:`TransitionError` names both states and the legal moves; a cancel of a
    committed session may repeat the stored fields, but a field that differs is one.
    """
    current = stored.state if stored else None
    asked = _asked_state(asked_session, current)
    if asked not in UPDATE_MOVES[current]:
        raise TransitionError(
            session_id,
            current.value if current else None,
            asked.value,
            legal_moves(current),
            detail=_why_not(current, asked),
        )
    session = _session_to_evaluate(asked_session, stored, asked, dry=dry, prefix=prefix)
    if asked is CANCELLED and stored is not None and current in COMMITTED:
        _check_repeats(session_id, stored, asked_session)
    return Move(session_id, stored, current, asked, session)


def _why_not(current: SessionState | None, asked: SessionState) -> str:
    if current is None:
        return "a new session starts as open or closed"
    if current is CLOSED and asked is CLOSED:
        return "the session is already closed; a closed session cannot be changed, only cancelled, reopened or returned"
    if current is CLOSED and asked is OPEN:
        return "use sb.reopen(session_id) to reopen a closed session"
    if asked is PARTIALLY_RETURNED:
        return "use sb.return_items(session_id, items) to return items"
    if current is CANCELLED:
        return "a cancelled session is final"
    return ""


def as_v2(session: AnySession) -> NewCustomerSessionV2:
    """A session in V2 form: ``coupon`` -> ``couponCodes``, ``referral`` ->
    ``referralCode``; a V1 client ``total`` has no V2 field (V2 computes it)."""
    if isinstance(session, NewCustomerSessionV2):
        return session
    return NewCustomerSessionV2(
        profile_id=session.profile_id,
        coupon_codes=(session.coupon,) if session.coupon is not None else None,
        referral_code=session.referral,
        state=session.state,
        cart_items=session.cart_items,
        identifiers=session.identifiers,
        attributes=session.attributes,
    )


def _merged_v2(stored: NewCustomerSessionV2, asked: NewCustomerSessionV2) -> NewCustomerSessionV2:
    """Talon.One's merge: a field sent replaces the stored one (arrays
    and maps wholesale), a field left out keeps it; ``referralCode: ""`` discards."""
    changes = {
        a.name: getattr(asked, a.name)
        for a in attrs.fields(NewCustomerSessionV2)
        if getattr(asked, a.name) is not None
    }
    if changes.get("referral_code") == "":
        changes["referral_code"] = None
    return replace_model(stored, **changes)


def _asked_state(session: AnySession, current: SessionState | None) -> SessionState:
    if session.state is not None:
        return session.state
    # A V2 update without a state keeps the stored one; a new session starts open.
    return current or OPEN


def _session_to_evaluate(
    asked: AnySession,
    stored: StoredSession | None,
    state: SessionState,
    *,
    dry: bool,
    prefix: str = "",
) -> AnySession:
    """What the update evaluates and stores.

    V1 replaces the stored session (an open session's cancel keeps the fields it
    leaves out). V2 merges onto the stored session, in V2 form; a V2 dry run
    evaluates the payload alone.
    """
    if isinstance(asked, NewCustomerSession):
        if state is not CANCELLED or stored is None:
            return asked
        if isinstance(stored.submitted, NewCustomerSession):
            changes = {
                a.name: getattr(asked, a.name)
                for a in attrs.fields(NewCustomerSession)
                if getattr(asked, a.name) is not None
            }
            return replace_model(stored.submitted, **changes)
        asked = as_v2(asked)  # a V1 request as the V2 fields it sent (its state counts)
    if dry or stored is None:
        merged = asked
        if merged.referral_code == "":
            merged = replace_model(merged, referral_code=None)
    else:
        merged = _merged_v2(as_v2(stored.submitted), asked)
        # Each part was in bounds; the stored cart with the new costs (or the reverse)
        # may not be.
        rules = cross_field_rules(NewCustomerSessionV2)
        problems = [p.within(prefix) for p in rules(merged)] if rules else []
        if problems:
            raise ValidationError(problems, subject="session (merged onto the stored one)")
    return replace_model(merged, state=state)


def _check_repeats(session_id: str, stored: StoredSession, asked: AnySession) -> None:
    """A cancel may repeat the stored fields; a field that differs is an error."""
    if type(asked) is type(stored.submitted):
        before: AnySession = stored.submitted
        sent = asked
    else:
        before, sent = as_v2(stored.submitted), as_v2(asked)
    for field in attrs.fields(type(sent)):
        if field.name == "state":
            continue
        value = getattr(sent, field.name)
        if value is not None and value != getattr(before, field.name):
            raise TransitionError(
                session_id,
                stored.state.value,
                CANCELLED.value,
                legal_moves(stored.state),
                detail=f"a {stored.state.value} session can only be cancelled as it is, "
                f"but {wire_name(field)!r} differs from the stored value",
            )


def check_can(
    session_id: str, stored: StoredSession, wanted: SessionState, allowed: Any, detail: str
) -> None:
    """A reopen or return from a state that does not allow it is a TransitionError."""
    if stored.state not in allowed:
        raise TransitionError(
            session_id, stored.state.value, wanted.value, legal_moves(stored.state), detail=detail
        )
