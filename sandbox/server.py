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
  ``CustomerProfileIntegrationRequestV2``, answer ``CustomerProfileIntegrationResponseV2``.

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
/sandbox/snapshot`` (everything a request can change, as JSON) and ``POST
/sandbox/reset`` (a fresh sandbox from the rules file).

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
import secrets
import socket
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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

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
from sandbox.models import EventRequest, IntegrationRequest, NewReferral, ResponseContent
from sandbox.responses import returns_wire
from sandbox.state import IntegrationState, wire_time

__all__ = ["API_KEY_PREFIX", "MAX_BODY", "TalonServer", "create_app", "running", "serve"]

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

_TRUE = ("1", "t", "true")  # what Talon.One's Go server accepts for a boolean parameter
_FALSE = ("0", "f", "false")
_SPANS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")


class _Live:
    """The sandbox being served (reset replaces it), what rebuilds it, and which
    sessions and profiles a request is updating right now."""

    def __init__(self, sandbox: Sandbox, factory: Callable[[], Sandbox] | None) -> None:
        self.sandbox = sandbox
        self.factory = factory
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._busy:
                return False
            self._busy.add(key)
            return True

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._busy.discard(key)


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
# the application


def create_app(rules: Rules, *, api_key: str, max_body: int = MAX_BODY) -> Starlette:
    """The ASGI application serving ``rules`` (a rules file, a Sandbox or a factory).

    ``max_body`` caps a request body in bytes (default :data:`MAX_BODY`, 1 MiB);
    a larger one is answered 413 without being read into memory.
    ``app.state.live.sandbox`` is the sandbox being served (``/sandbox/reset``
    replaces it with a fresh one from the rules file or factory).
    """
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")
    sandbox, factory = _load(rules)
    live = _Live(sandbox, factory)
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
            live.sandbox = fresh
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
        routes=[
            Route(session_path, update_session, methods=["PUT"]),
            Route(session_path, get_session, methods=["GET"]),
            Route(session_path + "/reopen", reopen_session, methods=["PUT"]),
            Route(session_path + "/returns", return_items, methods=["POST"]),
            Route("/v2/customer_profiles/{integrationId}", update_profile, methods=["PUT"]),
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
    timeout: float = 10.0,
) -> Iterator[TalonServer]:
    """Serve ``rules`` in a background thread for the ``with`` block; port 0 (the
    default) takes a free port. Stops the server (and waits for it) on exit.
    ``max_body`` caps a request body in bytes (see :func:`create_app`).

    >>> with running("examples/xmas.py") as server:  # doctest: +SKIP
    ...     configuration = talon_one.Configuration(host=server.url)
    """
    key = api_key or secrets.token_urlsafe(24)
    app = create_app(rules, api_key=key, max_body=max_body)
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
        yield TalonServer(_url(sock), key, app.state.live)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def serve(
    rules: Rules,
    *,
    host: str = "127.0.0.1",
    port: int = 9000,
    api_key: str | None = None,
    max_body: int = MAX_BODY,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``rules`` in the foreground until interrupted (``python -m sandbox serve``).

    ``max_body`` caps a request body in bytes (see :func:`create_app`). Raises
    ``OSError`` when the address cannot be listened on.
    """
    key = api_key or secrets.token_urlsafe(24)
    app = create_app(rules, api_key=key, max_body=max_body)
    sb = app.state.live.sandbox
    # The rules, the app and the libraries live as long as the server: out of the garbage
    # collector's sight, so its passes over the stored sessions stay short.
    gc.freeze()
    sock = _listen(host, port)
    try:
        announce(
            f"promo-sandbox: Talon.One Integration API at {_url(sock)} "
            f"({len(sb.campaigns)} campaigns, clock {sb.now.isoformat()}, "
            f"request bodies up to {_bytes_text(max_body)})\n"
            f"API key: {key}  (send 'Authorization: {API_KEY_PREFIX} {key}')\n"
            "Ctrl-C stops."
        )
        # uvicorn stops on Ctrl-C (SIGINT) or SIGTERM, then raises the signal again for
        # whoever else listens: Ctrl-C is how this server is meant to stop.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(_config(app)).run(sockets=[sock])
        announce("promo-sandbox: stopped")
    finally:
        sock.close()
