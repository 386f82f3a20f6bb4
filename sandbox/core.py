"""The Sandbox: inventory, clock, session store and ledger behind one lock.

``Sandbox.update`` mirrors Talon.One's ``updateCustomerSession``: validate,
check the state transition, evaluate (pure), then, unless it is a dry run,
store the session and commit or roll back counters. An update that raises
changes nothing.
"""

from __future__ import annotations

import contextlib
import decimal
import difflib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any

import attrs

from sandbox.codec import from_wire
from sandbox.engine import Evaluation, Settings, World, evaluate
from sandbox.errors import (
    DefinitionError,
    Problem,
    ReentrantCallError,
    TransitionError,
    UnknownEntityError,
    ValidationError,
)
from sandbox.ledger import Charge, CounterKey, Ledger, LockedView, ProfileStats, usage_key
from sandbox.models import (
    ARITHMETIC,
    MAX_ID_LENGTH,
    NewCustomerSession,
    ReturnedCartItem,
    SessionState,
    check_total,
    describe,
    hint_candidate,
)
from sandbox.rules import (
    Campaign,
    Coupon,
    Group,
    Limit,
    Referral,
    check_code_shape,
    enum_value,
    parse_time,
)
from sandbox.state import Effect, IntegrationState
from sandbox.talon import CampaignState, EffectType, GroupMode, LimitAction

__all__ = ["CouponView", "LimitCounter", "ReferralView", "Sandbox", "StoredSession"]

ZERO = Decimal(0)
CASE_SENSITIVITY = ("insensitive-uppercase", "insensitive-lowercase", "sensitive")
ROUNDINGS = (
    decimal.ROUND_HALF_EVEN,
    decimal.ROUND_HALF_UP,
    decimal.ROUND_HALF_DOWN,
    decimal.ROUND_UP,
    decimal.ROUND_DOWN,
    decimal.ROUND_CEILING,
    decimal.ROUND_FLOOR,
    decimal.ROUND_05UP,
)

# Legal moves by update (PUT), from each stored state (None: a new session).
# reopen and return_items have their own methods (reference section 2.1).
_UPDATE_MOVES: dict[SessionState | None, tuple[SessionState, ...]] = {
    None: (SessionState.OPEN, SessionState.CLOSED),
    SessionState.OPEN: (SessionState.OPEN, SessionState.CLOSED, SessionState.CANCELLED),
    SessionState.CLOSED: (SessionState.CANCELLED,),
    SessionState.PARTIALLY_RETURNED: (SessionState.CANCELLED,),
    SessionState.CANCELLED: (),
}
_OTHER_MOVES: dict[SessionState | None, tuple[str, ...]] = {
    SessionState.CLOSED: ("open (sb.reopen)", "partially_returned (sb.return_items)"),
    SessionState.PARTIALLY_RETURNED: ("partially_returned (sb.return_items)",),
}


def _legal(current: SessionState | None) -> list[str]:
    return [s.value for s in _UPDATE_MOVES[current]] + list(_OTHER_MOVES.get(current, ()))


@attrs.frozen
class CouponView:
    """A coupon with its live usage counter."""

    code: str
    campaign_id: int
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    recipient: str | None
    id: int


@attrs.frozen
class ReferralView:
    code: str
    campaign_id: int
    advocate: str
    friend: str | None
    usage_limit: int
    usage_counter: int
    start_date: datetime | None
    expiry_date: datetime | None
    id: int


@attrs.frozen
class LimitCounter:
    """A limit counter with its remaining room (Talon.One's ``LimitCounter``)."""

    campaign_id: int
    campaign_name: str
    action: str
    scope: Mapping[str, str]
    period: str | None
    bucket: str | None
    limit: Decimal
    counter: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.limit - self.counter, ZERO)


@attrs.frozen
class StoredSession:
    """A session as the store keeps it.

    ``submitted`` is what the client sent last; ``closed_with`` the evaluation
    committed at close; ``committed`` what is still on the counters (returns
    release part of it); ``discounts_left`` each committed discount's value
    not yet rolled back; ``returned`` quantities by cart position.
    """

    session_id: str
    submitted: NewCustomerSession
    state: SessionState
    effects: tuple[Effect, ...]
    closed_with: Evaluation | None = None
    committed: tuple[Charge, ...] = ()
    discounts_left: tuple[tuple[int, Decimal], ...] = ()
    returned: tuple[int, ...] = ()
    sales_left: Decimal = ZERO

    @property
    def session(self) -> NewCustomerSession:
        """The session with its current state and returned quantities."""
        items = self.submitted.cart_items
        if items is not None and any(self.returned):
            items = tuple(
                attrs.evolve(item, returned_quantity=back, remaining_quantity=item.quantity - back)
                for item, back in zip(items, self.returned, strict=True)
            )
        return attrs.evolve(self.submitted, state=self.state, cart_items=items)


class Sandbox:
    """A local Talon.One Application: campaigns, codes, limits, sessions.

    >>> sb = Sandbox(now="2026-12-01T10:00:00Z")
    >>> sb.now.isoformat()
    '2026-12-01T10:00:00+00:00'
    """

    def __init__(
        self,
        now: Any = None,
        *,
        precision: int = 2,
        partial_discounts: bool = False,
        case_sensitivity: str = "insensitive-uppercase",
        strict_total: bool = True,
        rounding: str = ROUND_HALF_EVEN,
    ) -> None:
        if type(precision) is not int or not 0 <= precision <= 8:
            raise DefinitionError(
                f"Sandbox(precision=...) must be an integer from 0 to 8, got {precision!r}"
            )
        if case_sensitivity not in CASE_SENSITIVITY:
            raise DefinitionError(
                f"Sandbox(case_sensitivity=...) must be one of {', '.join(map(repr, CASE_SENSITIVITY))}, "
                f"got {case_sensitivity!r}"
            )
        if rounding not in ROUNDINGS:
            raise DefinitionError(
                f"Sandbox(rounding=...) must be one of {', '.join(ROUNDINGS)}, got {rounding!r}"
            )
        if now is None:
            # A fixed clock is what makes evaluations repeatable; there is no default.
            raise DefinitionError(
                "Sandbox(now=...) is required: the sandbox's fixed clock, e.g. "
                "Sandbox(now='2026-12-01T10:00:00Z'); move it with sb.advance(days=1)"
            )
        self._now = parse_time(now, "Sandbox(now=...)")
        self.settings = Settings(
            precision=precision, partial_discounts=bool(partial_discounts), rounding=rounding
        )
        self.case_sensitivity = case_sensitivity
        self.strict_total = bool(strict_total)
        normalizers: dict[str, Callable[[str], str]] = {
            "insensitive-uppercase": str.upper,
            "insensitive-lowercase": str.lower,
            "sensitive": str,
        }
        self._normalize = normalizers[case_sensitivity]
        self._lock = threading.RLock()
        self._ids = {
            "campaign": itertools.count(1),
            "coupon": itertools.count(1),
            "referral": itertools.count(1),
            "group": itertools.count(2),
        }
        self._campaigns: list[Campaign] = []
        self._groups: list[Group] = []
        self._coupons: dict[str, tuple[Campaign, Coupon]] = {}
        self._referrals: dict[str, tuple[Campaign, Referral]] = {}
        self._sessions: dict[str, StoredSession] = {}
        self.ledger = Ledger(self._lock)
        # True while this sandbox runs user rules (under the lock, so only the
        # evaluating thread can see it): a rule calling back in is refused.
        self._evaluating = False

    def __repr__(self) -> str:
        return (
            f"<Sandbox now={self._now.isoformat()} campaigns={len(self._campaigns)} "
            f"coupons={len(self._coupons)} referrals={len(self._referrals)} sessions={len(self._sessions)}>"
        )

    # -- clock --------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._now

    def set_now(self, now: Any) -> None:
        """Move the clock to ``now`` (an ISO string or an aware datetime)."""
        parsed = parse_time(now, "set_now(...)")
        with self._mutating("sb.set_now()"):
            self._now = parsed

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward, e.g. ``sb.advance(days=1)``; returns the new time."""
        try:
            step = timedelta(**delta)
        except TypeError as exc:
            raise DefinitionError(
                f"advance() takes timedelta keywords (days=, hours=, ...): {exc}"
            ) from None
        except (OverflowError, ValueError) as exc:
            shown = ", ".join(f"{k}={describe(v)}" for k, v in delta.items())
            raise DefinitionError(
                f"advance({shown}): not a usable time span ({exc}); "
                "give finite numbers, e.g. advance(days=1)"
            ) from None
        if step < timedelta(0):
            raise DefinitionError(
                f"advance() moves forward only; use set_now() to go back, got {step}"
            )
        with self._mutating("sb.advance()"):
            try:
                self._now += step
            except OverflowError:
                raise DefinitionError(
                    f"advance() by {step} would move the clock past the year 9999 "
                    f"(it is {self._now.isoformat()})"
                ) from None
            return self._now

    @contextlib.contextmanager
    def _mutating(self, call: str) -> Iterator[None]:
        """Hold the lock for a change; refuse one made from inside a rule."""
        with self._lock:
            if self._evaluating:
                raise ReentrantCallError(call)
            yield

    # -- inventory ----------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    def normalize_code(self, code: str) -> str:
        """A code as stored under this sandbox's case sensitivity."""
        return self._normalize(code)

    def _check_new_code(self, code: Any, kind: str, where: str) -> str:
        stored = self._normalize(check_code_shape(code, kind, where))
        with self._lock:
            self._check_free(stored, where)
        return stored

    def _check_free(self, stored: str, where: str) -> None:
        if stored in self._coupons or stored in self._referrals:
            owner = (self._coupons.get(stored) or self._referrals[stored])[0]
            raise DefinitionError(
                f"{where}: the code {stored!r} already exists in campaign {owner.name!r} "
                f"(codes are unique per sandbox, compared {self.case_sensitivity})"
            )

    def _register_code(
        self, code: str, campaign: Campaign, definition: Coupon | Referral, where: str
    ) -> None:
        """Called under the lock; checks again, as another thread may have added the code
        since ``_check_new_code``."""
        self._check_free(code, where)
        if isinstance(definition, Coupon):
            self._coupons[code] = (campaign, definition)
        else:
            self._referrals[code] = (campaign, definition)

    def group(self, name: str, mode: str = "listOrder") -> Group:
        """An evaluation group: stackable, listOrder, highestDiscount or lowestDiscount."""
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"group(name) must be a non-empty string, got {name!r}")
        group_mode: GroupMode = enum_value(GroupMode, mode, f"group {name!r}: mode")
        with self._mutating("sb.group()"):
            if any(g.name == name for g in self._groups):
                raise DefinitionError(f"group {name!r} already exists")
            group = Group(self._next_id("group"), name, group_mode)
            self._groups.append(group)
        return group

    def campaign(
        self,
        name: str,
        *,
        state: str = "enabled",
        start: Any = None,
        end: Any = None,
        limits: Iterable[Limit] = (),
        group: Group | None = None,
    ) -> Campaign:
        """A new campaign, evaluated after those made before it."""
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"campaign(name) must be a non-empty string, got {name!r}")
        where = f"campaign {name!r}"
        campaign_state: CampaignState = enum_value(CampaignState, state, f"{where}: state")
        start_time = None if start is None else parse_time(start, f"{where}: start")
        end_time = None if end is None else parse_time(end, f"{where}: end")
        if start_time and end_time and end_time < start_time:
            raise DefinitionError(
                f"{where}: end {end_time.isoformat()} is before start {start_time.isoformat()}"
            )
        if isinstance(limits, Limit):
            limits = [limits]
        limit_list = tuple(limits)
        seen: dict[Any, int] = {}
        for i, limit in enumerate(limit_list):
            if not isinstance(limit, Limit):
                raise DefinitionError(
                    f"{where}: limits[{i}] must be a sandbox.Limit, got {limit!r}"
                )
            scope = (limit.action, frozenset(limit.entities), limit.period)
            if scope in seen:
                raise DefinitionError(
                    f"{where}: limits[{i}] ({limit.describe()}) counts the same thing as "
                    f"limits[{seen[scope]}]; keep one of them"
                )
            seen[scope] = i
        if group is not None and (not isinstance(group, Group) or group not in self._groups):
            raise DefinitionError(
                f"{where}: group must come from this sandbox's group(), got {group!r}"
            )
        with self._mutating("sb.campaign()"):
            if any(c.name == name for c in self._campaigns):
                raise DefinitionError(f"{where} already exists")
            campaign = Campaign(
                self,
                self._next_id("campaign"),
                name,
                state=campaign_state,
                start=start_time,
                end=end_time,
                limits=limit_list,
                group=group,
            )
            self._campaigns.append(campaign)
        return campaign

    @property
    def campaigns(self) -> tuple[Campaign, ...]:
        return tuple(self._campaigns)

    def get_campaign(self, name_or_id: str | int) -> Campaign:
        for campaign in self._campaigns:
            if name_or_id in (campaign.name, campaign.id):
                return campaign
        raise UnknownEntityError(
            f"no campaign {describe(name_or_id)}{_close(str(name_or_id), [c.name for c in self._campaigns])}"
        )

    # -- reads ----------------------------------------------------------------

    def _coupon_entry(self, code: str) -> tuple[Campaign, Coupon]:
        entry: tuple[Campaign, Coupon] = self._lookup(self._coupons, code, "coupon")
        return entry

    def _lookup(self, index: Mapping[str, Any], code: str, kind: str) -> Any:
        if not isinstance(code, str) or self._normalize(code) not in index:
            raise UnknownEntityError(f"no {kind} {describe(code)}{_close(str(code), index)}")
        return index[self._normalize(code)]

    def get_coupon(self, code: str) -> CouponView:
        """A coupon with its usage counter (the number of closed sessions that redeemed it)."""
        with self._lock:
            campaign, coupon = self._coupon_entry(code)
            used = self.ledger.counter(usage_key(campaign.id, "coupon", coupon.code))
            return CouponView(
                coupon.code,
                campaign.id,
                coupon.usage_limit,
                int(used),
                coupon.start_date,
                coupon.expiry_date,
                coupon.recipient,
                coupon.id,
            )

    def get_referral(self, code: str) -> ReferralView:
        with self._lock:
            campaign, referral = self._lookup(self._referrals, code, "referral")
            used = self.ledger.counter(usage_key(campaign.id, "referral", referral.code))
            return ReferralView(
                referral.code,
                campaign.id,
                referral.advocate,
                referral.friend,
                referral.usage_limit,
                int(used),
                referral.start_date,
                referral.expiry_date,
                referral.id,
            )

    def get_session(self, session_id: str) -> StoredSession:
        _check_session_id(session_id)
        with self._lock:
            if session_id not in self._sessions:
                raise UnknownEntityError(
                    f"no session {session_id!r}{_close(session_id, self._sessions)}"
                )
            return self._sessions[session_id]

    @property
    def sessions(self) -> Mapping[str, StoredSession]:
        """The stored sessions by id: a read-only view, safe to iterate while other
        threads update (iteration works on a copy)."""
        return LockedView(self._sessions, self._lock)

    def get_profile(self, profile_id: str) -> ProfileStats:
        _check_id(profile_id, "a profile id")
        with self._lock:
            stats = self.ledger.profile(profile_id)
            if stats is None:
                raise UnknownEntityError(
                    f"no profile {profile_id!r}{_close(profile_id, self.ledger.profiles)}"
                )
            return stats

    def limit_counters(self) -> list[LimitCounter]:
        """Every limit counter that has moved, with its limit and remaining room."""
        with self._lock:
            found = []
            by_id = {c.id: c for c in self._campaigns}
            for key, value in self.ledger.counters.items():
                campaign = by_id[key.campaign_id]
                limit = _limit_for(campaign, key)
                if limit is None:
                    continue
                found.append(
                    LimitCounter(
                        campaign.id,
                        campaign.name,
                        key.action,
                        dict(key.scope),
                        key.period.value if key.period else None,
                        key.bucket,
                        limit.limit,
                        value,
                    )
                )
            return sorted(
                found,
                key=lambda c: (c.campaign_id, c.action, sorted(c.scope.items()), c.bucket or ""),
            )

    def snapshot(self) -> tuple[Any, ...]:
        """Everything an update may change, comparable with ``==``."""
        with self._lock:
            return (self.ledger.snapshot(), dict(self._sessions))

    # -- evaluation -------------------------------------------------------------

    def _world(self) -> World:
        return World(
            campaigns=tuple(self._campaigns),
            coupons=MappingProxyType(self._coupons),
            referrals=MappingProxyType(self._referrals),
            counters=self.ledger.live_counters,
            now=self._now,
            settings=self.settings,
            normalize=self._normalize,
        )

    def evaluate(self, session: NewCustomerSession | Mapping[str, Any]) -> Evaluation:
        """Evaluate a session without any lifecycle or storage (the engine, directly)."""
        parsed = self._structure(session)
        with self._mutating("sb.evaluate()"), decimal.localcontext(ARITHMETIC):
            return self._run_engine(parsed)

    def _run_engine(self, session: NewCustomerSession) -> Evaluation:
        """The engine, with user rules marked as running (see :meth:`_mutating`)."""
        self._evaluating = True
        try:
            return evaluate(session, self._world())
        finally:
            self._evaluating = False

    def _structure(self, payload: Any) -> NewCustomerSession:
        if isinstance(payload, NewCustomerSession):
            if self.strict_total:
                check_total(payload)
            return payload
        if isinstance(payload, Mapping):
            return from_wire(NewCustomerSession, payload, strict_total=self.strict_total)
        raise ValidationError(
            [
                Problem(
                    "",
                    f"a session must be a NewCustomerSession or a camelCase dict, got {type(payload).__name__}",
                )
            ]
        )

    # -- lifecycle ---------------------------------------------------------------

    def update(
        self, session_id: str, session: NewCustomerSession | Mapping[str, Any], *, dry: bool = False
    ) -> IntegrationState:
        """Talon.One's ``updateCustomerSession``: evaluate, and store unless ``dry``.

        Updating an open (or closing) session replaces its stored version with the
        request, as the seed's V1 model is used here; only a cancel keeps the stored
        fields the request leaves out. A dry run answers exactly what the same real
        update would, and stores nothing.
        """
        _check_session_id(session_id)
        parsed = self._structure(session)
        with self._mutating("sb.update()"), decimal.localcontext(ARITHMETIC):
            stored = self._sessions.get(session_id)
            current = stored.state if stored else None
            asked = parsed.state
            if asked not in _UPDATE_MOVES[current]:
                raise TransitionError(
                    session_id,
                    current.value if current else None,
                    asked.value,
                    _legal(current),
                    detail=_why_not(current, asked),
                )
            if (
                asked is SessionState.CANCELLED
                and stored is not None
                and current is not SessionState.OPEN
            ):
                _check_repeats(session_id, stored, parsed)
                return self._rollback(stored, SessionState.CANCELLED, dry=dry)
            if asked is SessionState.CANCELLED:
                # open -> cancelled: nothing was committed, nothing to roll back. Fields the
                # request leaves out keep their stored values (Talon.One's PUT builds on them).
                assert stored is not None
                kept = _merged(stored.submitted, parsed)
                result = IntegrationState(session_id, kept, (), dry=dry, action="cancel")
                if not dry:
                    self._sessions[session_id] = StoredSession(
                        session_id, kept, SessionState.CANCELLED, ()
                    )
                return result
            evaluation = self._run_engine(parsed)
            state = IntegrationState(
                session_id,
                parsed,
                evaluation.effects,
                evaluation.failures,
                trace=evaluation.trace,
                dry=dry,
            )
            if dry:
                return state
            # All of the new state is built before anything is stored, and the ledger
            # checks everything before its first write: a close that raises changes nothing.
            if asked is SessionState.CLOSED:
                new_stored = StoredSession(
                    session_id,
                    parsed,
                    SessionState.CLOSED,
                    evaluation.effects,
                    closed_with=evaluation,
                    committed=evaluation.charges,
                    discounts_left=tuple(
                        (i, e.props["value"])
                        for i, e in enumerate(evaluation.effects)
                        if e.effect_type.is_discount
                    ),
                    returned=tuple(0 for _ in parsed.cart_items or ()),
                    sales_left=parsed.effective_total,
                )
                self.ledger.commit(
                    evaluation.charges, profile=parsed.profile_id, sales=parsed.effective_total
                )
            else:
                new_stored = StoredSession(
                    session_id, parsed, SessionState.OPEN, evaluation.effects
                )
            if parsed.profile_id:
                self.ledger.touch_profile(parsed.profile_id)
            self._sessions[session_id] = new_stored
            return state

    def reopen(self, session_id: str, *, dry: bool = False) -> IntegrationState:
        """Talon.One's ``reopenCustomerSession``: closed -> open, rolling back what close committed."""
        with self._mutating("sb.reopen()"), decimal.localcontext(ARITHMETIC):
            stored = self._require(session_id)
            if stored.state is not SessionState.CLOSED:
                raise TransitionError(
                    session_id,
                    stored.state.value,
                    SessionState.OPEN.value,
                    _legal(stored.state),
                    detail="only a closed session can be reopened",
                )
            return self._rollback(stored, SessionState.OPEN, dry=dry)

    def return_items(
        self,
        session_id: str,
        items: Sequence[ReturnedCartItem | Mapping[str, Any]],
        *,
        dry: bool = False,
    ) -> IntegrationState:
        """Talon.One's ``returnCartItems``: closed -> partially_returned.

        Each item names a cart ``position`` (or a ``sku``) and a ``quantity``
        (default: all that is left). Emits ``rollbackDiscount`` for the
        returned share of discounts and releases that share of money budgets.
        """
        parsed = _returned_items(items)
        with self._mutating("sb.return_items()"), decimal.localcontext(ARITHMETIC):
            stored = self._require(session_id)
            if stored.state not in (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED):
                raise TransitionError(
                    session_id,
                    stored.state.value,
                    SessionState.PARTIALLY_RETURNED.value,
                    _legal(stored.state),
                    detail="only a closed or partially returned session can return items",
                )
            cart = stored.submitted.cart_items or ()
            back = _resolve_returns(parsed, cart, stored.returned)
            returned = tuple(r + b for r, b in zip(stored.returned, back, strict=True))
            evaluation = stored.closed_with
            assert evaluation is not None
            left = dict(stored.discounts_left)
            returned_value = sum(
                (i.line_total * b / i.quantity for i, b in zip(cart, back, strict=True)), ZERO
            )
            rollbacks = _return_shares(
                evaluation.effects, left, cart, stored.returned, back, self.settings
            )
            effects = tuple(
                _rollback_discount(evaluation.effects[i], share) for i, share in rollbacks
            )
            new_left = dict(left)
            for i, share in rollbacks:
                new_left[i] -= share
            releases = _budget_releases(stored.committed, dict(rollbacks))
            new_stored = attrs.evolve(
                stored,
                state=SessionState.PARTIALLY_RETURNED,
                returned=returned,
                discounts_left=tuple(new_left.items()),
                committed=_minus(stored.committed, releases),
                sales_left=_sales_left(stored, cart, returned, returned_value),
            )
            result = IntegrationState(
                session_id, new_stored.session, effects, dry=dry, action="return"
            )
            if not dry:
                self.ledger.release(
                    releases,
                    profile=stored.submitted.profile_id,
                    sales=stored.sales_left - new_stored.sales_left,
                )
                self._sessions[session_id] = new_stored
            return result

    def _require(self, session_id: str) -> StoredSession:
        _check_session_id(session_id)
        if session_id not in self._sessions:
            raise UnknownEntityError(
                f"no session {session_id!r}{_close(session_id, self._sessions)}"
            )
        return self._sessions[session_id]

    def _rollback(self, stored: StoredSession, to: SessionState, *, dry: bool) -> IntegrationState:
        """Cancel or reopen a closed (or partially returned) session: undo every counter it moved."""
        evaluation = stored.closed_with
        assert evaluation is not None
        effects: list[Effect] = []
        for effect in evaluation.effects:
            if effect.effect_type is EffectType.ACCEPT_COUPON:
                effects.append(
                    _rollback_of(effect, EffectType.ROLLBACK_COUPON, {"value": effect.value})
                )
            elif effect.effect_type is EffectType.ACCEPT_REFERRAL:
                effects.append(
                    _rollback_of(effect, EffectType.ROLLBACK_REFERRAL, {"value": effect.value})
                )
        left = dict(stored.discounts_left)
        for index, effect in enumerate(evaluation.effects):
            if effect.effect_type.is_discount and left.get(index):
                effects.append(_rollback_discount(effect, left[index]))
        session = attrs.evolve(stored.session, state=to)
        result = IntegrationState(
            stored.session_id,
            session,
            tuple(effects),
            dry=dry,
            action="reopen" if to is SessionState.OPEN else "cancel",
        )
        if dry:
            return result
        if to is SessionState.OPEN:
            new_stored = StoredSession(
                stored.session_id,
                attrs.evolve(stored.submitted, state=SessionState.OPEN),
                SessionState.OPEN,
                (),
            )
        else:
            new_stored = attrs.evolve(stored, state=to, committed=(), discounts_left=(), effects=())
        self.ledger.release(
            stored.committed,
            profile=stored.submitted.profile_id,
            sessions=1,
            sales=stored.sales_left,
        )
        self._sessions[stored.session_id] = new_stored
        return result


# ---------------------------------------------------------------------------
# helpers


_HINT_POOL = 10_000  # beyond this many names, difflib over all of them costs more than it helps


def _close(name: Any, known: Iterable[str]) -> str:
    names = list(itertools.islice(known, _HINT_POOL + 1))
    if not names:
        return " (there are none yet)"
    candidate = hint_candidate(str(name))
    if candidate is None or len(names) > _HINT_POOL:
        return ""
    match = difflib.get_close_matches(candidate, names, n=1, cutoff=0.6)
    if not match:
        match = [k for k in names if k.lower() == candidate.lower()]
    return f"; did you mean {match[0]!r}?" if match else ""


def _check_id(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ValidationError(
            [
                Problem(
                    "",
                    f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters, "
                    f"got {describe(value)}",
                )
            ],
            subject=what.removeprefix("a "),
        )


def _check_session_id(session_id: Any) -> None:
    _check_id(session_id, "a session id")


def _why_not(current: SessionState | None, asked: SessionState) -> str:
    if current is None:
        return "a new session starts as open or closed"
    if current is SessionState.CLOSED and asked is SessionState.CLOSED:
        return "the session is already closed; a closed session cannot be changed, only cancelled, reopened or returned"
    if current is SessionState.CLOSED and asked is SessionState.OPEN:
        return "use sb.reopen(session_id) to reopen a closed session"
    if asked is SessionState.PARTIALLY_RETURNED:
        return "use sb.return_items(session_id, items) to return items"
    if current is SessionState.CANCELLED:
        return "a cancelled session is final"
    return ""


def _return_shares(
    effects: Sequence[Effect],
    left: Mapping[int, Decimal],
    cart: Sequence[Any],
    before: Sequence[int],
    back: Sequence[int],
    settings: Settings,
) -> list[tuple[int, Decimal]]:
    """(effect index, value to roll back) for each discount a return touches.

    A per-item discount gives back the returned units' share of what is left of
    it; a session discount the returned value's share of what is left of the
    cart. The last units, or the whole cart, take exactly what is left, so the
    rounded shares always add up to the discount.
    """
    quantum = Decimal(1).scaleb(-settings.precision)
    remaining_value = sum(
        (i.line_total * (i.quantity - r) / i.quantity for i, r in zip(cart, before, strict=True)),
        ZERO,
    )
    returned_value = sum(
        (i.line_total * b / i.quantity for i, b in zip(cart, back, strict=True)), ZERO
    )
    everything = all(r + b == i.quantity for r, b, i in zip(before, back, cart, strict=True))
    shares = []
    for index, value in left.items():
        effect = effects[index]
        if effect.effect_type is EffectType.SET_DISCOUNT_PER_ITEM:
            pos = effect.props["position"]
            if not back[pos]:
                continue
            units_left = cart[pos].quantity - before[pos]
            last = back[pos] == units_left
            share = value if last else value * back[pos] / units_left
        else:
            if not returned_value or not remaining_value:
                continue
            share = value if everything else value * returned_value / remaining_value
        share = min(share.quantize(quantum, settings.rounding), value)
        if share:
            shares.append((index, share))
    return shares


def _sales_left(
    stored: StoredSession, cart: Sequence[Any], returned: Sequence[int], returned_value: Decimal
) -> Decimal:
    """totalSales still counted for a session after a return: the returned items' share
    of the total the session closed with (which is the client's total under strict_total=False)."""
    if all(r == item.quantity for r, item in zip(returned, cart, strict=True)):
        return ZERO
    cart_total = stored.submitted.cart_total
    if not cart_total:
        return stored.sales_left
    share = stored.submitted.effective_total * returned_value / cart_total
    return stored.sales_left - share


def _merged(stored: NewCustomerSession, asked: NewCustomerSession) -> NewCustomerSession:
    """``asked`` over ``stored``: a field the request leaves out keeps its stored value."""
    changes = {
        a.name: getattr(asked, a.name)
        for a in attrs.fields(NewCustomerSession)
        if getattr(asked, a.name) is not None
    }
    return attrs.evolve(stored, **changes)


def _check_repeats(session_id: str, stored: StoredSession, asked: NewCustomerSession) -> None:
    """A cancel may repeat the stored fields; a field that differs is an error."""
    for field in attrs.fields(NewCustomerSession):
        if field.name == "state":
            continue
        value = getattr(asked, field.name)
        if value is not None and value != getattr(stored.submitted, field.name):
            from sandbox.models import wire_name

            raise TransitionError(
                session_id,
                stored.state.value,
                asked.state.value,
                _legal(stored.state),
                detail=f"a {stored.state.value} session can only be cancelled as it is, "
                f"but {wire_name(field)!r} differs from the stored value",
            )


def _limit_for(campaign: Campaign, key: CounterKey) -> Limit | None:
    for limit in campaign.limits:
        if (
            limit.action.value == key.action
            and limit.period == key.period
            and tuple(e.value for e in limit.entities) == tuple(k for k, _ in key.scope)
        ):
            return limit
    return None


def _rollback_of(effect: Effect, kind: EffectType, props: dict[str, Any]) -> Effect:
    return attrs.evolve(effect, effect_type=kind, props=props, condition_index=None)


def _rollback_discount(effect: Effect, value: Decimal) -> Effect:
    props: dict[str, Any] = {"name": effect.props["name"], "value": value}
    if effect.effect_type is EffectType.SET_DISCOUNT_PER_ITEM:
        props["cartItemPosition"] = effect.props["position"]
        props["scope"] = "price"
    else:
        props["scope"] = "sessionTotal"
    return _rollback_of(effect, EffectType.ROLLBACK_DISCOUNT, props)


def _budget_releases(
    committed: Sequence[Charge], rolled_back: Mapping[int, Decimal]
) -> list[Charge]:
    """The money-budget share of rolled-back discounts (counts of effects stay)."""
    return [
        Charge(c.key, rolled_back[c.effect_ref], c.effect_ref)
        for c in committed
        if c.effect_ref is not None
        and c.effect_ref in rolled_back
        and c.key.action == LimitAction.SET_DISCOUNT.value
    ]


def _minus(committed: Sequence[Charge], releases: Sequence[Charge]) -> tuple[Charge, ...]:
    out = []
    taken = {(r.key, r.effect_ref): r.amount for r in releases}
    for c in committed:
        amount = c.amount - taken.pop((c.key, c.effect_ref), ZERO)
        if amount:
            out.append(attrs.evolve(c, amount=amount))
    return tuple(out)


def _returned_items(items: Any) -> list[ReturnedCartItem]:
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ValidationError(
            [
                Problem(
                    "/returnedCartItems",
                    f"must be a list of returned items, got {describe(items)}",
                )
            ],
            subject="return",
        )
    parsed: list[ReturnedCartItem] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        if isinstance(item, ReturnedCartItem):
            parsed.append(item)
            continue
        try:
            parsed.append(from_wire(ReturnedCartItem, item))
        except ValidationError as exc:
            problems.extend(p.within(f"/returnedCartItems/{i}") for p in exc.errors)
    if problems:
        raise ValidationError(problems, subject="return")
    if not parsed:
        raise ValidationError(
            [Problem("/returnedCartItems", "must name at least one item to return")],
            subject="return",
        )
    return parsed


def _resolve_returns(
    items: Sequence[ReturnedCartItem], cart: Sequence[Any], returned: Sequence[int]
) -> list[int]:
    back = [0] * len(cart)
    problems: list[Problem] = []
    for i, item in enumerate(items):
        where = f"/returnedCartItems/{i}"
        position = item.position
        if position is None:
            candidates = [
                p
                for p, c in enumerate(cart)
                if c.sku == item.sku and c.quantity - returned[p] - back[p] > 0
            ]
            if not candidates:
                problems.append(
                    Problem(f"{where}/sku", f"no cart item with sku {item.sku!r} is left to return")
                )
                continue
            position = candidates[0]
        elif position >= len(cart):
            problems.append(
                Problem(
                    f"{where}/position", f"the cart has {len(cart)} item(s): no position {position}"
                )
            )
            continue
        elif item.sku is not None and cart[position].sku != item.sku:
            problems.append(
                Problem(
                    f"{where}/sku",
                    f"position {position} holds sku {cart[position].sku!r}, not {item.sku!r}",
                )
            )
            continue
        left = cart[position].quantity - returned[position] - back[position]
        if item.quantity is None and left == 0:
            # No quantity was sent, so the problem is the item named, not a quantity.
            field = "position" if item.position is not None else "sku"
            problems.append(
                Problem(
                    f"{where}/{field}",
                    f"position {position} has no units left to return: all "
                    f"{cart[position].quantity} were returned already",
                )
            )
            continue
        quantity = left if item.quantity is None else item.quantity
        if quantity > left or left == 0:
            problems.append(
                Problem(
                    f"{where}/quantity",
                    f"position {position} has {left} unit(s) left to return, asked {quantity}",
                )
            )
            continue
        back[position] += quantity
    if problems:
        raise ValidationError(problems, subject="return")
    return back
