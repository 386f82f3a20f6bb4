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
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

from sandbox.codec import from_wire, session_from_wire
from sandbox.engine import CreatedCode, Evaluation, Plan, Settings, World, compile_plan, evaluate
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
    AnySession,
    IntegrationRequest,
    NewCustomerSession,
    NewCustomerSessionV2,
    ResponseContent,
    ReturnedCartItem,
    SessionState,
    check_total,
    describe,
    hint_candidate,
    surrogate_at,
    surrogate_rule,
)
from sandbox.models import replace as replace_model
from sandbox.profiles import CustomerProfile, ProfileRecord, ProfileUpdate
from sandbox.responses import (
    campaign_wire,
    coupon_wire,
    created_coupon_wire,
    created_referral_wire,
    event_type,
    event_wire,
    referral_wire,
    returns_wire,
    triggered_campaign_ids,
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
from sandbox.state import Effect, IntegrationState, ProfileState, SessionMeta
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
# reopen and return_items have their own methods.
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
    """The codes its close created; a cancel or reopen deletes them again."""

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
        from sandbox.display import stored_session_html

        return stored_session_html(self)


class Sandbox:
    """A local Talon.One Application: campaigns, codes, limits, sessions.

    ``Sandbox.observers`` (a class attribute) are called with every sandbox's every
    evaluation answer, dry or not: rule coverage (:mod:`sandbox.coverage`) listens there.

    >>> sb = Sandbox(now="2026-12-01T10:00:00Z")
    >>> sb.now.isoformat()
    '2026-12-01T10:00:00+00:00'
    """

    observers: ClassVar[list[Callable[[Sandbox, IntegrationState], None]]] = []

    def __init__(
        self,
        now: Any = None,
        *,
        precision: int = 2,
        partial_discounts: bool = False,
        case_sensitivity: str = "insensitive-uppercase",
        strict_total: bool = True,
        rounding: str = ROUND_HALF_EVEN,
        application_id: int = 1,
        flatten_cart_items: bool = True,
    ) -> None:
        if type(application_id) is not int or application_id < 1:
            raise DefinitionError(
                f"Sandbox(application_id=...) must be an integer >= 1, got {application_id!r}"
            )
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
            precision=precision,
            partial_discounts=bool(partial_discounts),
            rounding=rounding,
            flatten_cart_items=bool(flatten_cart_items),
        )
        self.application_id = application_id
        self.case_sensitivity = case_sensitivity
        self.strict_total = bool(strict_total)
        normalizers: dict[str, Callable[[str], str]] = {
            "insensitive-uppercase": str.upper,
            "insensitive-lowercase": str.lower,
            "sensitive": str,
        }
        self._normalize = normalizers[case_sensitivity]
        self._lock = threading.RLock()
        # The last id given of each kind (groups start at 2: 1 is the base group).
        self._ids = {"campaign": 0, "coupon": 0, "referral": 0, "group": 1, "profile": 0}
        self._campaigns: list[Campaign] = []
        self._groups: list[Group] = []
        self._coupons: dict[str, tuple[Campaign, Coupon]] = {}
        self._referrals: dict[str, tuple[Campaign, Referral]] = {}
        self._sessions: dict[str, StoredSession] = {}
        self._first_sessions: dict[str, str] = {}  # profile -> the id of its first session
        self._cost_ids: dict[str, int] = {}  # additional cost name -> additionalCostId
        self._profiles: dict[str, ProfileRecord] = {}  # beside the ledger's counters
        # Codes created by a close and deleted by its rollback: kind and campaign, so the
        # usage they had can still be reconciled.
        self._retired: dict[str, tuple[str, int]] = {}
        self._events = 0  # stored updates so far: the last event's id
        self._version = 0  # of the definitions: each change makes the plan again
        self._plan: Plan | None = None
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
                moved = self._now + step
                moved.astimezone(UTC)  # in range in its own offset, but written back in UTC
                self._now = moved
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

    @contextlib.contextmanager
    def _defining(self, call: str) -> Iterator[None]:
        """A change of the rule set (a campaign, rule, code or group): the compiled plan
        is made again before the next evaluation."""
        with self._mutating(call):
            try:
                yield
            finally:
                self._version += 1

    def _current_plan(self) -> Plan:
        """The rule set compiled, made again when a definition changed since."""
        plan = self._plan
        if plan is None or plan.version != self._version:
            plan = self._plan = compile_plan(self._campaigns, self._version)
        return plan

    # -- inventory ----------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _peek_id(self, kind: str, ahead: int = 1) -> int:
        """The id the ``ahead``-th next entity of ``kind`` will get."""
        return self._ids[kind] + ahead

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
        with self._defining("sb.group()"):
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
        with self._defining("sb.campaign()"):
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

    @property
    def profile_ids(self) -> list[str]:
        """The integration ids of every stored profile, oldest first."""
        with self._lock:
            return list(self._profiles)

    def get_profile(self, profile_id: str) -> CustomerProfile:
        """A customer profile: integration id, created, attributes, closed sessions,
        total sales and last activity (the SDK's ``CustomerProfile``)."""
        _check_id(profile_id, "a profile id")
        with self._lock:
            found = self._profile(profile_id)
            if found is None:
                raise UnknownEntityError(
                    f"no profile {profile_id!r}{_close(profile_id, self._profiles)}"
                )
            return found

    def _profile(
        self, profile_id: str | None, record: ProfileRecord | None = None
    ) -> CustomerProfile | None:
        """The stored profile (or ``record`` in its place), with the ledger's counters."""
        if not profile_id:
            return None
        record = record or self._profiles.get(profile_id)
        if record is None:
            return None
        stats = self.ledger.profile(profile_id) or ProfileStats(profile_id)
        return CustomerProfile(
            profile_id,
            record.id,
            record.created,
            MappingProxyType(dict(record.attributes)),
            stats.closed_sessions,
            stats.total_sales,
            record.last_activity,
        )

    def _touch_profile(self, profile_id: str | None, at: datetime) -> ProfileRecord | None:
        """The profile's record after an activity at ``at`` (created if new); not stored."""
        if not profile_id:
            return None
        old = self._profiles.get(profile_id)
        if old is None:
            return ProfileRecord(self._peek_id("profile"), at, {}, at)
        return ProfileRecord(old.id, old.created, old.attributes, at)

    def _keep_profile(self, profile_id: str | None, record: ProfileRecord | None) -> None:
        if profile_id and record is not None:
            if profile_id not in self._profiles:
                self._next_id("profile")
            self._profiles[profile_id] = record
            self.ledger.touch_profile(profile_id)

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
            return (
                self.ledger.snapshot(),
                dict(self._sessions),
                dict(self._profiles),
                tuple(self._coupons),
                tuple(self._referrals),
            )

    @property
    def retired_codes(self) -> Mapping[str, tuple[str, int]]:
        """Created codes a cancel or reopen deleted again: code -> (kind, campaign id)."""
        return LockedView(self._retired, self._lock)

    # -- evaluation -------------------------------------------------------------

    def _world(
        self,
        *,
        now: datetime | None = None,
        evaluable: frozenset[int] | None = None,
        session_id: str = "",
        profile: CustomerProfile | None = None,
    ) -> World:
        plan = self._current_plan()
        return World(
            campaigns=tuple(self._campaigns),
            coupons=MappingProxyType(self._coupons),
            referrals=MappingProxyType(self._referrals),
            counters=self.ledger.live_counters,
            now=self._now if now is None else now,
            settings=self.settings,
            normalize=self._normalize,
            evaluable=evaluable,
            cost_ids=MappingProxyType(self._cost_ids),
            profile=profile,
            session_id=session_id,
            campaigns_by_name=plan.by_name,
            plan=plan,
        )

    def evaluate(
        self,
        session: AnySession | IntegrationRequest | Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> Evaluation:
        """Evaluate a session without any lifecycle or storage (the engine, directly).

        ``version`` reads a wire dict as :meth:`update` does."""
        request = self._structure(session, version)
        with self._mutating("sb.evaluate()"), decimal.localcontext(ARITHMETIC):
            self._check_request(request, dry=False)
            return self._run_engine(request.session)

    def _run_engine(
        self,
        session: AnySession,
        *,
        now: datetime | None = None,
        evaluable: frozenset[int] | None = None,
        session_id: str = "",
        profile: CustomerProfile | None = None,
    ) -> Evaluation:
        """The engine, with user rules marked as running (see :meth:`_mutating`)."""
        if profile is None:
            profile = self._profile(session.profile_id)
        world = self._world(now=now, evaluable=evaluable, session_id=session_id, profile=profile)
        self._evaluating = True
        try:
            return evaluate(session, world)
        finally:
            self._evaluating = False

    def _structure(self, payload: Any, version: int | None = None) -> _Request:
        """The session of an update, its dialect, and what the answer must hold."""
        if isinstance(payload, Mapping):
            payload = session_from_wire(payload, strict_total=self.strict_total, version=version)
        elif version is not None and payload is not None:
            _check_model_version(payload, version)
        if isinstance(payload, IntegrationRequest):
            return _Request(payload.customer_session, payload.response_content, "/customerSession")
        if isinstance(payload, NewCustomerSessionV2):
            return _Request(payload, None, "")
        if isinstance(payload, NewCustomerSession):
            if self.strict_total:
                check_total(payload)
            return _Request(payload, None, "")
        raise ValidationError(
            [
                Problem(
                    "",
                    "a session must be a NewCustomerSession, NewCustomerSessionV2, "
                    f"IntegrationRequest or a camelCase dict, got {type(payload).__name__}",
                )
            ]
        )

    def _check_request(self, request: _Request, *, dry: bool) -> frozenset[int] | None:
        """What only the sandbox can check: duplicate codes, evaluableCampaignIds.

        Returns the campaigns a dry run evaluates (None: the running ones)."""
        session = request.session
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for index, code in enumerate(session.coupon_codes or ()):
            stored = self._normalize(code)
            if stored in seen:
                problems.append(
                    Problem(
                        f"{request.prefix}/couponCodes/{index}",
                        f"duplicates couponCodes[{seen[stored]}]: {describe(code)} is the same "
                        f"code (compared {self.case_sensitivity}); send each code once",
                    )
                )
            seen.setdefault(stored, index)
        evaluable = getattr(session, "evaluable_campaign_ids", None)
        if evaluable is not None and dry:
            known = {c.id: c for c in self._campaigns}
            for index, campaign_id in enumerate(evaluable):
                if campaign_id not in known:
                    problems.append(
                        Problem(
                            f"{request.prefix}/evaluableCampaignIds/{index}",
                            f"no campaign with id {campaign_id}; the campaigns are "
                            + (
                                ", ".join(f"{c.id} ({c.name!r})" for c in self._campaigns) or "none"
                            ),
                        )
                    )
        if problems:
            raise ValidationError(problems, subject="session")
        return frozenset(evaluable) if evaluable is not None and dry else None

    # -- lifecycle ---------------------------------------------------------------

    def update(
        self,
        session_id: str,
        session: AnySession | IntegrationRequest | Mapping[str, Any],
        *,
        dry: bool = False,
        now: Any = None,
        version: int | None = None,
    ) -> IntegrationState:
        """Talon.One's ``updateCustomerSessionV2``: evaluate, and store unless ``dry``.

        ``session`` is a V1 ``NewCustomerSession`` (which replaces the stored
        session), a ``NewCustomerSessionV2`` or ``IntegrationRequest`` (merged
        onto the stored session: a field sent replaces the stored one, a field
        left out keeps it, ``couponCodes: []`` and ``referralCode: ""``
        discard), or a wire dict of either. A dict's dialect is ``version`` (1
        or 2) when given; otherwise ``customerSession`` or a V2-only key means
        V2, any of ``coupon``, ``referral``, ``total`` means V1, and a dict
        with neither (``{"state": "closed"}``) is V2: it merges. A dry run
        answers what the same real update would and stores nothing; a V2 dry
        run evaluates the payload alone, honours ``evaluableCampaignIds`` and
        may move the clock forward for itself with ``now``.
        """
        _check_session_id(session_id)
        request = self._structure(session, version)
        with self._mutating("sb.update()"), decimal.localcontext(ARITHMETIC):
            evaluable = self._check_request(request, dry=dry)
            at = self._dry_now(now, dry=dry)
            stored = self._sessions.get(session_id)
            current = stored.state if stored else None
            asked = _asked_state(request.session, current)
            if asked not in _UPDATE_MOVES[current]:
                raise TransitionError(
                    session_id,
                    current.value if current else None,
                    asked.value,
                    _legal(current),
                    detail=_why_not(current, asked),
                )
            session_now = _session_to_evaluate(
                request.session, stored, asked, dry=dry, prefix=request.prefix
            )
            if (
                asked is SessionState.CANCELLED
                and stored is not None
                and current is not SessionState.OPEN
            ):
                _check_repeats(session_id, stored, request.session)
                return self._rollback(stored, SessionState.CANCELLED, dry=dry)
            meta = self._meta(session_id, stored, session_now, at)
            if asked is SessionState.CANCELLED:
                # open -> cancelled: nothing was committed, nothing to roll back. Fields the
                # request leaves out keep their stored values (Talon.One's PUT builds on them).
                assert stored is not None
                result = IntegrationState(
                    session_id,
                    session_now,
                    (),
                    dry=dry,
                    action="cancel",
                    meta=meta,
                    response_content=request.response_content,
                )
                if not dry:
                    self._sessions[session_id] = StoredSession(
                        session_id, session_now, SessionState.CANCELLED, (), meta=meta
                    )
                return result
            evaluation = self._run_engine(
                session_now, now=at, evaluable=evaluable, session_id=session_id
            )
            coupons, referrals = self._created_wire(evaluation.created, at)
            state = IntegrationState(
                session_id,
                session_now,
                evaluation.effects,
                lambda: evaluation.failures,
                coupons,
                referrals,
                trace=lambda: evaluation.trace,
                dry=dry,
                meta=meta,
                response_content=request.response_content,
                extras=self._extras(request, session_id, session_now, evaluation, meta, stored),
            )
            for observer in Sandbox.observers:
                observer(self, state)
            if dry:
                return state
            # All of the new state is built before anything is stored, and the ledger
            # checks everything before its first write: a close that raises changes nothing.
            if asked is SessionState.CLOSED:
                new_stored = StoredSession(
                    session_id,
                    session_now,
                    SessionState.CLOSED,
                    evaluation.effects,
                    # What rollbacks need: the effects and charges, not the why of each rule.
                    closed_with=Evaluation(
                        evaluation.effects, (), (), evaluation.charges, evaluation.created
                    ),
                    committed=evaluation.charges,
                    discounts_left=tuple(
                        (i, e.props["value"])
                        for i, e in enumerate(evaluation.effects)
                        if e.effect_type.is_discount
                    ),
                    returned=tuple(0 for _ in session_now.cart_items or ()),
                    sales_left=session_now.effective_total,
                    meta=meta,
                    created=tuple(c.code for c in evaluation.created),
                )
                made = self._new_codes(evaluation.created)
                self.ledger.commit(
                    evaluation.charges,
                    profile=session_now.profile_id,
                    sales=session_now.effective_total,
                )
                self._register_created(made)
            else:
                new_stored = StoredSession(
                    session_id, session_now, SessionState.OPEN, evaluation.effects, meta=meta
                )
            self._store(new_stored)
            return state

    def _created_wire(
        self, created: Sequence[CreatedCode], at: datetime
    ) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
        """``createdCoupons`` / ``createdReferrals``: the SDK's ``Coupon`` and ``Referral``,
        with the ids the codes get when the session closes."""
        coupons: list[dict[str, Any]] = []
        referrals: list[dict[str, Any]] = []
        for made in created:
            if made.kind == "coupon":
                coupons.append(
                    created_coupon_wire(made, self._peek_id("coupon", len(coupons) + 1), at)
                )
            else:
                referrals.append(
                    created_referral_wire(made, self._peek_id("referral", len(referrals) + 1), at)
                )
        return tuple(coupons), tuple(referrals)

    def _new_codes(
        self, created: Sequence[CreatedCode]
    ) -> list[tuple[Campaign, Coupon | Referral]]:
        """The definitions a close's create effects make; stored by _register_created."""
        by_id = {c.id: c for c in self._campaigns}
        counts = {"coupon": 0, "referral": 0}
        made: list[tuple[Campaign, Coupon | Referral]] = []
        for code in created:
            counts[code.kind] += 1
            new_id = self._peek_id(code.kind, counts[code.kind])
            definition: Coupon | Referral
            if code.kind == "coupon":
                definition = Coupon(
                    new_id,
                    code.code,
                    code.campaign_id,
                    code.usage_limit,
                    code.start_date,
                    code.expiry_date,
                    code.profile_id,
                    created=self._now,
                )
            else:
                definition = Referral(
                    new_id,
                    code.code,
                    code.campaign_id,
                    code.profile_id,
                    code.friend,
                    code.usage_limit,
                    code.start_date,
                    code.expiry_date,
                    created=self._now,
                )
            made.append((by_id[code.campaign_id], definition))
        return made

    def _register_created(self, made: Sequence[tuple[Campaign, Coupon | Referral]]) -> None:
        for campaign, definition in made:
            kind = "coupon" if isinstance(definition, Coupon) else "referral"
            self._next_id(kind)
            self._register_code(definition.code, campaign, definition, "a created code")
            if isinstance(definition, Coupon):
                campaign.coupons[definition.code] = definition
            else:
                campaign.referrals[definition.code] = definition
            self._retired.pop(definition.code, None)

    def _delete_created(self, codes: Sequence[str]) -> None:
        """A rolled-back close's created codes: gone, so a later session gets NotFound."""
        for code in codes:
            coupon = self._coupons.pop(code, None)
            if coupon is not None:
                coupon[0].coupons.pop(code, None)
                self._retired[code] = ("coupon", coupon[0].id)
                continue
            referral = self._referrals.pop(code, None)
            if referral is not None:
                referral[0].referrals.pop(code, None)
                self._retired[code] = ("referral", referral[0].id)

    def _store(self, stored: StoredSession) -> None:
        """Keep a session, its profile's activity, and note the first session of a profile."""
        self._events += 1
        profile = stored.submitted.profile_id
        if profile:
            self._keep_profile(profile, self._touch_profile(profile, self._now))
            self._first_sessions.setdefault(profile, stored.session_id)
        self._sessions[stored.session_id] = stored

    def _meta(
        self,
        session_id: str,
        stored: StoredSession | None,
        session: AnySession,
        at: datetime,
    ) -> SessionMeta:
        """The CustomerSessionV2 fields of this answer; a dry run gets what the real one would."""
        profile = session.profile_id
        first = not profile or self._first_sessions.get(profile, session_id) == session_id
        if stored is not None and stored.meta is not None:
            meta = stored.meta
            return SessionMeta(
                meta.id, meta.created, at, meta.application_id, first, meta.update_count + 1
            )
        number = self._peek_session_number()
        return SessionMeta(number, at, at, self.application_id, first, 1)

    def _extras(
        self,
        request: _Request,
        session_id: str,
        session: AnySession,
        evaluation: Evaluation,
        meta: SessionMeta,
        stored: StoredSession | None,
    ) -> dict[str, Any]:
        """The parts of the answer that ``responseContent`` asked for, as of now."""
        asked = request.response_content
        if not asked:
            return {}
        parts: dict[str, Any] = {}
        if ResponseContent.CUSTOMER_PROFILE in asked and session.profile_id:
            # The profile as this update leaves it (a dry run: as the real one would).
            profile = self._profile(
                session.profile_id, self._touch_profile(session.profile_id, meta.updated)
            )
            assert profile is not None
            parts["customerProfile"] = profile.to_wire()
        if ResponseContent.COUPONS in asked:
            entries = (self._coupons.get(self._normalize(c)) for c in session.coupon_codes or ())
            parts["coupons"] = [
                coupon_wire(campaign, coupon, self.ledger, session.profile_id, self._now)
                for campaign, coupon in filter(None, entries)
            ]
        if ResponseContent.REFERRAL in asked and session.referral_code:
            entry = self._referrals.get(self._normalize(session.referral_code))
            if entry is not None:
                parts["referral"] = referral_wire(
                    *entry, self.ledger, self._referred(entry[1].code), self._now
                )
        if ResponseContent.TRIGGERED_CAMPAIGNS in asked:
            by_id = {c.id: c for c in self._campaigns}
            parts["triggeredCampaigns"] = [
                campaign_wire(by_id[i], self.application_id, self._now)
                for i in triggered_campaign_ids(evaluation.effects)
            ]
        if ResponseContent.EVENT in asked:
            assert session.state is not None
            kind = event_type(stored.state if stored else None, session.state)
            parts["event"] = event_wire(
                self._events + 1,
                kind,
                self.application_id,
                session_id,
                session.profile_id,
                evaluation.effects,
                meta.updated,
            )
        if ResponseContent.LOYALTY in asked:
            parts["loyalty"] = {"programs": {}}  # the sandbox has no loyalty programs
        if ResponseContent.AWARDED_GIVEAWAYS in asked:
            parts["awardedGiveaways"] = []
        if ResponseContent.PREVIOUS_RETURNS in asked:
            parts["previousReturns"] = returns_wire(stored, self.application_id, meta.id)
        return parts

    def _referred(self, code: str) -> list[str]:
        """The friends whose closed sessions redeemed a referral code."""
        friends: dict[str, None] = {}
        for stored in self._sessions.values():
            if stored.state in (SessionState.CLOSED, SessionState.PARTIALLY_RETURNED):
                for effect in stored.effects:
                    if (
                        effect.effect_type is EffectType.ACCEPT_REFERRAL
                        and self._normalize(str(effect.value)) == code
                        and stored.submitted.profile_id
                    ):
                        friends.setdefault(stored.submitted.profile_id)
        return list(friends)

    def _cost_id(self, name: str) -> int:
        """The ``additionalCostId`` of an additional cost, given when a rule first names it."""
        return self._cost_ids.setdefault(name, len(self._cost_ids) + 1)

    def _peek_session_number(self) -> int:
        # Sessions are never deleted, so the next one's number is the count so far plus one.
        return len(self._sessions) + 1

    def _dry_now(self, now: Any, *, dry: bool) -> datetime:
        """The clock of this update: the sandbox's, or a dry run's ``now`` (future only)."""
        if now is None:
            return self._now
        if not dry:
            raise ValidationError(
                [Problem("now", "'now' is only for dry runs (dry=True), as in Talon.One")],
                subject="request",
            )
        at = parse_time(now, "update(now=...)")
        if at < self._now:
            raise ValidationError(
                [
                    Problem(
                        "now",
                        f"'now' must not be before the sandbox clock ({self._now.isoformat()}): "
                        f"{at.isoformat()}; Talon.One's dry runs look ahead only",
                    )
                ],
                subject="request",
            )
        return at

    def update_profile(
        self,
        profile_id: str,
        payload: ProfileUpdate | Mapping[str, Any] | None = None,
        *,
        run_rule_engine: bool = False,
        dry: bool = False,
    ) -> ProfileState:
        """Talon.One's ``updateCustomerProfileV2``: merge attributes, maybe run the rules.

        ``payload`` is ``{"attributes": {...}}`` (``CustomerProfileIntegrationRequestV2``):
        each attribute sent replaces the stored one, the others stay. The profile is
        created if new. With ``run_rule_engine=True`` every running campaign is
        evaluated for the profile alone (an empty session: rules that read
        ``ctx.profile`` can fire) and the effects are returned; unless ``dry``, what
        they commit (created codes, counters) is committed at once, as no session
        will close. ``dry`` and ``responseContent`` need ``run_rule_engine``, as in
        Talon.One; a dry run stores nothing.
        """
        _check_id(profile_id, "a profile id")
        update = _profile_update(payload)
        problems = []
        if dry and not run_rule_engine:
            problems.append(Problem("dry", "'dry' only works with runRuleEngine=true"))
        if update.response_content and not run_rule_engine:
            problems.append(
                Problem("/responseContent", "'responseContent' needs runRuleEngine=true")
            )
        if problems:
            raise ValidationError(problems, subject="profile update")
        with self._mutating("sb.update_profile()"), decimal.localcontext(ARITHMETIC):
            old = self._profiles.get(profile_id)
            record = self._touch_profile(profile_id, self._now)
            assert record is not None
            if update.attributes is not None:
                record = attrs.evolve(record, attributes={**record.attributes, **update.attributes})
            profile = self._profile(profile_id, record)
            assert profile is not None
            evaluation_state = None
            made: list[tuple[Campaign, Coupon | Referral]] = []
            evaluation = None
            if run_rule_engine:
                evaluable = self._check_request(
                    _Request(
                        NewCustomerSessionV2(evaluable_campaign_ids=update.evaluable_campaign_ids),
                        None,
                        "",
                    ),
                    dry=dry,
                )
                session = NewCustomerSessionV2(profile_id=profile_id, state=SessionState.OPEN)
                evaluation = self._run_engine(
                    session,
                    evaluable=evaluable,
                    session_id=f"profile:{profile_id}:{(old.last_activity if old else None)}",
                    profile=profile,
                )
                coupons, referrals = self._created_wire(evaluation.created, self._now)
                extras = self._extras(
                    _Request(session, _as_session_content(update.response_content), ""),
                    f"profile:{profile_id}",
                    session,
                    evaluation,
                    self._meta(f"profile:{profile_id}", None, session, self._now),
                    None,
                )
                extras.pop("customerProfile", None)
                evaluation_state = IntegrationState(
                    f"profile:{profile_id}",
                    session,
                    evaluation.effects,
                    lambda: evaluation.failures,
                    coupons,
                    referrals,
                    trace=lambda: evaluation.trace,
                    dry=dry,
                    extras=extras,
                )
                made = self._new_codes(evaluation.created)
            result = ProfileState(
                profile, evaluation_state, dry=dry, response_content=update.response_content
            )
            if dry:
                return result
            if evaluation is not None:
                self.ledger.commit(evaluation.charges, sales=ZERO)
                self._register_created(made)
            self._keep_profile(profile_id, record)
            return result

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
            meta = self._touched(stored)
            new_stored = attrs.evolve(
                stored,
                state=SessionState.PARTIALLY_RETURNED,
                returned=returned,
                discounts_left=tuple(new_left.items()),
                committed=_minus(stored.committed, releases),
                sales_left=_sales_left(stored, cart, returned, returned_value),
                meta=meta,
                returns=(*stored.returns, (len(stored.returns) + 1, self._now, tuple(parsed))),
            )
            result = IntegrationState(
                session_id, new_stored.session, effects, dry=dry, action="return", meta=meta
            )
            if not dry:
                self.ledger.release(
                    releases,
                    profile=stored.submitted.profile_id,
                    sales=stored.sales_left - new_stored.sales_left,
                )
                self._sessions[session_id] = new_stored
            return result

    def _touched(self, stored: StoredSession) -> SessionMeta:
        """The stored session's meta after one more update (a cancel, reopen or return)."""
        assert stored.meta is not None  # every stored session has one
        return attrs.evolve(
            stored.meta, updated=self._now, update_count=stored.meta.update_count + 1
        )

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
        session = replace_model(stored.session, state=to)
        meta = self._touched(stored)
        result = IntegrationState(
            stored.session_id,
            session,
            tuple(effects),
            dry=dry,
            action="reopen" if to is SessionState.OPEN else "cancel",
            meta=meta,
        )
        if dry:
            return result
        if to is SessionState.OPEN:
            new_stored = StoredSession(
                stored.session_id,
                replace_model(stored.submitted, state=SessionState.OPEN),
                SessionState.OPEN,
                (),
                meta=meta,
                returns=stored.returns,
            )
        else:
            new_stored = attrs.evolve(
                stored,
                state=to,
                committed=(),
                discounts_left=(),
                effects=(),
                meta=meta,
                created=(),
            )
        self.ledger.release(
            stored.committed,
            profile=stored.submitted.profile_id,
            sessions=1,
            sales=stored.sales_left,
        )
        self._delete_created(stored.created)
        self._sessions[stored.session_id] = new_stored
        return result

    def _repr_html_(self) -> str:
        from sandbox.display import sandbox_html

        return sandbox_html(self)


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


def _profile_update(payload: Any) -> ProfileUpdate:
    if payload is None:
        return ProfileUpdate()
    if isinstance(payload, ProfileUpdate):
        return payload
    if isinstance(payload, Mapping):
        return from_wire(ProfileUpdate, payload)
    raise ValidationError(
        [
            Problem(
                "",
                "a profile update must be a ProfileUpdate or a camelCase dict such as "
                f'{{"attributes": {{...}}}}, got {type(payload).__name__}',
            )
        ],
        subject="profile update",
    )


def _as_session_content(parts: Sequence[Any] | None) -> tuple[ResponseContent, ...] | None:
    """A profile update's responseContent, in the session's names (they share them)."""
    if not parts:
        return None
    return tuple(ResponseContent(str(p)) for p in parts)


def _check_id(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        message = (
            f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters, got {describe(value)}"
        )
    elif (at := surrogate_at(value)) is not None:
        message = f"{what} {surrogate_rule(value, at)}"
    else:
        return
    raise ValidationError([Problem("", message)], subject=what.removeprefix("a "))


def _check_model_version(model: Any, version: int) -> None:
    """A model says its own dialect; one that contradicts ``version`` is a mistake."""
    own = 1 if isinstance(model, NewCustomerSession) else 2
    if isinstance(model, NewCustomerSession | NewCustomerSessionV2 | IntegrationRequest) and (
        own != version
    ):
        raise ValidationError(
            [
                Problem(
                    "",
                    f"version={version} was asked, but a {type(model).__name__} is a "
                    f"V{own} session; leave version out for a model",
                )
            ]
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
        if effect.effect_type.is_item_discount:
            pos = effect.props["position"]
            if not back[pos]:
                continue
            sub = effect.props.get("subPosition")
            if sub is not None:
                # A flattened cart: units are returned in subPosition order, each whole.
                if before[pos] <= sub < before[pos] + back[pos]:
                    shares.append((index, value))
                continue
            units_left = cart[pos].quantity - before[pos]
            last = back[pos] == units_left
            share = value if last else value * back[pos] / units_left
        elif effect.effect_type is EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST:
            # A session cost (shipping) belongs to no item: only returning everything
            # gives its discount back.
            if not everything:
                continue
            share = value
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


@attrs.frozen
class _Request:
    """An update's session, what its answer must hold, and where its fields are
    on the wire (``/customerSession`` inside an IntegrationRequest)."""

    session: AnySession
    response_content: tuple[ResponseContent, ...] | None
    prefix: str


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


def _v1_fields_sent(session: NewCustomerSession) -> NewCustomerSessionV2:
    """A V1 request as the V2 fields it sent (its default ``state`` counts as sent)."""
    return as_v2(session)


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
    return current or SessionState.OPEN


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
        if state is not SessionState.CANCELLED or stored is None:
            return asked
        if isinstance(stored.submitted, NewCustomerSession):
            changes = {
                a.name: getattr(asked, a.name)
                for a in attrs.fields(NewCustomerSession)
                if getattr(asked, a.name) is not None
            }
            return replace_model(stored.submitted, **changes)
        asked = _v1_fields_sent(asked)
    if dry or stored is None:
        merged = asked
        if merged.referral_code == "":
            merged = replace_model(merged, referral_code=None)
    else:
        merged = _merged_v2(as_v2(stored.submitted), asked)
        # Each part was in bounds; the stored cart with the new costs (or the reverse)
        # may not be.
        problems = [p.within(prefix) for p in merged._cross_field_problems()]
        if problems:
            raise ValidationError(problems, subject="session (merged onto the stored one)")
    return replace_model(merged, state=state)


def _check_repeats(session_id: str, stored: StoredSession, asked: AnySession) -> None:
    """A cancel may repeat the stored fields; a field that differs is an error."""
    from sandbox.models import wire_name

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
                SessionState.CANCELLED.value,
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
    """Talon.One's ``rollbackDiscount`` of (part of) a committed discount."""
    given = effect.props
    props: dict[str, Any] = {"name": given["name"], "value": value}
    if "position" in given:
        props["cartItemPosition"] = given["position"]
        if "subPosition" in given:
            props["cartItemSubPosition"] = given["subPosition"]
    if "additionalCostId" in given:
        props["additionalCostId"] = given["additionalCostId"]
        props["additionalCost"] = given["additionalCost"]
        props["scope"] = "additionalCosts"
    elif effect.effect_type is EffectType.SET_DISCOUNT_PER_ITEM:
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
