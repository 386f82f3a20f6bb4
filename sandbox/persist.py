"""The whole state of a :class:`~sandbox.Sandbox` as versioned JSON, so that a server
started with ``--state FILE`` (or ``PROMO_SANDBOX_STATE``) loses nothing at a restart.

What requests change is kept: the clock; every session with what its close committed,
its returns and the codes it created; the ledger's counters (limits, budgets, code
usage) and each profile's closed sessions and sales; the profiles; the codes made at
run time (create effects, the API) and the ids Talon.One would give next; the
idempotency keys of returns with their first answers (without the trace ``explain()``
reads). The
definitions (campaigns, rules, the codes a rules file defines) are not: they come from
the rules file, built again at every start. The state names the campaigns it was made
with, and a state made for other rules is refused rather than half-loaded.

:meth:`Sandbox.state_dict() <sandbox.Sandbox.state_dict>` gives the state as JSON-ready
data and :meth:`Sandbox.load_state() <sandbox.Sandbox.load_state>` puts it back into a
sandbox fresh from the same rules, all or nothing; :func:`save` and :func:`load` do the
same with a file (written atomically: a temporary file beside it, then
``os.replace``).

>>> from sandbox import Sandbox
>>> def build():
...     return Sandbox(now="2026-12-01T10:00:00Z")
>>> sb = build()
>>> _ = sb.update_profile("p1", {"attributes": {"tier": "gold"}})
>>> restarted = build()
>>> restarted.load_state(sb.state_dict())
>>> restarted.get_profile("p1").attributes["tier"]
'gold'

The file is JSON: ``{"format": "promo-sandbox-state", "version": 1, ...}``. Numbers are
written digit for digit, and a Decimal always with a point or an exponent (``5E0``), so
that it reads back as the same Decimal and an integer as an integer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
import msgspec

from sandbox.codec import from_wire, parse_json, to_wire
from sandbox.engine import Evaluation
from sandbox.errors import SandboxError, ValidationError
from sandbox.ledger import CounterKey, ProfileStats
from sandbox.models import (
    NewCustomerSession,
    NewCustomerSessionV2,
    ResponseContent,
    ReturnedCartItem,
)
from sandbox.profiles import ProfileRecord
from sandbox.rules import Coupon, Referral
from sandbox.sessions import StoredSession
from sandbox.state import Effect, IntegrationState, RuleFailureReason, SessionMeta

if TYPE_CHECKING:
    from sandbox.core import Sandbox
    from sandbox.inventory import Inventory
    from sandbox.profiles import ProfileStore
    from sandbox.sessions import SessionStore

__all__ = ["FORMAT", "VERSION", "StateError", "defined_codes", "load", "save", "state_text"]

FORMAT = "promo-sandbox-state"
"""The ``format`` marker of a state file."""

VERSION = 1
"""The version of the state format this library writes and reads."""


class StateError(SandboxError, ValueError):
    """A state that cannot be loaded (not a state file, another format version, made
    for other rules, damaged) or a state file that cannot be written; nothing changed."""


# ---------------------------------------------------------------------------
# values <-> JSON-ready data


def _decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return Decimal(value)
    if isinstance(value, float):  # a state read by json.loads: exact only via parse_json
        return Decimal(repr(value))
    raise ValueError(f"must be a number, got {value!r}")


def _time(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 time, got {value!r}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"must carry its UTC offset, got {value!r}")
    return moment


def _session_out(session: Any) -> dict[str, Any]:
    version = 1 if isinstance(session, NewCustomerSession) else 2
    return {"version": version, "session": to_wire(session, exact=True)}


def _session_in(data: Any, _: Any) -> Any:
    if not isinstance(data, Mapping) or data.get("version") not in (1, 2):
        raise ValueError('a stored session is {"version": 1 or 2, "session": {...}}')
    cls = NewCustomerSession if data["version"] == 1 else NewCustomerSessionV2
    return from_wire(cls, data.get("session"), strict_total=False)


def _model_in(cls: type) -> Callable[[Any, Any], Any]:
    return lambda data, _: from_wire(cls, data, strict_total=False)


@functools.cache
def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_unstructure_hook(Decimal, lambda d: d)  # written exactly by _write
    conv.register_structure_hook(Decimal, _decimal)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_structure_hook(datetime, _time)
    # Sessions and returned items in their wire form (the codec's own, checked again
    # when read), with the dialect a session came in.
    for model in (NewCustomerSession, NewCustomerSessionV2, ReturnedCartItem):
        conv.register_unstructure_hook(model, functools.partial(to_wire, exact=True))
        conv.register_structure_hook(model, _model_in(model))
    attrs.resolve_types(StoredSession, {**vars(_sessions_module()), "Evaluation": Evaluation})
    submitted = attrs.fields(StoredSession).submitted.type
    conv.register_unstructure_hook_func(lambda t: t == submitted, _session_out)
    conv.register_structure_hook_func(lambda t: t == submitted, _session_in)
    # An evaluation a close committed: its effects, charges and created codes (why each
    # rule fired or not is not kept once the session is stored).
    kept = [f for f in attrs.fields(Evaluation) if f.name not in Evaluation._lazy]
    attrs.resolve_types(Evaluation)

    def evaluation_out(evaluation: Evaluation) -> dict[str, Any]:
        return {
            f.name: conv.unstructure(getattr(evaluation, f.name), f.type)
            for f in attrs.fields(Evaluation)
            if f.name not in Evaluation._lazy
        }

    def evaluation_in(data: Any, _: Any) -> Evaluation:
        if not isinstance(data, Mapping) or set(data) - {f.name for f in kept}:
            raise ValueError(f"an evaluation has {', '.join(f.name for f in kept)}")
        values = {
            f.name: conv.structure(data[f.name], f.type) for f in kept if f.name in data and f.type
        }
        return Evaluation(failures=(), trace=(), **values)

    conv.register_unstructure_hook(Evaluation, evaluation_out)
    conv.register_structure_hook(Evaluation, evaluation_in)

    # Why a rule did not fire, its lazily worked-out details written out.
    def failure_out(failure: RuleFailureReason) -> dict[str, Any]:
        names = [f.alias or f.name for f in attrs.fields(RuleFailureReason)]
        return {name: getattr(failure, name) for name in names}

    def failure_in(data: Any, _: Any) -> RuleFailureReason:
        if not isinstance(data, Mapping):
            raise ValueError(f"a rule failure reason is an object, got {data!r}")
        return RuleFailureReason(**data)

    conv.register_unstructure_hook(RuleFailureReason, failure_out)
    conv.register_structure_hook(RuleFailureReason, failure_in)

    # A remembered answer (an idempotent return's): what its wire form is made of. Its
    # trace (for explain()) is not kept.
    def answer_out(state: IntegrationState) -> dict[str, Any]:
        return {
            "session_id": state.session_id,
            "session": _session_out(state.session),
            "effects": conv.unstructure(state.effects, tuple[Effect, ...]),
            "rule_failure_reasons": [failure_out(r) for r in state.rule_failure_reasons],
            "created_coupons": list(state.created_coupons),
            "created_referrals": list(state.created_referrals),
            "action": state.action,
            "meta": conv.unstructure(state.meta),
            "response_content": None
            if state.response_content is None
            else [str(part) for part in state.response_content],
            "extras": dict(state.extras),
        }

    def answer_in(data: Any, _: Any) -> IntegrationState:
        if not isinstance(data, Mapping) or set(data) != set(_ANSWER_KEYS):
            raise ValueError(f"a remembered answer has {', '.join(_ANSWER_KEYS)}")
        content = data["response_content"]
        return IntegrationState(
            conv.structure(data["session_id"], str),
            _session_in(data["session"], None),
            conv.structure(data["effects"], tuple[Effect, ...]),
            conv.structure(data["rule_failure_reasons"], tuple[RuleFailureReason, ...]),
            tuple(conv.structure(data["created_coupons"], list[dict[str, Any]])),
            tuple(conv.structure(data["created_referrals"], list[dict[str, Any]])),
            action=conv.structure(data["action"], str),
            meta=conv.structure(data["meta"], SessionMeta),
            response_content=None
            if content is None
            else conv.structure(content, tuple[ResponseContent, ...]),
            extras=conv.structure(data["extras"], dict[str, Any]),
        )

    # (By predicate: registering the class itself would resolve its annotations, and
    # AnySession's text names classes sandbox.state does not import.)
    conv.register_unstructure_hook_func(lambda t: t is IntegrationState, answer_out)
    conv.register_structure_hook_func(lambda t: t is IntegrationState, answer_in)
    return conv


_ANSWER_KEYS = (
    "session_id",
    "session",
    "effects",
    "rule_failure_reasons",
    "created_coupons",
    "created_referrals",
    "action",
    "meta",
    "response_content",
    "extras",
)

_ASKED = tuple[str, tuple[ReturnedCartItem, ...], bool]
"""What an idempotency key was first used for (``Sandbox.return_items``: the session,
the returned items and ``run_rule_engine``)."""


@attrs.frozen
class _Remembered:
    """An Idempotency-Key's first request, when, and its answer."""

    key: str
    asked: _ASKED
    at: datetime
    answer: IntegrationState


def _sessions_module() -> Any:
    import sandbox.sessions

    return sandbox.sessions


# ---------------------------------------------------------------------------
# JSON text, Decimals exact


def _write(value: Any, out: Callable[[str], Any], depth: int) -> None:
    """Compact JSON, the two top levels one entry a line so that a reader (or ``diff``)
    can follow it. json writes no Decimal, and codec.dumps writes Decimal('5') as 5,
    which would read back as an int."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise StateError(f"cannot save the number {value}: JSON has no {value}")
        text = str(value)
        out(text if "." in text or "E" in text else text + "E0")
        return
    if isinstance(value, Mapping):
        items: Any = value.items()
        open_, close = "{", "}"
    elif isinstance(value, list | tuple):
        items = enumerate(value)
        open_, close = "[", "]"
    else:
        out(json.dumps(value, allow_nan=False))  # ASCII: also a string that is not UTF-8
        return
    if not value:
        out(open_ + close)
        return
    separator = ",\n" + " " * (depth + 1) if depth < 2 else ","
    out(open_ + separator[1:] if depth < 2 else open_)
    for i, (key, item) in enumerate(items):
        if i:
            out(separator)
        if open_ == "{":
            out(json.dumps(str(key)) + ":")
        _write(item, out, depth + 1)
    out("\n" + " " * depth + close if depth < 2 else close)


def _exact(value: Any) -> Any:
    """``value`` with each Decimal as the raw JSON number :func:`_write` would write."""
    kind = type(value)
    if kind is dict:
        return {k: _exact(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_exact(v) for v in value]
    if isinstance(value, Decimal):
        parts: list[str] = []
        _write(value, parts.append, 2)
        return msgspec.Raw(parts[0].encode())
    return value


def state_text(data: Mapping[str, Any]) -> str:
    """A state (:meth:`Sandbox.state_dict`) as the JSON text of a state file: each
    top-level entry on a line of its own, and each session, code, counter and profile."""
    encode = msgspec.json.Encoder().encode
    try:
        lines = []
        for key, value in data.items():
            head = json.dumps(str(key)) + ":"
            if isinstance(value, Mapping) and value:
                inner = ",\n  ".join(
                    json.dumps(str(k)) + ":" + encode(_exact(v)).decode() for k, v in value.items()
                )
                lines.append(head + "{\n  " + inner + "\n }")
            elif isinstance(value, list | tuple) and value:
                inner = ",\n  ".join(encode(_exact(v)).decode() for v in value)
                lines.append(head + "[\n  " + inner + "\n ]")
            else:
                lines.append(head + encode(_exact(value)).decode())
        return "{\n " + ",\n ".join(lines) + "\n}\n"
    except UnicodeEncodeError:  # a string that is not UTF-8 (an unpaired surrogate)
        parts: list[str] = []
        _write(data, parts.append, 0)
        return "".join(parts) + "\n"


# ---------------------------------------------------------------------------
# the state of a sandbox's parts (called by Sandbox.state_dict / load_state, under its lock)


def _library_version() -> str:
    try:
        return metadata.version("promo-sandbox")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _application(sb: Sandbox) -> dict[str, Any]:
    return {
        "id": sb.application_id,
        "caseSensitivity": sb.case_sensitivity,
        "campaigns": [[c.id, c.name] for c in sb.campaigns],
    }


def _code_entry(definition: Coupon | Referral) -> dict[str, Any]:
    kind = "coupon" if isinstance(definition, Coupon) else "referral"
    return {"kind": kind, "definition": _converter().unstructure(definition)}


def state_of(
    sb: Sandbox,
    now: datetime,
    inventory: Inventory,
    sessions: SessionStore,
    profiles: ProfileStore,
) -> dict[str, Any]:
    """The JSON-ready state of a sandbox's parts (the caller holds its lock)."""
    conv = _converter()
    ledger = sb.ledger
    codes = [
        _code_entry(definition)
        for index in (inventory.coupons, inventory.referrals)
        for _, definition in index.values()
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "library": _library_version(),
        "rules": None,
        "application": _application(sb),
        "now": now.isoformat(),
        "ids": dict(inventory.ids),
        "costIds": dict(inventory.cost_ids),
        "codes": codes,
        "counters": [[conv.unstructure(key), value] for key, value in ledger.live_counters.items()],
        "profileStats": [conv.unstructure(s) for s in ledger.profiles.values()],
        "lastProfileId": profiles.last_id,
        "profiles": {i: conv.unstructure(r) for i, r in profiles.records.items()},
        "events": sessions.events,
        "firstSessions": dict(sessions.first_sessions),
        "sessions": [conv.unstructure(s) for s in sessions.sessions.values()],
        "idempotency": [
            conv.unstructure(_Remembered(key, asked, at, answer))
            for key, (asked, at, answer) in sessions.idempotency.items()
        ],
    }


_KEYS = (
    "format",
    "version",
    "library",
    "rules",
    "application",
    "now",
    "ids",
    "costIds",
    "codes",
    "counters",
    "profileStats",
    "lastProfileId",
    "profiles",
    "events",
    "firstSessions",
    "sessions",
    "idempotency",
)


@attrs.frozen
class _Decoded:
    now: datetime
    ids: dict[str, int]
    cost_ids: dict[str, int]
    codes: list[Coupon | Referral]
    counters: dict[CounterKey, Decimal]
    stats: list[ProfileStats]
    last_profile_id: int
    records: dict[str, ProfileRecord]
    events: int
    first_sessions: dict[str, str]
    stored: list[StoredSession]
    remembered: list[_Remembered]


def _header(data: Any, sb: Sandbox) -> None:
    """The format, its version and the rules the state was made for."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise StateError(f'not a promo-sandbox state (no "format": "{FORMAT}" in it)')
    version = data.get("version")
    if version != VERSION:
        raise StateError(
            f"a state of format version {version!r}; this promo-sandbox "
            f"({_library_version()}) reads version {VERSION}"
        )
    saved, here = data.get("application"), _application(sb)
    if saved != here:
        made = data.get("rules") or "other rules"
        raise StateError(
            f"made for {made} ({_describe(saved)}), not for these rules ({_describe(here)}); "
            "start with the rules it was saved with, or without it"
        )


def _describe(application: Any) -> str:
    if not isinstance(application, Mapping):
        return f"application {application!r}"
    campaigns = application.get("campaigns")
    shown = (
        ", ".join(f"{c[0]} {c[1]!r}" for c in campaigns if isinstance(c, list) and len(c) == 2)
        if isinstance(campaigns, list)
        else repr(campaigns)
    )
    return (
        f"application {application.get('id')!r}, codes {application.get('caseSensitivity')}, "
        f"campaigns {shown or 'none'}"
    )


def _at(where: str, action: Callable[[], Any]) -> Any:
    """``action()``, its failure a one-line StateError naming where in the state."""
    try:
        return action()
    except StateError:
        raise
    except cattrs.BaseValidationError as exc:
        detail = "; ".join(cattrs.transform_error(exc, path=where, format_exception=_problem))
        raise StateError(f"damaged: {detail}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StateError(f"damaged: {where}: {_problem(exc, None)}") from None


def _problem(exc: BaseException, expected: Any) -> str:
    if isinstance(exc, KeyError):
        return f"required field missing ({exc})"
    if isinstance(exc, ValidationError):
        return "; ".join(f"{p.pointer or '/'}: {p.message}" for p in exc.errors) or str(exc)
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, expected)


def _decode(data: Mapping[str, Any]) -> _Decoded:
    conv = _converter()
    unknown = sorted(set(data) - set(_KEYS))
    missing = [k for k in _KEYS if k not in data]
    if unknown or missing:
        raise StateError(
            "damaged: "
            + "; ".join(
                ([f"unknown keys {', '.join(unknown)}"] if unknown else [])
                + ([f"missing keys {', '.join(missing)}"] if missing else [])
            )
        )

    def codes() -> list[Coupon | Referral]:
        found: list[Coupon | Referral] = []
        for i, entry in enumerate(data["codes"]):
            kind = entry.get("kind") if isinstance(entry, Mapping) else None
            if kind not in ("coupon", "referral") or set(entry) != {"kind", "definition"}:
                raise StateError(
                    f'damaged: $.codes[{i}] is {{"kind": "coupon" or "referral", "definition": ...}}'
                )
            cls: type[Coupon | Referral] = Coupon if kind == "coupon" else Referral
            found.append(
                _at(f"$.codes[{i}]", functools.partial(conv.structure, entry["definition"], cls))
            )
        return found

    def counters() -> dict[CounterKey, Decimal]:
        pairs = conv.structure(data["counters"], list[tuple[Any, Decimal]])
        return {
            _at(f"$.counters[{i}]", functools.partial(conv.structure, key, CounterKey)): value
            for i, (key, value) in enumerate(pairs)
        }

    return _Decoded(
        now=_at("$.now", lambda: _time(data["now"], None)),
        ids=_at("$.ids", lambda: conv.structure(data["ids"], dict[str, int])),
        cost_ids=_at("$.costIds", lambda: conv.structure(data["costIds"], dict[str, int])),
        codes=_at("$.codes", codes),
        counters=_at("$.counters", counters),
        stats=_at(
            "$.profileStats", lambda: conv.structure(data["profileStats"], list[ProfileStats])
        ),
        last_profile_id=_at("$.lastProfileId", lambda: conv.structure(data["lastProfileId"], int)),
        records=_at(
            "$.profiles", lambda: conv.structure(data["profiles"], dict[str, ProfileRecord])
        ),
        events=_at("$.events", lambda: conv.structure(data["events"], int)),
        first_sessions=_at(
            "$.firstSessions", lambda: conv.structure(data["firstSessions"], dict[str, str])
        ),
        stored=_at("$.sessions", lambda: conv.structure(data["sessions"], list[StoredSession])),
        remembered=_at(
            "$.idempotency", lambda: conv.structure(data["idempotency"], list[_Remembered])
        ),
    )


def _check_references(decoded: _Decoded, sb: Sandbox, inventory: Inventory) -> list[Any]:
    """Every campaign a part names exists, and no saved code is another's in the rules.

    Returns the saved codes the rules do not define, with their campaigns."""
    campaigns = inventory.campaign_by_id()

    def known(campaign_id: int, where: str) -> None:
        if campaign_id not in campaigns and campaign_id != -1:
            raise StateError(f"damaged: {where} names campaign {campaign_id}, which is not defined")

    to_add = []
    for definition in decoded.codes:
        known(definition.campaign_id, f"code {definition.code!r}")
        index = inventory.coupons if isinstance(definition, Coupon) else inventory.referrals
        other = inventory.referrals if isinstance(definition, Coupon) else inventory.coupons
        kind = "coupon" if isinstance(definition, Coupon) else "referral"
        if definition.code != inventory.normalize(definition.code):
            raise StateError(
                f"damaged: code {definition.code!r} is not stored {sb.case_sensitivity}"
            )
        if definition.code in other:
            raise StateError(
                f"the {kind} {definition.code!r} of the state is a "
                f"{'referral' if kind == 'coupon' else 'coupon'} in these rules"
            )
        defined = index.get(definition.code)
        if defined is None:
            to_add.append((campaigns[definition.campaign_id], definition))
        elif defined[0].id != definition.campaign_id:
            raise StateError(
                f"the {kind} {definition.code!r} belongs to campaign {definition.campaign_id} "
                f"in the state but to {defined[0].id} ({defined[0].name!r}) in these rules"
            )
    for key in decoded.counters:
        known(key.campaign_id, "a counter")
    for stored in decoded.stored:
        evaluation = stored.closed_with
        effects = (*stored.effects, *(evaluation.effects if evaluation else ()))
        for effect in effects:
            known(effect.campaign_id, f"session {stored.session_id!r}")
        for charge in stored.committed:
            known(charge.key.campaign_id, f"session {stored.session_id!r}")
    return to_add


def restore(
    sb: Sandbox,
    inventory: Inventory,
    sessions: SessionStore,
    profiles: ProfileStore,
    data: Any,
) -> datetime:
    """Put a state back into a sandbox's parts, all or nothing; returns its clock
    (the caller holds the lock and sets the clock)."""
    _header(data, sb)
    decoded = _decode(data)
    to_add = _check_references(decoded, sb, inventory)
    if sessions.sessions or sessions.idempotency or profiles.records or sb.ledger.live_counters:
        raise StateError(
            "load_state() needs a sandbox fresh from its rules; this one has sessions, "
            "profiles or counters already"
        )
    # Nothing below can fail.
    for kind, last in decoded.ids.items():
        inventory.ids[kind] = max(inventory.ids.get(kind, 0), last)
    for name, cost_id in decoded.cost_ids.items():
        inventory.cost_ids.setdefault(name, cost_id)
    for campaign, definition in to_add:
        inventory.register_code(definition.code, campaign, definition, "a saved code")
    sb.ledger.restore(decoded.counters, {s.profile_id: s for s in decoded.stats})
    profiles.records.update(decoded.records)
    profiles.last_id = decoded.last_profile_id
    sessions.sessions.update((s.session_id, s) for s in decoded.stored)
    sessions.first_sessions.update(decoded.first_sessions)
    sessions.events = decoded.events
    sessions.idempotency.update((r.key, (r.asked, r.at, r.answer)) for r in decoded.remembered)
    return decoded.now


# ---------------------------------------------------------------------------
# files


def defined_codes(sb: Sandbox) -> dict[str, dict[str, Any]]:
    """The codes a sandbox fresh from its rules has, as a state writes them: :func:`save`
    leaves these out (the rules file defines them again at every start)."""
    found = {}
    for campaign in sb.campaigns:
        for index in (campaign.coupons, campaign.referrals):
            for code, definition in index.items():
                found[code] = _comparable(_code_entry(definition))
    return found


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "definition": {**entry["definition"], "created": None}}


def save(
    sb: Sandbox,
    path: str | os.PathLike[str],
    *,
    rules: str | None = None,
    defined: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write ``sb``'s state to ``path`` atomically (a temporary file beside it, flushed
    to disk, then ``os.replace``): a reader sees the old file or the new one.

    ``rules`` names the rules file in the state (for messages); ``defined``
    (:func:`defined_codes` of a fresh sandbox) leaves out the codes the rules define.
    """
    data = sb.state_dict()
    data["rules"] = rules
    if defined is not None:
        data["codes"] = [
            c for c in data["codes"] if defined.get(c["definition"]["code"]) != _comparable(c)
        ]
    text = state_text(data)
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise StateError(
            f"cannot write the state file {str(target)!r}: {exc.strerror or exc}"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise StateError(
            f"cannot write the state file {str(target)!r}: {exc.strerror or exc}"
        ) from None


def load(sb: Sandbox, path: str | os.PathLike[str]) -> bool:
    """Load the state file at ``path`` into ``sb`` (fresh from its rules), all or
    nothing; False (and nothing done) when there is no file. A file that cannot be read,
    is not a state, or was made for other rules raises :class:`StateError` naming it."""
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(
            f"cannot read the state file {str(target)!r}: {exc.strerror or exc}"
        ) from None
    try:
        data = parse_json(raw)
    except ValidationError as exc:
        raise StateError(
            f"state file {str(target)!r} is not a promo-sandbox state: "
            f"{exc.errors[0].message if exc.errors else exc}"
        ) from None
    try:
        sb.load_state(data)
    except StateError as exc:
        raise StateError(f"state file {str(target)!r}: {exc}") from None
    return True
