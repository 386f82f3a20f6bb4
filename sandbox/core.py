"""The Sandbox: a facade over its parts, behind one lock.

- :class:`~sandbox.inventory.Inventory`: campaigns, groups, codes, ids, the plan;
- :class:`~sandbox.sessions.SessionStore`: the stored sessions and their lifecycle;
- :class:`~sandbox.ledger.Ledger`: every counter;
- :class:`~sandbox.profiles.ProfileStore`: the customer profiles;
- :class:`~sandbox.answers.Answers`: what an answer holds beyond the evaluation.

``Sandbox.update`` mirrors Talon.One's ``updateCustomerSession`` and reads top to
bottom: decode, check the transition, evaluate the plan (pure), then, unless it is a
dry run, store the session and commit or roll back counters, and answer. An update
that raises changes nothing.
"""

from __future__ import annotations

import contextlib
import decimal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

from sandbox import effects as effects_api
from sandbox import lifecycle
from sandbox._html import html_of
from sandbox.answers import Answers
from sandbox.checks import enum_value, parse_time
from sandbox.codec import from_wire, session_from_wire
from sandbox.engine import Evaluation, Event, Settings, World, evaluate
from sandbox.engine.desire import generate_code
from sandbox.errors import (
    DefinitionError,
    Problem,
    ReentrantCallError,
    UnknownEntityError,
    ValidationError,
)
from sandbox.inventory import (
    CASE_SENSITIVITY,
    CouponView,
    CustomerInventory,
    Inventory,
    ReferralView,
    close_hint,
)
from sandbox.ledger import Ledger, LockedView
from sandbox.models import (
    ARITHMETIC,
    MAX_ID_LENGTH,
    AnySession,
    EventRequest,
    IntegrationRequest,
    NewCustomerSession,
    NewCustomerSessionV2,
    ProfileUpdate,
    ResponseContent,
    ReturnedCartItem,
    SessionState,
    check_total,
    describe,
    surrogate_at,
    surrogate_rule,
)
from sandbox.models import replace as replace_model
from sandbox.profiles import CustomerProfile, ProfileStore
from sandbox.responses import event_type, triggered_campaign_ids
from sandbox.rules import Campaign, Coupon, Group, Limit, Referral
from sandbox.sessions import (
    CLOSED,
    COMMITTED,
    OPEN,
    PARTIALLY_RETURNED,
    SessionStore,
    StoredSession,
    as_v2,
    check_can,
    move,
    touched,
)
from sandbox.state import IntegrationState, ProfileState
from sandbox.talon import CampaignState, GroupMode

__all__ = [
    "CouponView",
    "LimitCounter",
    "ReferralView",
    "Sandbox",
    "StoredSession",
    "as_v2",
]

ZERO = Decimal(0)
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
class Request:
    """An update's session, what its answer must hold, and where its fields are
    on the wire (``/customerSession`` inside an IntegrationRequest)."""

    session: AnySession
    response_content: tuple[ResponseContent, ...] | None
    prefix: str


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
        self._lock = threading.RLock()
        self.ledger = Ledger(self._lock)
        self._inventory = Inventory(case_sensitivity)
        self._sessions = SessionStore()
        self._profiles = ProfileStore(self.ledger)
        self._answers = Answers(
            self._inventory, self._sessions, self._profiles, self.ledger, application_id
        )
        # True while this sandbox runs user rules (under the lock, so only the
        # evaluating thread can see it): a rule calling back in is refused.
        self._evaluating = False

    def __repr__(self) -> str:
        inventory = self._inventory
        return (
            f"<Sandbox now={self._now.isoformat()} campaigns={len(inventory.campaigns)} "
            f"coupons={len(inventory.coupons)} referrals={len(inventory.referrals)} "
            f"sessions={len(self._sessions)}>"
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
                self._inventory.changed()

    # -- definitions (a Campaign defines its rules and codes through these) ----------

    def normalize_code(self, code: str) -> str:
        """A code as stored under this sandbox's case sensitivity."""
        return self._inventory.normalize(code)

    def _check_new_code(self, code: Any, kind: str, where: str) -> str:
        with self._lock:
            return self._inventory.check_new_code(code, kind, where)

    def _next_id(self, kind: str) -> int:
        return self._inventory.next_id(kind)

    def _register_code(
        self, code: str, campaign: Campaign, definition: Coupon | Referral, where: str
    ) -> None:
        """Called under the lock; checks again, as another thread may have added the code
        since ``_check_new_code``."""
        self._inventory.register_code(code, campaign, definition, where)

    def _cost_id(self, name: str) -> int:
        return self._inventory.cost_id(name)

    def group(self, name: str, mode: str = "listOrder") -> Group:
        """An evaluation group: stackable, listOrder, highestDiscount or lowestDiscount."""
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"group(name) must be a non-empty string, got {name!r}")
        group_mode: GroupMode = enum_value(GroupMode, mode, f"group {name!r}: mode")
        with self._defining("sb.group()"):
            if any(g.name == name for g in self._inventory.groups):
                raise DefinitionError(f"group {name!r} already exists")
            group = Group(self._inventory.next_id("group"), name, group_mode)
            self._inventory.add_group(group)
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
        reevaluate_on_return: bool = False,
    ) -> Campaign:
        """A new campaign, evaluated after those made before it.

        ``reevaluate_on_return=True`` lets a return with ``run_rule_engine=True``
        evaluate the campaign again on what the customer kept (Talon.One's
        ``reevaluateOnReturn``)."""
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
        limit_list = self._inventory.check_limits(limits, where)
        if not isinstance(reevaluate_on_return, bool):
            raise DefinitionError(
                f"{where}: reevaluate_on_return must be True or False, got {reevaluate_on_return!r}"
            )
        if group is not None and (
            not isinstance(group, Group) or group not in self._inventory.groups
        ):
            raise DefinitionError(
                f"{where}: group must come from this sandbox's group(), got {group!r}"
            )
        with self._defining("sb.campaign()"):
            if any(c.name == name for c in self._inventory.campaigns):
                raise DefinitionError(f"{where} already exists")
            campaign = Campaign(
                self,
                self._inventory.next_id("campaign"),
                name,
                state=campaign_state,
                start=start_time,
                end=end_time,
                limits=limit_list,
                group=group,
                reevaluate_on_return=reevaluate_on_return,
            )
            self._inventory.add_campaign(campaign)
        return campaign

    @property
    def campaigns(self) -> tuple[Campaign, ...]:
        return tuple(self._inventory.campaigns)

    def get_campaign(self, name_or_id: str | int) -> Campaign:
        return self._inventory.campaign(name_or_id)

    # -- reads ----------------------------------------------------------------

    def get_coupon(self, code: str) -> CouponView:
        """A coupon with its usage counter (the number of closed sessions that redeemed
        it) and its state now."""
        with self._lock:
            return self._inventory.coupon_view(code, self.ledger, self._now)

    def get_referral(self, code: str) -> ReferralView:
        """A referral code with its usage counter and the friends it referred."""
        with self._lock:
            inventory = self._inventory
            return inventory.referral_view(
                code, self.ledger, self._answers.referred(inventory.normalize(code))
            )

    def create_referral(
        self,
        campaign: str | int | Campaign,
        advocate: str,
        *,
        friend: str | None = None,
        usage_limit: int = 0,
        start_date: Any = None,
        expiry_date: Any = None,
        pattern: str = "REF-######",
    ) -> ReferralView:
        """Talon.One's ``createReferral``: a new referral code for ``advocate`` in
        ``campaign`` (its name, id or object), usable at once.

        The code is generated from ``pattern`` (``#`` = a character of A-Z0-9), the
        same one for the same sandbox history, never one that exists. ``friend``
        limits it to one friend; ``usage_limit=0`` is unlimited. The advocate's profile
        is created if new.
        """
        effects_api.create_referral(pattern=pattern)  # checks the pattern's shape
        with self._lock:
            target = campaign if isinstance(campaign, Campaign) else self.get_campaign(campaign)
            inventory = self._inventory
            code = generate_code(
                pattern,
                f"api-referral:{target.id}:{inventory.peek_id('referral')}",
                inventory.normalize,
                lambda c: c in inventory.coupons or c in inventory.referrals,
            )
            made = target.referral(
                code,
                advocate=advocate,
                friend=friend,
                usage_limit=usage_limit,
                start_date=start_date,
                expiry_date=expiry_date,
            )
            if made.advocate not in self._profiles.records:  # created on first sight
                self._profiles.keep(made.advocate, self._profiles.touched(made.advocate, self._now))
            return self.get_referral(made.code)

    def get_inventory(self, profile_id: str) -> CustomerInventory:
        """Talon.One's ``getCustomerInventory``: the profile, the coupons whose recipient
        it is (created ones included) and the referral codes it advocates, each with its
        usage and state. ``to_wire()`` is the ``CustomerInventory`` the SDK reads.

        A profile no session, event or update has named is an UnknownEntityError, as
        for :meth:`get_profile`."""
        profile = self.get_profile(profile_id)
        with self._lock:
            return self._inventory.customer_inventory(
                profile, profile_id, self.ledger, self._now, self._answers.referred
            )

    def get_session(self, session_id: str) -> StoredSession:
        _check_session_id(session_id)
        with self._lock:
            return self._require(session_id)

    @property
    def sessions(self) -> Mapping[str, StoredSession]:
        """The stored sessions by id: a read-only view, safe to iterate while other
        threads update (iteration works on a copy)."""
        return LockedView(self._sessions.sessions, self._lock)

    @property
    def profile_ids(self) -> list[str]:
        """The integration ids of every stored profile, oldest first."""
        with self._lock:
            return self._profiles.ids()

    def get_profile(self, profile_id: str) -> CustomerProfile:
        """A customer profile: integration id, created, attributes, closed sessions,
        total sales and last activity (the SDK's ``CustomerProfile``)."""
        _check_id(profile_id, "a profile id")
        with self._lock:
            found = self._profiles.profile(profile_id)
            if found is None:
                raise UnknownEntityError(
                    f"no profile {profile_id!r}{close_hint(profile_id, self._profiles.ids())}"
                )
            return found

    def limit_counters(self) -> list[LimitCounter]:
        """Every limit counter that has moved, with its limit and remaining room."""
        with self._lock:
            found = []
            by_id = self._inventory.campaign_by_id()
            for key, value in self.ledger.counters.items():
                campaign = by_id[key.campaign_id]
                limit = self._inventory.limit_for(campaign, key)
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
                dict(self._sessions.sessions),
                dict(self._profiles.records),
                tuple(self._inventory.coupons),
                tuple(self._inventory.referrals),
            )

    # -- persistence (the logic is sandbox.persist's) ------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything requests changed (clock, sessions, counters, profiles, created
        codes) as versioned JSON-ready data; see :mod:`sandbox.persist`."""
        from sandbox import persist

        with self._lock:
            return persist.state_of(
                self, self._now, self._inventory, self._sessions, self._profiles
            )

    def load_state(self, data: Mapping[str, Any]) -> None:
        """Put back a :meth:`state_dict` into this sandbox, fresh from the same rules:
        all or nothing (a :class:`~sandbox.persist.StateError` changes nothing)."""
        from sandbox import persist

        with self._mutating("sb.load_state()"):
            self._now = persist.restore(self, self._inventory, self._sessions, self._profiles, data)

    # -- evaluation -------------------------------------------------------------

    def _world(
        self,
        *,
        now: datetime | None = None,
        evaluable: frozenset[int] | None = None,
        session_id: str = "",
        profile: CustomerProfile | None = None,
        event: Event | None = None,
    ) -> World:
        inventory = self._inventory
        plan = inventory.plan()
        return World(
            campaigns=tuple(inventory.campaigns),
            coupons=MappingProxyType(inventory.coupons),
            referrals=MappingProxyType(inventory.referrals),
            counters=self.ledger.live_counters,
            now=self._now if now is None else now,
            settings=self.settings,
            normalize=inventory.normalize,
            evaluable=evaluable,
            cost_ids=MappingProxyType(inventory.cost_ids),
            profile=profile,
            session_id=session_id,
            campaigns_by_name=plan.by_name,
            plan=plan,
            event=event,
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
        event: Event | None = None,
    ) -> Evaluation:
        """The engine, with user rules marked as running (see :meth:`_mutating`)."""
        if profile is None:
            profile = self._profiles.profile(session.profile_id)
        world = self._world(
            now=now, evaluable=evaluable, session_id=session_id, profile=profile, event=event
        )
        self._evaluating = True
        try:
            return evaluate(session, world)
        finally:
            self._evaluating = False

    def _structure(self, payload: Any, version: int | None = None) -> Request:
        """The session of an update, its dialect, and what the answer must hold."""
        if isinstance(payload, Mapping):
            payload = session_from_wire(payload, strict_total=self.strict_total, version=version)
        elif version is not None and payload is not None:
            _check_model_version(payload, version)
        if isinstance(payload, IntegrationRequest):
            return Request(payload.customer_session, payload.response_content, "/customerSession")
        if isinstance(payload, NewCustomerSessionV2):
            return Request(payload, None, "")
        if isinstance(payload, NewCustomerSession):
            if self.strict_total:
                check_total(payload)
            return Request(payload, None, "")
        raise ValidationError(
            [
                Problem(
                    "",
                    "a session must be a NewCustomerSession, NewCustomerSessionV2, "
                    f"IntegrationRequest or a camelCase dict, got {type(payload).__name__}",
                )
            ]
        )

    def _check_request(self, request: Request, *, dry: bool) -> frozenset[int] | None:
        """What only the sandbox can check: duplicate codes, evaluableCampaignIds.

        Returns the campaigns a dry run evaluates (None: the running ones)."""
        session = request.session
        normalize = self._inventory.normalize
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for index, code in enumerate(session.coupon_codes or ()):
            stored = normalize(code)
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
            campaigns = self._inventory.campaigns
            known = {c.id for c in campaigns}
            for index, campaign_id in enumerate(evaluable):
                if campaign_id not in known:
                    problems.append(
                        Problem(
                            f"{request.prefix}/evaluableCampaignIds/{index}",
                            f"no campaign with id {campaign_id}; the campaigns are "
                            + (", ".join(f"{c.id} ({c.name!r})" for c in campaigns) or "none"),
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
        # 1. Decode
        _check_session_id(session_id)
        request = self._structure(session, version)
        with self._mutating("sb.update()"), decimal.localcontext(ARITHMETIC):
            evaluable = self._check_request(request, dry=dry)
            at = self._dry_now(now, dry=dry)
            # 2. Check the transition
            step = move(
                session_id,
                self._sessions.get(session_id),
                request.session,
                dry=dry,
                prefix=request.prefix,
            )
            if step.rolls_back:
                assert step.stored is not None
                return self._rollback(step.stored, SessionState.CANCELLED, dry=dry)
            meta = self._sessions.meta(
                session_id, step.stored, step.session, at, self.application_id
            )
            if step.cancels_open:
                # Nothing was committed, nothing to roll back. Fields the request leaves
                # out keep their stored values (Talon.One's PUT builds on them).
                if not dry:
                    self._sessions.replace(
                        StoredSession(
                            session_id, step.session, SessionState.CANCELLED, (), meta=meta
                        )
                    )
                return IntegrationState(
                    session_id,
                    step.session,
                    (),
                    dry=dry,
                    action="cancel",
                    meta=meta,
                    response_content=request.response_content,
                )
            # 3. Evaluate the plan
            event = Event(
                event_type(step.stored.state if step.stored else None, step.asked),
                step.session.attributes or {},
            )
            evaluation = self._run_engine(
                step.session, now=at, evaluable=evaluable, session_id=session_id, event=event
            )
            # 4. The answer
            answers = self._answers
            coupons, referrals = answers.created(evaluation.created, at)
            state = IntegrationState(
                session_id,
                step.session,
                evaluation.effects,
                lambda: evaluation.failures,
                coupons,
                referrals,
                trace=lambda: evaluation.trace,
                dry=dry,
                meta=meta,
                response_content=request.response_content,
                extras=answers.extras(
                    request.response_content,
                    session_id,
                    step.session,
                    evaluation.effects,
                    meta,
                    step.stored,
                    self._now,
                ),
            )
            for observer in Sandbox.observers:
                observer(self, state)
            # 5. Store, or commit a close
            if not dry:
                self._keep(session_id, step.session, step.asked, evaluation, meta)
            return state

    def _keep(
        self,
        session_id: str,
        session: AnySession,
        asked: SessionState,
        evaluation: Evaluation,
        meta: Any,
    ) -> None:
        """Store an evaluated update; a close also commits to the ledger and creates the
        codes its effects made. Everything is built before anything is stored, and the
        ledger checks everything before its first write: a close that raises changes
        nothing."""
        if asked is not CLOSED:
            self._store(StoredSession(session_id, session, OPEN, evaluation.effects, meta=meta))
            return
        stored = StoredSession(
            session_id,
            session,
            CLOSED,
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
            returned=tuple(0 for _ in session.cart_items or ()),
            sales_left=session.effective_total,
            meta=meta,
            created=tuple(c.code for c in evaluation.created),
        )
        made = self._inventory.new_codes(evaluation.created, self._now)
        self.ledger.commit(
            evaluation.charges, profile=session.profile_id, sales=session.effective_total
        )
        self._inventory.add_created(made)
        self._store(stored)

    def _store(self, stored: StoredSession) -> None:
        """Keep a session and its profile's activity."""
        profile = stored.submitted.profile_id
        if profile:
            self._profiles.keep(profile, self._profiles.touched(profile, self._now))
        self._sessions.keep(stored)

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
            profiles = self._profiles
            old = profiles.records.get(profile_id)
            record = profiles.touched(profile_id, self._now)
            assert record is not None
            if update.attributes is not None:
                record = attrs.evolve(record, attributes={**record.attributes, **update.attributes})
            profile = profiles.profile(profile_id, record)
            assert profile is not None
            evaluation_state = None
            made: list[tuple[Campaign, Coupon | Referral]] = []
            evaluation = None
            if run_rule_engine:
                evaluable = self._check_request(
                    Request(
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
                ran = evaluation
                coupons, referrals = self._answers.created(evaluation.created, self._now)
                meta = self._sessions.meta(
                    f"profile:{profile_id}", None, session, self._now, self.application_id
                )
                extras = self._answers.extras(
                    _as_session_content(update.response_content),
                    f"profile:{profile_id}",
                    session,
                    evaluation.effects,
                    meta,
                    None,
                    self._now,
                )
                extras.pop("customerProfile", None)
                evaluation_state = IntegrationState(
                    f"profile:{profile_id}",
                    session,
                    evaluation.effects,
                    lambda: ran.failures,
                    coupons,
                    referrals,
                    trace=lambda: ran.trace,
                    dry=dry,
                    extras=extras,
                )
                made = self._inventory.new_codes(evaluation.created, self._now)
            result = ProfileState(
                profile, evaluation_state, dry=dry, response_content=update.response_content
            )
            if dry:
                return result
            if evaluation is not None:
                self.ledger.commit(evaluation.charges, sales=ZERO)
                self._inventory.add_created(made)
            profiles.keep(profile_id, record)
            return result

    def track_event(
        self,
        profile_id: str | None,
        type: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        dry: bool = False,
        session_id: str | None = None,
        response_content: Sequence[str] | None = None,
        evaluable_campaign_ids: Sequence[int] | None = None,
    ) -> IntegrationState:
        """Talon.One's ``trackEventV2``: evaluate a custom event for a profile.

        Every running campaign is evaluated with ``ctx.event`` set to the event (its
        ``type`` and ``attributes``) and an empty session of the profile, so rules that
        read the event (and the profile) can fire. The profile is created on first
        sight (``profile_id=None``: an anonymous event). Unless ``dry``, what the
        effects commit (counters, created codes) is committed at once, as no session
        will close. ``session_id`` is recorded on the event only. The answer's
        ``to_wire()`` is Talon.One's ``TrackEventV2Response``: ``effects``,
        ``createdCoupons``, ``createdReferrals`` and what ``response_content`` names
        (``customerProfile``, ``triggeredCampaigns``, ``event``, ``ruleFailureReasons``,
        ...).
        """
        wire: dict[str, Any] = {"type": type}
        for key, value in (
            ("profileId", profile_id),
            ("attributes", attributes),
            ("responseContent", response_content),
            ("evaluableCampaignIds", evaluable_campaign_ids),
        ):
            if value is not None:
                wire[key] = list(value) if isinstance(value, tuple) else value
        request = from_wire(EventRequest, wire)
        if session_id is not None:
            _check_session_id(session_id)
        with self._mutating("sb.track_event()"), decimal.localcontext(ARITHMETIC):
            probe = NewCustomerSessionV2(evaluable_campaign_ids=request.evaluable_campaign_ids)
            evaluable = self._check_request(Request(probe, None, ""), dry=dry)
            who = request.profile_id or None
            profiles = self._profiles
            record = profiles.touched(who, self._now) if who else None
            profile = profiles.profile(who, record) if who else None
            session = NewCustomerSessionV2(profile_id=who, state=SessionState.OPEN)
            number = self._sessions.events + 1
            event = Event(request.type, request.attributes or {})
            evaluation = self._run_engine(
                session,
                evaluable=evaluable,
                session_id=f"event:{number}",
                profile=profile,
                event=event,
            )
            coupons, referrals = self._answers.created(evaluation.created, self._now)
            made = self._inventory.new_codes(evaluation.created, self._now)
            extras = self._answers.event_extras(
                request.response_content, number, event, who, session_id, evaluation, self._now
            )
            state = IntegrationState(
                session_id or f"event:{number}",
                session,
                evaluation.effects,
                lambda: evaluation.failures,
                coupons,
                referrals,
                trace=lambda: evaluation.trace,
                dry=dry,
                action="event",
                response_content=_as_session_content(request.response_content) or (),
                extras=extras,
                event=event,
            )
            for observer in Sandbox.observers:
                observer(self, state)
            if dry:
                return state
            self.ledger.commit(evaluation.charges, sales=ZERO)
            self._inventory.add_created(made)
            if who and record is not None:
                profiles.keep(who, record)
            self._sessions.events = number
            return state

    def reopen(self, session_id: str, *, dry: bool = False) -> IntegrationState:
        """Talon.One's ``reopenCustomerSession``: closed -> open, rolling back what close committed."""
        with self._mutating("sb.reopen()"), decimal.localcontext(ARITHMETIC):
            stored = self._require(session_id)
            check_can(session_id, stored, OPEN, (CLOSED,), "only a closed session can be reopened")
            return self._rollback(stored, OPEN, dry=dry)

    def return_items(
        self,
        session_id: str,
        items: Sequence[ReturnedCartItem | Mapping[str, Any]],
        *,
        dry: bool = False,
        run_rule_engine: bool = False,
        idempotency_key: str | None = None,
    ) -> IntegrationState:
        """Talon.One's ``returnCartItems``: closed -> partially_returned.

        Each item names a cart ``position`` (or a ``sku``) and a ``quantity``
        (default: all that is left). Emits ``rollbackDiscount`` for the
        returned share of discounts and releases that share of money budgets.

        ``run_rule_engine=True`` evaluates the kept items again for the campaigns made
        with ``reevaluate_on_return=True`` that gave an effect at close: a discount they
        no longer earn is rolled back (all of it when a threshold is no longer met),
        never less than the returned share. ``idempotency_key`` (Talon.One's
        ``Idempotency-Key``, at most 255 characters): the same key within 24 hours of
        sandbox time answers the first answer again and changes nothing.
        """
        parsed = lifecycle.returned_items(items)
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
        with self._mutating("sb.return_items()"), decimal.localcontext(ARITHMETIC):
            if idempotency_key is not None:
                first: IntegrationState | None = self._sessions.idempotent(
                    idempotency_key, (session_id, tuple(parsed), run_rule_engine), self._now
                )
                if first is not None:
                    return first
            stored = self._require(session_id)
            check_can(
                session_id,
                stored,
                PARTIALLY_RETURNED,
                COMMITTED,
                "only a closed or partially returned session can return items",
            )
            cart = stored.submitted.cart_items or ()
            back = lifecycle.resolve_returns(parsed, cart, stored.returned)
            returned = tuple(r + b for r, b in zip(stored.returned, back, strict=True))
            evaluation = stored.closed_with
            assert evaluation is not None
            left = dict(stored.discounts_left)
            returned_value = sum(
                (i.line_total * b / i.quantity for i, b in zip(cart, back, strict=True)), ZERO
            )
            rollbacks = lifecycle.return_shares(
                evaluation.effects, left, cart, stored.returned, back, self.settings
            )
            if run_rule_engine:
                rollbacks = self._reevaluate_return(stored, returned, left, rollbacks)
            effects = tuple(
                lifecycle.rolled_back_discount(evaluation.effects[i], share)
                for i, share in rollbacks
            )
            new_left = dict(left)
            for i, share in rollbacks:
                new_left[i] -= share
            releases = lifecycle.budget_releases(stored.committed, dict(rollbacks))
            meta = touched(stored, self._now)
            new_stored = attrs.evolve(
                stored,
                state=PARTIALLY_RETURNED,
                returned=returned,
                discounts_left=tuple(new_left.items()),
                committed=lifecycle.minus(stored.committed, releases),
                sales_left=lifecycle.sales_left(stored, cart, returned, returned_value),
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
                self._sessions.replace(new_stored)
                if idempotency_key is not None:
                    self._sessions.remember(
                        idempotency_key,
                        (session_id, tuple(parsed), run_rule_engine),
                        self._now,
                        result,
                    )
            return result

    def _reevaluate_return(
        self,
        stored: StoredSession,
        returned: tuple[int, ...],
        left: Mapping[int, Decimal],
        rollbacks: list[tuple[int, Decimal]],
    ) -> list[tuple[int, Decimal]]:
        """A return's rollbacks with ``runRuleEngine``: the campaigns that reevaluate on
        return and gave an effect at close, evaluated again on the kept items, as
        before the close counted (its own redemptions and its place in the profile's
        history left out)."""
        closed = stored.closed_with
        assert closed is not None
        by_id = self._inventory.campaign_by_id()
        again_ids = frozenset(
            i
            for i in triggered_campaign_ids(closed.effects)
            if i in by_id and by_id[i].reevaluate_on_return
        )
        if not again_ids:
            return rollbacks
        kept = attrs.evolve(stored, returned=returned)
        session = lifecycle.kept_session(kept)
        profile = self._profiles.profile(session.profile_id)
        if profile is not None:
            profile = attrs.evolve(
                profile,
                closed_sessions=max(profile.closed_sessions - 1, 0),
                total_sales=profile.total_sales - stored.sales_left,
            )
        world = self._world(
            evaluable=again_ids,
            session_id=f"{stored.session_id}:return",
            profile=profile,
            event=Event("talon_session_partially_returned", session.attributes or {}),
        )
        world = attrs.evolve(
            world, counters=lifecycle.CountersWithout(world.counters, stored.committed)
        )
        self._evaluating = True
        try:
            again = evaluate(session, world)
        finally:
            self._evaluating = False
        return lifecycle.reevaluated_shares(
            closed.effects, left, rollbacks, again_ids, again.effects
        )

    def _require(self, session_id: str) -> StoredSession:
        _check_session_id(session_id)
        stored = self._sessions.get(session_id)
        if stored is None:
            raise UnknownEntityError(
                f"no session {session_id!r}{close_hint(session_id, self._sessions.sessions)}"
            )
        return stored

    def _rollback(self, stored: StoredSession, to: SessionState, *, dry: bool) -> IntegrationState:
        """Cancel or reopen a closed (or partially returned) session: undo every counter it moved."""
        effects = lifecycle.rollback_effects(stored)
        session = replace_model(stored.session, state=to)
        meta = touched(stored, self._now)
        result = IntegrationState(
            stored.session_id,
            session,
            tuple(effects),
            dry=dry,
            action="reopen" if to is OPEN else "cancel",
            meta=meta,
        )
        if dry:
            return result
        if to is OPEN:
            new_stored = StoredSession(
                stored.session_id,
                replace_model(stored.submitted, state=OPEN),
                OPEN,
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
        # Created codes stay: Talon.One rolls back discounts and counters, not creation.
        self._sessions.replace(new_stored)
        return result

    def _repr_html_(self) -> str:
        return html_of(self)


# ---------------------------------------------------------------------------
# helpers


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


def _check_idempotency_key(key: Any) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= 255 or not key.isprintable():
        raise ValidationError(
            [
                Problem(
                    "Idempotency-Key",
                    "an idempotency key must be 1 to 255 printable characters (a UUID, "
                    f"typically), got {describe(key)}",
                )
            ],
            subject="return",
        )


def _check_session_id(session_id: Any) -> None:
    _check_id(session_id, "a session id")
