"""A local Talon.One Integration API: Talon.One's HTTP paths over one live Sandbox.

An integration written against an official SDK talks to this server as it
would to Talon.One, with only the host and the API key changed:

- ``PUT /v2/customer_sessions/{customerSessionId}`` (``dry``, ``now``): body
  ``IntegrationRequest``, answer ``IntegrationStateV2`` with exactly the parts
  ``responseContent`` names (:meth:`sandbox.Sandbox.update`);
- ``GET /v2/customer_sessions/{customerSessionId}``: ``{customerSession, effects}``;
- ``PUT /v2/customer_sessions/{customerSessionId}/reopen``: ``{effects}``, the rollbacks;
- ``POST /v2/customer_sessions/{customerSessionId}/returns`` (``dry``): body
  ``ReturnIntegrationRequest``, answer ``IntegrationStateV2``;
- ``PUT /v2/customer_profiles/{integrationId}`` (``runRuleEngine``, ``dry``): body
  ``CustomerProfileIntegrationRequestV2``, answer ``CustomerProfileIntegrationResponseV2``;
- the legacy ``PUT /v1/customer_sessions/{customerSessionId}`` and ``PUT
  /v1/customer_profiles/{integrationId}`` (``dry``): bodies ``NewCustomerSession`` and
  ``NewCustomerProfile``, answer the V1 ``IntegrationState`` (``session``, ``profile``,
  ``event``); a V1 session update replaces the stored session, and a V1 profile update
  runs the rules, as Talon.One's V1 did.

Errors answer as Talon.One does (``message``, ``errors`` of ``{title, source}``,
``StatusCode``): 401 without ``Authorization: ApiKey-v1 <key>``; 400 listing
every problem of a bad request, each with its JSON ``pointer`` into the body
(or the query ``parameter``); 404 for an unknown session; 409 when a request
arrives for a session (or profile) that another request is still updating,
as Talon.One answers parallel updates; 500 when a rule raised, naming the
campaign and the rule (and, for any other failure, saying so in the same
body: never a bare 500); 413 for a request body over the limit. A refused
request stores nothing.

Request bodies are capped at :data:`MAX_BODY` (1 MiB) by default, far above
an ordinary session (a full 1,000-item cart is a few hundred KiB); change it
with ``create_app(..., max_body=...)`` or ``python -m sandbox serve --max-body
4MiB``. A body whose ``Content-Length`` is over the
cap is refused before any of it is read; a chunked body is counted as it
arrives and refused as soon as it passes the cap, so no request holds more
than the cap in memory.

Outside Talon.One's namespace, ``/sandbox/...`` is a small control surface
for tests (same API key): ``GET``/``PUT /sandbox/clock`` (``{"now": ...}``),
``POST /sandbox/clock/advance`` (``{"days": 1}``), ``GET
/sandbox/coupons/{code}``, ``GET /sandbox/referrals/{code}``, ``GET
/sandbox/limits``, ``GET /sandbox/profiles/{integrationId}``, ``GET
/sandbox/snapshot`` (everything a request can change, as JSON), ``POST
/sandbox/reset`` (a fresh sandbox from the rules file) and ``POST /sandbox/save`` (the
state file written now). ``GET /sandbox/health`` and ``GET /sandbox/openapi.json``
(the served operations, in Talon.One's own definitions, and this control surface)
answer without a key. Each request is logged on :data:`ACCESS_LOG`.

With a state file (``create_app(..., state=FILE)``, ``serve --state FILE``) the whole
state is loaded at start and written atomically at the end and on ``POST
/sandbox/save`` (:mod:`sandbox.persist`): a restart loses nothing.

Starlette parses and routes HTTP, uvicorn serves it (the ``server`` extra:
``pip install 'promo-sandbox[server]'``). Each request's work runs in a worker
thread; the Sandbox's own lock orders the updates, so concurrent closes racing
for one coupon give exactly one redemption. :func:`running` serves in a
background thread (what the pytest fixture ``talon_server`` uses);
:func:`serve` in the foreground (``python -m sandbox serve``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import _openapi, persist
from sandbox.checks import parse_time
from sandbox.codec import from_wire, parse_json, to_plain
from sandbox.core import Sandbox, StoredSession
from sandbox.errors import (
    DefinitionError,
    Problem,
    ReentrantCallError,
    RuleError,
    SandboxError,
    TransitionError,
    UnknownEntityError,
    ValidationError,
    escape_pointer_token,
)
from sandbox.models import (
    EventRequest,
    IntegrationRequest,
    NewCustomerSession,
    NewReferral,
    ResponseContent,
)
from sandbox.profiles import CustomerProfile
from sandbox.responses import event_type, event_wire, returns_wire
from sandbox.state import IntegrationState, ProfileState, wire_time

__all__ = [
    "ACCESS_LOG",
    "API_KEY_PREFIX",
    "MAX_BODY",
    "TalonServer",
    "create_app",
    "running",
    "serve",
]

API_KEY_PREFIX = "ApiKey-v1"
"""The scheme of Talon.One's Integration API keys: ``Authorization: ApiKey-v1 <key>``."""

BUSY_MESSAGE = "Too many requests are updating this session at the same time"
"""Talon.One's own words for a 409 (its OpenAPI example)."""

MAX_BODY = 1024 * 1024
"""The default cap on a request body, in bytes (1 MiB). A session with the full 1,000
cart items of ordinary fields is a few hundred KiB; raise the cap (``max_body=``,
``serve --max-body``) for sessions carrying long attribute texts."""

Rules = str | Path | Sandbox | Callable[[], Sandbox]
"""What a server serves: a rules file, a live Sandbox, or a function building one."""

ACCESS_LOG = logging.getLogger("sandbox.server.access")
"""One INFO record per request: ``PUT /v2/customer_sessions/s1 200 2.1ms``.
``python -m sandbox serve`` writes them to stderr; in Python, give the logger a handler."""

_log = logging.getLogger("sandbox.server")

PUBLIC = frozenset({"GET /sandbox/health", "GET /sandbox/openapi.json"})
"""What is answered without an API key."""

_TRUE = ("1", "t", "true")  # what Talon.One's Go server accepts for a boolean parameter
_FALSE = ("0", "f", "false")
_SPANS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")


class _Live:
    """The sandbox being served (reset replaces it), what rebuilds it, where its state
    is kept, and which sessions and profiles a request is updating right now."""

    def __init__(
        self,
        sandbox: Sandbox,
        factory: Callable[[], Sandbox] | None,
        *,
        rules_name: str | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.factory = factory
        self.rules_name = rules_name
        self.state_path = state_path
        # The codes the rules define: a state file leaves them out (the rules file
        # defines them again at every start).
        self.defined = persist.defined_codes(sandbox) if state_path is not None else {}
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # saves in order: the newest state wins

    def claim(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._busy:
                return False
            self._busy.add(key)
            return True

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._busy.discard(key)

    def save(self) -> Path:
        """Write the served sandbox's state to the state file (atomically)."""
        if self.state_path is None:
            raise DefinitionError(
                "this server keeps no state file: start it with --state FILE "
                "(or PROMO_SANDBOX_STATE=FILE) to save its state"
            )
        with self._save_lock:
            persist.save(self.sandbox, self.state_path, rules=self.rules_name, defined=self.defined)
        return self.state_path

    def replace(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if self.state_path is not None:
            self.defined = persist.defined_codes(sandbox)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("promo-sandbox")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _load(rules: Rules) -> tuple[Sandbox, Callable[[], Sandbox] | None]:
    if isinstance(rules, Sandbox):
        return rules, None
    if isinstance(rules, str | Path):
        from sandbox.fuzzing import load_rules

        factory, _ = load_rules(rules)
    elif callable(rules):
        factory = rules
    else:
        raise TypeError(
            f"a server serves a rules file path, a Sandbox or a function returning one, "
            f"got {type(rules).__name__}"
        )
    return _build(factory), factory


def _build(factory: Callable[[], Sandbox]) -> Sandbox:
    made = factory()
    if not isinstance(made, Sandbox):
        raise TypeError(f"the sandbox factory returned {type(made).__name__}, not a Sandbox")
    return made


# ---------------------------------------------------------------------------
# errors, in Talon.One's shape


class _HTTPError(Exception):
    """An answer other than 200, with Talon.One's error body."""

    def __init__(self, status: int, message: str, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)

    def response(self) -> Response:
        body = {"message": self.message, "errors": self.errors, "StatusCode": self.status}
        return _json_response(_json_bytes(body), status=self.status)


def _json_bytes(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON.

    A string holding an unpaired UTF-16 surrogate (valid in JSON as an escape, but not
    encodable as UTF-8) is written back as that escape rather than failing the answer.
    """
    options: dict[str, Any] = {"allow_nan": False, "separators": (",", ":")}
    try:
        return json.dumps(content, ensure_ascii=False, **options).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(content, ensure_ascii=True, **options).encode("ascii")


def _json_response(body: bytes, *, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _too_large(limit: int, size: str) -> _HTTPError:
    message = (
        f"the request body is {size}; this server accepts at most {_bytes_text(limit)} "
        "(python -m sandbox serve --max-body BYTES, or max_body= in Python, raises it)"
    )
    return _HTTPError(413, message, [{"title": message, "source": {"pointer": ""}}])


def _bytes_text(size: int) -> str:
    """``1,048,576 bytes (1 MiB)``: exact, and readable when it is a round size."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size:,} bytes ({size // scale} {unit})"
    return f"{size:,} bytes"


def _source(problem: Problem, path_parameter: str, subject: str) -> dict[str, str]:
    """``{"pointer"}`` into the body, or ``{"parameter"}`` for a query or path parameter."""
    if not problem.pointer and subject in ("session id", "profile id"):
        return {"parameter": path_parameter}
    if problem.pointer and not problem.pointer.startswith("/"):
        return {"parameter": problem.pointer}  # the library names query parameters bare
    return {"pointer": problem.pointer}


def _refusal(exc: Exception, *, path_parameter: str, state_source: dict[str, str]) -> _HTTPError:
    """What to answer for an exception a request raised (nothing was stored)."""
    if isinstance(exc, _HTTPError):
        return exc
    if isinstance(exc, ValidationError):
        return _HTTPError(
            400,
            str(exc).splitlines()[0],
            [
                {"title": p.message, "source": _source(p, path_parameter, exc.subject)}
                for p in exc.errors
            ],
        )
    if isinstance(exc, TransitionError):
        return _HTTPError(400, str(exc), [{"title": str(exc), "source": state_source}])
    if isinstance(exc, UnknownEntityError):
        return _HTTPError(
            404, str(exc), [{"title": str(exc), "source": {"parameter": path_parameter}}]
        )
    if isinstance(exc, RuleError):
        cause = exc.__cause__
        return _HTTPError(
            500,
            str(exc),
            [
                {
                    "title": f"campaign {exc.campaign!r}, rule {exc.rule!r} raised",
                    "details": str(exc)
                    + (f" ({type(cause).__name__}: {cause})" if cause is not None else ""),
                    "source": {"resource": f"campaign {exc.campaign!r}, rule {exc.rule!r}"},
                }
            ],
        )
    if isinstance(exc, ReentrantCallError):
        return _HTTPError(500, str(exc), [{"title": str(exc), "source": {}}])
    if isinstance(exc, SandboxError):  # DefinitionError and kin: a bad control request
        return _HTTPError(400, str(exc), [{"title": str(exc), "source": {"pointer": ""}}])
    message = (
        f"internal error: {type(exc).__name__}: {exc} (a bug in promo-sandbox, not in "
        "your request: please report it with the request)"
    )
    return _HTTPError(500, message, [{"title": message, "source": {}}])


# ---------------------------------------------------------------------------
# request parts


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 once it is known to pass ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading; a body
    without one (chunked) is counted as it arrives and refused as soon as it passes
    the limit, so at most ``limit`` bytes of it are ever held.
    """
    try:
        declared: int | None = int(request.headers.get("content-length", ""))
    except ValueError:  # absent (chunked), or not a number the protocol layer let through
        declared = None
    if declared is not None and declared > limit:
        raise _too_large(limit, f"{declared:,} bytes (its Content-Length)")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, f"more than {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _HTTPError(
            400, "the client closed the connection before sending the whole body", []
        ) from None
    return b"".join(chunks)


def _path_problems(request: Request) -> list[Problem]:
    """The path parameters that are not text.

    The ASGI server percent-decodes the path as UTF-8 and replaces bytes that are not
    UTF-8 (``%ED%A0%80``, an encoded surrogate, or ``%FF``) with U+FFFD, which would
    silently turn two different ids into one; such a path is refused instead.
    """
    raw = bytes(request.scope.get("raw_path") or b"").partition(b"?")[0]
    try:
        unquote_to_bytes(raw).decode("utf-8")
        undecodable = False
    except UnicodeDecodeError:
        undecodable = True
    problems = []
    for name, value in request.path_params.items():
        if not isinstance(value, str):
            continue
        if undecodable and "\ufffd" in value:
            shown = raw.decode("ascii", "backslashreplace")
            problems.append(
                Problem(
                    name,
                    f"'{name}' must be UTF-8 text, percent-encoded; the path {shown!r} "
                    "holds bytes that are not UTF-8",
                )
            )
        elif any("\ud800" <= char <= "\udfff" for char in value):
            problems.append(
                Problem(
                    name,
                    f"'{name}' must be valid Unicode text, not hold an unpaired "
                    f"surrogate: {value!r}",
                )
            )
    return problems


def _advance_steps(body: Mapping[str, Any]) -> dict[str, float]:
    """The body of ``POST /sandbox/clock/advance`` as ``timedelta`` keywords."""
    problems = []
    steps: dict[str, float] = {}
    for key, value in body.items():
        pointer = "/" + escape_pointer_token(key)
        if key not in _SPANS:
            problems.append(
                Problem(
                    pointer,
                    f'unknown unit {key!r}; the body is like {{"days": 1}}, with any of '
                    + ", ".join(_SPANS),
                )
            )
        elif isinstance(value, bool) or not isinstance(value, int | Decimal):
            problems.append(Problem(pointer, f"{key!r} must be a number, got {value!r}"))
        else:
            steps[key] = value if isinstance(value, int) else float(value)
    if problems:
        raise ValidationError(problems, subject="clock advance")
    return steps


def _flag(request: Request, name: str, problems: list[Problem]) -> bool:
    """A boolean query parameter (absent: false)."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() not in _FALSE:
        problems.append(Problem(name, f"'{name}' must be true or false, got {raw!r}"))
    return False


def _body(raw: bytes) -> dict[str, Any]:
    """The JSON body as an object, numbers exact; a ValidationError if it is not one."""
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationError(
            [Problem("", f"the body must be a JSON object, got {type(data).__name__}")],
            subject="request",
        )
    return data


def _wanted(body: Mapping[str, Any]) -> list[str]:
    """The request's ``responseContent`` (already validated by the sandbox)."""
    return [str(part) for part in body.get("responseContent") or ()]


def _session_body(raw: bytes, problems: list[Problem], strict_total: bool) -> dict[str, Any]:
    """An ``IntegrationRequest`` body; every problem of it and of the query at once."""
    try:
        body = _body(raw)
    except ValidationError as exc:
        raise ValidationError([*problems, *exc.errors], subject="request") from None
    if "customerSession" not in body:
        problems.append(
            Problem("/customerSession", "is required: the body is an IntegrationRequest")
        )
    if problems:
        # Also what is wrong in the body, so one answer lists everything.
        if isinstance(body.get("customerSession"), dict):
            try:
                from_wire(IntegrationRequest, body, strict_total=strict_total)
            except ValidationError as exc:
                problems.extend(exc.errors)
        raise ValidationError(problems, subject="request")
    return body


def _return_items(body: Mapping[str, Any]) -> Any:
    """The ``returnedCartItems`` of a ``ReturnIntegrationRequest``."""
    problems = [
        Problem(
            f"/{key}", f"unknown field {key!r}; a return request has 'return' and 'responseContent'"
        )
        for key in body
        if key not in ("return", "responseContent")
    ]
    content = body.get("responseContent")
    if content is not None:
        if not isinstance(content, list):
            problems.append(Problem("/responseContent", f"must be a list, got {content!r}"))
        else:
            known = [p.value for p in ResponseContent]
            problems.extend(
                Problem(f"/responseContent/{i}", f"must be one of {', '.join(known)}, got {part!r}")
                for i, part in enumerate(content)
                if part not in known
            )
    returned = body.get("return")
    if not isinstance(returned, dict) or "returnedCartItems" not in returned:
        problems.append(
            Problem(
                "/return", 'is required: {"returnedCartItems": [{"position": 0, "quantity": 1}]}'
            )
        )
    else:
        problems.extend(
            Problem(f"/return/{key}", f"unknown field {key!r}; 'return' has 'returnedCartItems'")
            for key in returned
            if key != "returnedCartItems"
        )
    if problems or not isinstance(returned, dict):
        raise ValidationError(problems, subject="return")
    return returned["returnedCartItems"]


def session_wire(stored: StoredSession) -> dict[str, Any]:
    """``IntegrationCustomerSessionResponse``: the stored session and its standing effects."""
    assert stored.meta is not None  # every stored session has one
    state = IntegrationState(stored.session_id, stored.session, stored.effects, meta=stored.meta)
    return {
        "customerSession": state.customer_session_wire(),
        "effects": [e.to_wire() for e in stored.effects],
    }


def snapshot_wire(sb: Sandbox) -> dict[str, Any]:
    """Everything a request can change, as JSON: clock, sessions, code usage, limit
    counters and profiles. Two snapshots are equal when nothing changed between them."""
    with sb._lock:  # the sandbox's own lock: the parts are of one moment
        coupons = [_view_wire(sb.get_coupon(code)) for c in sb.campaigns for code in c.coupons]
        referrals = [
            _view_wire(sb.get_referral(code)) for c in sb.campaigns for code in c.referrals
        ]
        return {
            "now": wire_time(sb.now),
            "sessions": {i: session_wire(s) for i, s in sb.sessions.items()},
            "coupons": coupons,
            "referrals": referrals,
            "limits": [_limit_wire(c) for c in sb.limit_counters()],
            "profiles": {i: sb.get_profile(i).to_wire() for i in sb.profile_ids},
        }


_INVENTORY_PARTS = ("profile", "referrals", "coupons", "loyalty", "giveaways", "achievements")


def _view_wire(view: Any) -> dict[str, Any]:
    names = {
        "profile_redemption_count": "profileRedemptionCount",
        "referred_customers": "referredCustomers",
        "campaign_id": "campaignId",
        "usage_limit": "usageLimit",
        "usage_counter": "usageCounter",
        "start_date": "startDate",
        "expiry_date": "expiryDate",
    }
    out: dict[str, Any] = {}
    for field in type(view).__attrs_attrs__:
        value = getattr(view, field.name)
        out[names.get(field.name, field.name)] = (
            wire_time(value) if hasattr(value, "astimezone") else value
        )
    return out


def _limit_wire(counter: Any) -> dict[str, Any]:
    return {
        "campaignId": counter.campaign_id,
        "campaignName": counter.campaign_name,
        "action": counter.action,
        "scope": dict(counter.scope),
        "period": counter.period,
        "bucket": counter.bucket,
        "limit": to_plain(counter.limit),
        "counter": to_plain(counter.counter),
        "remaining": to_plain(counter.remaining),
    }


# ---------------------------------------------------------------------------
# the legacy V1 answers


def integration_state_v1(
    sb: Sandbox, state: IntegrationState, event_kind: str, event_id: int
) -> dict[str, Any]:
    """Talon.One's V1 ``IntegrationState`` of a session update: ``session`` (the V1
    ``CustomerSession``: one ``coupon``, one ``referral``, a ``discounts`` map),
    ``profile`` and the ``event`` with the effects."""
    v2 = state.customer_session_wire()
    codes = state.session.coupon_codes or ()
    session = {
        "integrationId": v2["integrationId"],
        "created": v2["created"],
        "applicationId": v2["applicationId"],
        "profileId": v2["profileId"],
        "coupon": codes[0] if codes else "",
        "referral": state.session.referral_code or "",
        "state": v2["state"],
        "cartItems": v2["cartItems"],
        **({"identifiers": v2["identifiers"]} if "identifiers" in v2 else {}),
        "total": v2["total"],
        "attributes": v2["attributes"],
        "firstSession": v2["firstSession"],
        "updateCount": v2["updateCount"],
        "discounts": {name: to_plain(value) for name, value in state.discounts.items()},
        "updated": v2["updated"],
    }
    at = state.meta.updated
    return {
        "session": session,
        "profile": _profile_v1(sb, state.session.profile_id, at),
        "event": _event_v1(sb, event_id, event_kind, state, at),
    }


def profile_state_v1(
    sb: Sandbox, answer: ProfileState, event_kind: str, event_id: int
) -> dict[str, Any]:
    """Talon.One's V1 ``IntegrationState`` of a profile update: the ``profile``, the
    ``event`` with what the rules answered, and the empty ``session`` the rules saw
    (a profile update is in no session: its ``integrationId`` is empty)."""
    state = answer.evaluation
    assert state is not None  # a V1 profile update always runs the rules
    wire = integration_state_v1(sb, state, event_kind, event_id)
    wire["session"]["integrationId"] = ""
    wire["event"].pop("sessionId", None)
    wire["profile"] = answer.profile.to_wire()
    return wire


def _profile_v1(sb: Sandbox, profile_id: str | None, at: Any) -> dict[str, Any]:
    if not profile_id:
        return CustomerProfile.anonymous(at).to_wire()
    try:
        profile = sb.get_profile(profile_id)
    except UnknownEntityError:  # a dry run's new profile, as the real update would make it
        profile = CustomerProfile(profile_id, len(sb.profile_ids) + 1, at, {}, 0, Decimal(0), at)
    return profile.to_wire() | {"lastActivity": wire_time(at)}


def _event_v1(
    sb: Sandbox, event_id: int, kind: str, state: IntegrationState, at: Any
) -> dict[str, Any]:
    event = event_wire(
        event_id,
        kind,
        sb.application_id,
        state.session_id,
        state.session.profile_id,
        state.effects,
        at,
    )
    event["ledgerEntries"] = []  # the sandbox has no loyalty programs
    return event


def _next_event_id(sb: Sandbox) -> int:
    """The id the next event gets: what the V2 answers' ``event`` part numbers by (the
    count of stored updates, plus one)."""
    return sb._sessions.events + 1


def _v1_session_body(raw: bytes, problems: list[Problem], strict_total: bool) -> dict[str, Any]:
    """A V1 ``NewCustomerSession`` body; every problem of it and of the query at once."""
    try:
        body = _body(raw)
    except ValidationError as exc:
        raise ValidationError([*problems, *exc.errors], subject="request") from None
    if problems:
        try:
            from_wire(NewCustomerSession, body, strict_total=strict_total)
        except ValidationError as exc:
            problems = [*problems, *exc.errors]
        raise ValidationError(problems, subject="request")
    return body


# ---------------------------------------------------------------------------
# one log line per request


class _AccessLog:
    """Logs each request on :data:`ACCESS_LOG`: method, path (as sent, so that no
    decoded character can break the line), status and milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless an answer starts: what the error middleware will send
        logged = False

        def log() -> None:
            nonlocal logged
            logged = True
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                target = bytes(scope.get("raw_path") or scope["path"].encode())
                query = scope.get("query_string") or b""
                if query and b"?" not in target:
                    target += b"?" + query
                ACCESS_LOG.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    target.decode("ascii", "backslashreplace"),
                    status,
                    (time.perf_counter() - start) * 1000,
                )

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log()  # before the last part goes out: the line is there when the client has it
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not logged:  # no answer sent from in here (the error middleware sends a 500)
                log()


# ---------------------------------------------------------------------------
# the application


def create_app(
    rules: Rules,
    *,
    api_key: str,
    max_body: int = MAX_BODY,
    state: str | os.PathLike[str] | None = None,
    rules_name: str | None = None,
) -> Starlette:
    """The ASGI application serving ``rules`` (a rules file, a Sandbox or a factory).

    ``max_body`` caps a request body in bytes (default :data:`MAX_BODY`, 1 MiB);
    a larger one is answered 413 without being read into memory.
    ``app.state.live.sandbox`` is the sandbox being served (``/sandbox/reset``
    replaces it with a fresh one from the rules file or factory).

    ``state`` is a state file (:mod:`sandbox.persist`): loaded now when it exists
    (a file that is not a state, or another rules file's, raises
    :class:`~sandbox.persist.StateError` and nothing is served), else written now,
    so that a path that cannot be written is found at start; ``POST /sandbox/save``
    and :func:`serve`/:func:`running` at their end write it again. ``rules_name`` is
    what health and the state file call the rules (default: the rules file's path).
    """
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")
    sandbox, factory = _load(rules)
    live = _Live(
        sandbox,
        factory,
        rules_name=rules_name or (os.fspath(rules) if isinstance(rules, str | Path) else None),
        state_path=None if state is None else Path(state),
    )
    if live.state_path is not None and not persist.load(sandbox, live.state_path):
        live.save()
    expected = f"{API_KEY_PREFIX} {api_key}".encode()

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        return secrets.compare_digest(given, expected)

    async def answer(
        request: Request,
        work: Callable[[Sandbox, bytes], Any],
        *,
        busy: tuple[str, str] | None = None,
        path_parameter: str = "customerSessionId",
        state_source: dict[str, str] | None = None,
    ) -> Response:
        if not authorized(request):
            return _HTTPError(
                401,
                f"missing or wrong API key: send the header 'Authorization: {API_KEY_PREFIX} <key>' "
                "with the key the sandbox server printed at start",
                [{"title": "unauthorized", "source": {"parameter": "Authorization"}}],
            ).response()
        source = state_source or {"parameter": path_parameter}
        try:
            problems = _path_problems(request)
            if problems:
                raise ValidationError(problems, subject="request")
            raw = await _read_body(request, max_body)
        except Exception as exc:
            return _refusal(exc, path_parameter=path_parameter, state_source=source).response()
        if busy is not None and not live.claim(busy):
            return _HTTPError(409, BUSY_MESSAGE, []).response()

        def work_and_encode(sb: Sandbox, raw: bytes) -> Response:
            # The answer is encoded here, inside the try, so that one that cannot be
            # written is still an answer in Talon.One's error body. (An update the
            # sandbox stored before that stays stored: the server cannot undo it. As
            # _json_bytes writes any string, only a value that is not JSON at all, a
            # bug, could fail here.) A refusal is also built here rather than raised
            # out of the worker thread: an exception crossing it stays in a reference
            # cycle with the future that carried it, holding the request body in its
            # frames until the cyclic garbage collector happens to run.
            try:
                result = work(sb, raw)
                if isinstance(result, Response):  # a status other than 200
                    return result
                return _json_response(_json_bytes(result))
            except Exception as exc:
                return _refusal(exc, path_parameter=path_parameter, state_source=source).response()

        try:
            return await run_in_threadpool(work_and_encode, live.sandbox, raw)
        finally:
            if busy is not None:
                live.release(busy)

    # -- Talon.One's Integration API -------------------------------------------

    async def update_session(request: Request) -> Response:
        session_id = request.path_params["customerSessionId"]
        problems: list[Problem] = []
        dry = _flag(request, "dry", problems)
        now: Any = request.query_params.get("now")
        if now is not None:
            try:
                now = parse_time(now, "'now'")
            except DefinitionError as exc:
                problems.append(Problem("now", str(exc)))

        def work(sb: Sandbox, raw: bytes) -> Any:
            body = _session_body(raw, list(problems), sb.strict_total)
            state = sb.update(session_id, body, dry=dry, now=now)
            return state.to_wire(response_content=_wanted(body))

        return await answer(
            request,
            work,
            busy=("session", session_id),
            state_source={"pointer": "/customerSession/state"},
        )

    async def get_session(request: Request) -> Response:
        session_id = request.path_params["customerSessionId"]
        return await answer(request, lambda sb, _: session_wire(sb.get_session(session_id)))

    async def reopen_session(request: Request) -> Response:
        session_id = request.path_params["customerSessionId"]

        def work(sb: Sandbox, _: bytes) -> Any:
            state = sb.reopen(session_id)
            return {"effects": [e.to_wire() for e in state.effects]}

        return await answer(request, work, busy=("session", session_id))

    async def return_items(request: Request) -> Response:
        session_id = request.path_params["customerSessionId"]
        problems: list[Problem] = []
        dry = _flag(request, "dry", problems)

        run_rules = _flag(request, "runRuleEngine", problems)
        key = request.headers.get("idempotency-key")

        def work(sb: Sandbox, raw: bytes) -> Any:
            if problems:
                raise ValidationError(problems, subject="request")
            body = _body(raw)
            items = _return_items(body)
            before = sb.get_session(session_id)  # this request holds the session (busy)
            try:
                state = sb.return_items(
                    session_id, items, dry=dry, run_rule_engine=run_rules, idempotency_key=key
                )
            except ValidationError as exc:
                if any(p.pointer == "Idempotency-Key" for p in exc.errors):
                    raise
                raise exc.within("/return") from None
            wanted = _wanted(body)
            answer = state.to_wire(response_content=wanted)
            if ResponseContent.PREVIOUS_RETURNS in wanted:
                assert before.meta is not None
                answer["previousReturns"] = returns_wire(before, sb.application_id, before.meta.id)
            return answer

        return await answer(request, work, busy=("session", session_id))

    async def update_profile(request: Request) -> Response:
        profile_id = request.path_params["integrationId"]
        problems: list[Problem] = []
        run_rules = _flag(request, "runRuleEngine", problems)
        dry = _flag(request, "dry", problems)

        def work(sb: Sandbox, raw: bytes) -> Any:
            body = _body(raw)
            if problems:
                raise ValidationError(problems, subject="request")
            state = sb.update_profile(profile_id, body, run_rule_engine=run_rules, dry=dry)
            return state.to_wire(response_content=_wanted(body))

        return await answer(
            request, work, busy=("profile", profile_id), path_parameter="integrationId"
        )

    # -- the legacy V1 operations ---------------------------------------------------

    async def update_session_v1(request: Request) -> Response:
        session_id = request.path_params["customerSessionId"]
        problems: list[Problem] = []
        dry = _flag(request, "dry", problems)

        def work(sb: Sandbox, raw: bytes) -> Any:
            body = _v1_session_body(raw, list(problems), sb.strict_total)
            before = sb.sessions.get(session_id)  # this request holds the session (busy)
            event_id = _next_event_id(sb)
            state = sb.update(session_id, body, dry=dry, version=1)
            assert state.session.state is not None
            kind = event_type(before.state if before else None, state.session.state)
            return integration_state_v1(sb, state, kind, event_id)

        return await answer(
            request, work, busy=("session", session_id), state_source={"pointer": "/state"}
        )

    async def update_profile_v1(request: Request) -> Response:
        profile_id = request.path_params["integrationId"]
        problems: list[Problem] = []
        dry = _flag(request, "dry", problems)

        def work(sb: Sandbox, raw: bytes) -> Any:
            body = _body(raw)
            problems.extend(
                Problem(
                    "/" + escape_pointer_token(key),
                    f"unknown field {key!r}; a V1 profile update (NewCustomerProfile) "
                    "has only 'attributes'",
                )
                for key in body
                if key != "attributes"
            )
            if problems:
                raise ValidationError(problems, subject="request")
            try:
                sb.get_profile(profile_id)
                kind = "talon_profile_updated"
            except UnknownEntityError:
                kind = "talon_profile_created"
            event_id = _next_event_id(sb)
            answer = sb.update_profile(profile_id, body, run_rule_engine=True, dry=dry)
            return profile_state_v1(sb, answer, kind, event_id)

        return await answer(
            request, work, busy=("profile", profile_id), path_parameter="integrationId"
        )

    async def track_event(request: Request) -> Response:
        problems: list[Problem] = []
        dry = _flag(request, "dry", problems)
        silent = request.query_params.get("silent", "yes")  # Talon.One's default: 204
        if silent not in ("yes", "no"):
            problems.append(Problem("silent", f"'silent' must be yes or no, got {silent!r}"))

        def work(sb: Sandbox, raw: bytes) -> Any:
            body = _body(raw)
            event = from_wire(EventRequest, body)
            if problems:
                raise ValidationError(problems, subject="request")
            state = sb.track_event(
                event.profile_id,
                event.type,
                event.attributes,
                dry=dry,
                response_content=event.response_content,
                evaluable_campaign_ids=event.evaluable_campaign_ids,
            )
            if silent == "yes":
                return Response(status_code=204)
            return state.to_wire(response_content=_wanted(body))

        return await answer(request, work)

    async def inventory(request: Request) -> Response:
        profile_id = request.path_params["integrationId"]
        problems: list[Problem] = []
        parts = {name: _flag(request, name, problems) for name in _INVENTORY_PARTS}

        def work(sb: Sandbox, _: bytes) -> Any:
            if problems:
                raise ValidationError(problems, subject="request")
            wire = sb.get_inventory(profile_id).to_wire(
                profile=parts["profile"], coupons=parts["coupons"], referrals=parts["referrals"]
            )
            if parts["loyalty"]:
                wire["loyalty"] = {"programs": {}}  # the sandbox has no loyalty programs
            if parts["giveaways"]:
                wire["giveaways"] = []
            if parts["achievements"]:
                wire["achievements"] = []
            return wire

        return await answer(request, work, path_parameter="integrationId")

    async def create_referral(request: Request) -> Response:
        def work(sb: Sandbox, raw: bytes) -> Any:
            new = from_wire(NewReferral, _body(raw))
            times: dict[str, Any] = {}
            problems = []
            for name, pointer in (("start_date", "/startDate"), ("expiry_date", "/expiryDate")):
                value = getattr(new, name)
                if value is not None:
                    try:
                        times[name] = parse_time(value, f"'{pointer[1:]}'")
                    except DefinitionError as exc:
                        problems.append(Problem(pointer, str(exc)))
            if new.campaign_id not in {c.id for c in sb.campaigns}:
                problems.append(
                    Problem(
                        "/campaignId",
                        f"no campaign with id {new.campaign_id}; the campaigns are "
                        + (", ".join(f"{c.id} ({c.name!r})" for c in sb.campaigns) or "none"),
                    )
                )
            if problems:
                raise ValidationError(problems, subject="NewReferral")
            made = sb.create_referral(
                new.campaign_id,
                new.advocate_profile_integration_id,
                friend=new.friend_profile_integration_id,
                usage_limit=new.usage_limit or 0,
                **times,
            )
            wire = made.to_wire()
            wire.pop("referredCustomers")  # a Referral, not an InventoryReferral
            return _json_response(_json_bytes(wire), status=201)

        return await answer(request, work)

    # -- the control surface -----------------------------------------------------

    async def clock(request: Request) -> Response:
        def work(sb: Sandbox, raw: bytes) -> Any:
            if request.method == "PUT":
                body = _body(raw)
                if set(body) != {"now"}:
                    raise ValidationError(
                        [Problem("", 'the body is {"now": "2026-12-01T10:00:00Z"}')],
                        subject="clock",
                    )
                sb.set_now(body["now"])
            return {"now": wire_time(sb.now)}

        return await answer(request, work)

    async def advance(request: Request) -> Response:
        def work(sb: Sandbox, raw: bytes) -> Any:
            return {"now": wire_time(sb.advance(**_advance_steps(_body(raw))))}

        return await answer(request, work)

    async def coupon(request: Request) -> Response:
        code = request.path_params["code"]
        return await answer(
            request, lambda sb, _: _view_wire(sb.get_coupon(code)), path_parameter="code"
        )

    async def referral(request: Request) -> Response:
        code = request.path_params["code"]
        return await answer(
            request, lambda sb, _: _view_wire(sb.get_referral(code)), path_parameter="code"
        )

    async def limits(request: Request) -> Response:
        return await answer(request, lambda sb, _: [_limit_wire(c) for c in sb.limit_counters()])

    async def profile(request: Request) -> Response:
        profile_id = request.path_params["integrationId"]
        return await answer(
            request,
            lambda sb, _: sb.get_profile(profile_id).to_wire(),
            path_parameter="integrationId",
        )

    async def snapshot(request: Request) -> Response:
        return await answer(request, lambda sb, _: snapshot_wire(sb))

    async def health(request: Request) -> Response:
        """Whether the server is up: its version, rules and state files, and counts.

        Answered without an API key, for health checks."""

        def work() -> Response:
            sb = live.sandbox
            body = {
                "status": "ok",
                "version": _version(),
                "rules": live.rules_name,
                "state": None if live.state_path is None else str(live.state_path),
                "campaigns": len(sb.campaigns),
                "sessions": len(sb.sessions),
                "profiles": len(sb.profile_ids),
                "now": wire_time(sb.now),
            }
            return _json_response(_json_bytes(body))

        return await run_in_threadpool(work)

    openapi_body: list[bytes] = []

    async def openapi(request: Request) -> Response:
        """This server's OpenAPI document: the Talon.One operations it serves, as
        Talon.One defines them, and this control surface.

        Answered without an API key."""
        if not openapi_body:
            served = [
                (method, route.path, route.endpoint)
                for route in app.routes
                if isinstance(route, Route)
                for method in sorted((route.methods or set()) - {"HEAD"})
            ]
            document = _openapi.document(served, version=_version(), public=PUBLIC)
            openapi_body.append(_json_bytes(document))
        return _json_response(openapi_body[0])

    async def save(request: Request) -> Response:
        """Write the sandbox's whole state to the server's state file now (atomically).

        Without a state file (--state FILE, PROMO_SANDBOX_STATE) the answer is 400."""

        def work(sb: Sandbox, _: bytes) -> Any:
            try:
                path = live.save()
            except persist.StateError as exc:
                raise _HTTPError(500, str(exc), [{"title": str(exc), "source": {}}]) from None
            return {
                "saved": str(path),
                "sessions": len(sb.sessions),
                "profiles": len(sb.profile_ids),
                "now": wire_time(sb.now),
            }

        return await answer(request, work)

    async def reset(request: Request) -> Response:
        def work(sb: Sandbox, _: bytes) -> Any:
            if live.factory is None:
                raise DefinitionError(
                    "this server serves a Sandbox object, not a rules file or factory: "
                    "there is nothing to rebuild it from"
                )
            try:
                fresh = _build(live.factory)
            except Exception as exc:
                message = (
                    f"rebuilding the sandbox failed, so the served one is unchanged: "
                    f"{type(exc).__name__}: {exc}"
                )
                raise _HTTPError(500, message, [{"title": message, "source": {}}]) from exc
            live.replace(fresh)
            return snapshot_wire(fresh)

        return await answer(request, work)

    async def not_routed(request: Request, exc: Exception) -> Response:
        """An unknown path or method, in the same error body as every other refusal."""
        status = getattr(exc, "status_code", 500)
        message = f"{request.method} {request.url.path}: " + (
            "no such endpoint in the sandbox server"
            if status == 404
            else str(getattr(exc, "detail", exc))
        )
        return _HTTPError(status, message, [{"title": message, "source": {}}]).response()

    async def crashed(request: Request, exc: Exception) -> Response:
        """Whatever escaped a route still answers in Talon.One's error body (Starlette
        then re-raises it, so the server's log shows the traceback)."""
        return _refusal(exc, path_parameter="", state_source={}).response()

    session_path = "/v2/customer_sessions/{customerSessionId}"
    app = Starlette(
        exception_handlers={HTTPException: not_routed, Exception: crashed},
        middleware=[Middleware(_AccessLog)],
        routes=[
            Route(session_path, update_session, methods=["PUT"]),
            Route(session_path, get_session, methods=["GET"]),
            Route(session_path + "/reopen", reopen_session, methods=["PUT"]),
            Route(session_path + "/returns", return_items, methods=["POST"]),
            Route("/v2/customer_profiles/{integrationId}", update_profile, methods=["PUT"]),
            Route("/v1/customer_sessions/{customerSessionId}", update_session_v1, methods=["PUT"]),
            Route("/v1/customer_profiles/{integrationId}", update_profile_v1, methods=["PUT"]),
            Route("/sandbox/health", health, methods=["GET"]),
            Route("/sandbox/openapi.json", openapi, methods=["GET"]),
            Route("/sandbox/save", save, methods=["POST"]),
            Route("/v2/events", track_event, methods=["POST"]),
            Route("/v1/customer_profiles/{integrationId}/inventory", inventory, methods=["GET"]),
            Route("/v1/referrals", create_referral, methods=["POST"]),
            Route("/sandbox/clock", clock, methods=["GET", "PUT"]),
            Route("/sandbox/clock/advance", advance, methods=["POST"]),
            Route("/sandbox/coupons/{code}", coupon, methods=["GET"]),
            Route("/sandbox/referrals/{code}", referral, methods=["GET"]),
            Route("/sandbox/limits", limits, methods=["GET"]),
            Route("/sandbox/profiles/{integrationId}", profile, methods=["GET"]),
            Route("/sandbox/snapshot", snapshot, methods=["GET"]),
            Route("/sandbox/reset", reset, methods=["POST"]),
        ],
    )
    app.state.live = live
    return app


# ---------------------------------------------------------------------------
# serving


class TalonServer:
    """A server running in a background thread (see :func:`running`).

    ``url`` is the base URL to give an SDK's ``Configuration(host=...)``;
    ``api_key`` the key it expects after ``ApiKey-v1``; ``sandbox`` the live
    Sandbox it serves (a fresh one after ``POST /sandbox/reset``).
    """

    def __init__(self, url: str, api_key: str, live: _Live) -> None:
        self.url = url
        self.api_key = api_key
        self._live = live

    @property
    def sandbox(self) -> Sandbox:
        return self._live.sandbox

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header, for plain HTTP clients."""
        return {"Authorization": f"{API_KEY_PREFIX} {self.api_key}"}

    def __repr__(self) -> str:
        return f"<TalonServer {self.url} {self.sandbox!r}>"


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one, chosen by the system)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it each answer waits out the client's delayed ACK (40 ms) behind Nagle.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: Starlette) -> uvicorn.Config:
    # log_config=None: leave the host program's (or pytest's) logging alone.
    return uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )


@contextlib.contextmanager
def running(
    rules: Rules,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    max_body: int = MAX_BODY,
    state: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
) -> Iterator[TalonServer]:
    """Serve ``rules`` in a background thread for the ``with`` block; port 0 (the
    default) takes a free port. Stops the server (and waits for it) on exit.
    ``max_body`` caps a request body in bytes; ``state`` is a state file, loaded at
    start and saved again when the block ends (see :func:`create_app`).

    >>> with running("examples/xmas.py") as server:  # doctest: +SKIP
    ...     configuration = talon_one.Configuration(host=server.url)
    """
    key = api_key or secrets.token_urlsafe(24)
    app = create_app(rules, api_key=key, max_body=max_body, state=state)
    live: _Live = app.state.live
    sock = _listen(host, port)
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="promo-sandbox-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox server did not start within {timeout}s")
            time.sleep(0.005)
        yield TalonServer(_url(sock), key, live)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        if live.state_path is not None:
            live.save()


def serve(
    rules: Rules,
    *,
    host: str = "127.0.0.1",
    port: int = 9000,
    api_key: str | None = None,
    max_body: int = MAX_BODY,
    state: str | os.PathLike[str] | None = None,
    rules_name: str | None = None,
    log_requests: bool = True,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``rules`` in the foreground until interrupted (``python -m sandbox serve``).

    ``max_body`` caps a request body in bytes; ``state`` is a state file, loaded at
    start and saved again at the end (see :func:`create_app`). With ``log_requests``
    each request is logged on stderr (:data:`ACCESS_LOG`). Raises ``OSError`` when the
    address cannot be listened on, :class:`~sandbox.persist.StateError` when the state
    file cannot be loaded (before listening) or saved (at the end).
    """
    key = api_key or secrets.token_urlsafe(24)
    app = create_app(rules, api_key=key, max_body=max_body, state=state, rules_name=rules_name)
    live: _Live = app.state.live
    sb = live.sandbox
    # The rules, the app and the libraries live as long as the server: out of the garbage
    # collector's sight, so its passes over the stored sessions stay short.
    gc.freeze()
    sock = _listen(host, port)
    handler = _stderr_handler() if log_requests else None
    try:
        kept = (
            ""
            if live.state_path is None
            else f"\nstate: {live.state_path} ({len(sb.sessions)} sessions, "
            f"{len(sb.profile_ids)} profiles; saved at the end and on POST /sandbox/save)"
        )
        announce(
            f"promo-sandbox: Talon.One Integration API at {_url(sock)} "
            f"({len(sb.campaigns)} campaigns, clock {sb.now.isoformat()}, "
            f"request bodies up to {_bytes_text(max_body)})\n"
            f"API key: {key}  (send 'Authorization: {API_KEY_PREFIX} {key}')"
            f"{kept}\n"
            "Ctrl-C stops."
        )
        # uvicorn stops on Ctrl-C (SIGINT) or SIGTERM, then raises the signal again for
        # whoever else listens: Ctrl-C is how this server is meant to stop.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(_config(app)).run(sockets=[sock])
        if live.state_path is not None:
            announce(f"promo-sandbox: state saved to {live.save()}")
        announce("promo-sandbox: stopped")
    finally:
        sock.close()
        if handler is not None:
            ACCESS_LOG.removeHandler(handler)


def _stderr_handler() -> logging.Handler:
    """Request lines on stderr, with the time they were answered."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False  # a host program's root handler would write it twice
    return handler
