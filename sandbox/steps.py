"""One line of a sessions file (JSONL) as a call on a sandbox: what ``eval``, ``diff``,
``fuzz --replay`` and replays of a lifecycle all read.

A line is a session dict (session id ``line-N``), a request
``{"customerSessionId", "customerSession", "dry"}``, or one of the lifecycle steps
``fuzz`` prints: ``{"reopen": ID}``, ``{"returnItems": ID, "returnedCartItems": [...]}``,
``{"updateProfile": ID, "attributes": {...}, "runRuleEngine": false}``,
``{"trackEvent": {"profileId": ID, "type": T, "attributes": {...}}}`` and
``{"advance": {"days": N}}`` (at most a century a line); a return may add
``"runRuleEngine": true`` and ``"idempotencyKey": KEY``. Every problem of a line is a
:class:`~sandbox.ValidationError` with pointers into the line, or a :class:`TextError`
with the column of a line that is not UTF-8 or not JSON.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sandbox.codec import dumps, parse_json
from sandbox.errors import Problem, SandboxError, ValidationError, escape_pointer_token

if TYPE_CHECKING:
    from sandbox.core import Sandbox
    from sandbox.state import IntegrationState, ProfileState

__all__ = [
    "REQUEST_KEYS",
    "Request",
    "Step",
    "TextError",
    "clock_step",
    "close_matches",
    "decode_line",
    "move_clock",
    "parse_line",
    "read_request",
    "read_step",
    "short",
    "shown",
]

ADVANCE_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
# A century per line: far beyond any promotion's dates, far below datetime's range.
MAX_ADVANCE = timedelta(days=36525)


class TextError(SandboxError):
    """A line that is not UTF-8 or not JSON, at ``column`` (1-based, in characters)."""

    def __init__(self, title: str, column: int) -> None:
        self.title = title
        self.column = column
        super().__init__(title)


def decode_line(raw: bytes) -> str:
    # Without its line end, so a JSON error at the end of the line gets this line's column.
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
        raise TextError(
            f"not UTF-8 text (byte {raw[exc.start]:#04x}): the sessions file must be UTF-8",
            column,
        ) from None


def shown(value: Any) -> str:
    """A JSON value as the user wrote it (numbers digit for digit), cut if long."""
    try:
        return short(dumps(value))
    except (RecursionError, TypeError, ValueError):
        return type(value).__name__


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


REQUEST_KEYS = ("customerSessionId", "customerSession", "dry")


def close_matches(key: str, known: Sequence[str]) -> list[str]:
    if len(key) > 200:
        return []  # no hint for a key of insane length: difflib is quadratic
    folded = {k.lower(): k for k in known}
    if key.lower() in folded:
        return [folded[key.lower()]]
    return difflib.get_close_matches(key, known, n=1)


Step = Callable[["Sandbox", bool], "IntegrationState | ProfileState | datetime"]
"""A line read: call it with ``(sb, dry)``."""


def read_step(data: Any, number: int) -> Step:
    """One JSONL line as a call on the sandbox, given ``(sb, dry)``.

    A session dict, or ``{"customerSessionId", "customerSession", "dry"}``, is an
    update; the lifecycle steps ``fuzz`` prints replay too: ``{"reopen": ID}``,
    ``{"returnItems": ID, "returnedCartItems": [...]}``, ``{"advance": {"days": N}}``.
    """
    if isinstance(data, dict) and set(data) == {"reopen"}:
        session_id = _session_id(data["reopen"], "/reopen")
        return lambda sb, dry: sb.reopen(session_id, dry=dry)
    if isinstance(data, dict) and "returnItems" in data:
        return _return_step(data)
    if isinstance(data, dict) and "trackEvent" in data:
        return _event_step(data)
    if isinstance(data, dict) and "updateProfile" in data:
        return _profile_step(data)
    if isinstance(data, dict) and set(data) == {"advance"}:
        step = clock_step(data["advance"])
        # A clock move is not an evaluation: --dry moves the clock all the same.
        return lambda sb, dry: move_clock(sb, step)
    session_id, payload, asked_dry, where = read_request(data, number)

    def update(sb: Sandbox, dry: bool) -> IntegrationState:
        try:
            return sb.update(session_id, payload, dry=dry or asked_dry)
        except ValidationError as exc:
            if not where:
                raise
            raise exc.within(where) from None

    return update


def _unknown_keys(data: dict[str, Any], known: Sequence[str], what: str) -> list[Problem]:
    return [
        Problem(
            f"/{escape_pointer_token(key)}",
            f"unknown key {short(key)!r} in {what}"
            + "".join(f"; did you mean {m!r}?" for m in close_matches(key, known))
            + f"; its keys are {', '.join(map(repr, known))}",
        )
        for key in data
        if key not in known
    ]


_RETURN_KEYS = ("returnItems", "returnedCartItems", "runRuleEngine", "idempotencyKey")


def _return_step(data: dict[str, Any]) -> Step:
    """``{"returnItems": ID, "returnedCartItems": [...], "runRuleEngine": false,
    "idempotencyKey": KEY}``: a return (the last two optional)."""
    problems = _unknown_keys(data, _RETURN_KEYS, "a return step")
    if "returnedCartItems" not in data:
        problems.append(Problem("/returnedCartItems", "is required: the items returned"))
    run = data.get("runRuleEngine", False)
    if not isinstance(run, bool):
        problems.append(
            Problem("/runRuleEngine", f"'runRuleEngine' must be true or false, got {shown(run)}")
        )
    if problems:
        raise ValidationError(problems, subject="step")
    session_id = _session_id(data["returnItems"], "/returnItems")
    items = data["returnedCartItems"]
    key = data.get("idempotencyKey")
    return lambda sb, dry: sb.return_items(
        session_id, items, dry=dry, run_rule_engine=run, idempotency_key=key
    )


def _event_step(data: dict[str, Any]) -> Step:
    """``{"trackEvent": {"profileId": ID, "type": T, "attributes": {...}}, "dry": false}``:
    a custom event (the body of ``POST /v2/events``)."""
    problems = _unknown_keys(data, ("trackEvent", "dry"), "an event step")
    body = data["trackEvent"]
    if not isinstance(body, dict):
        problems.append(
            Problem(
                "/trackEvent",
                f'must be an event object such as {{"type": "signup"}}, got {shown(body)}',
            )
        )
    asked_dry = data.get("dry", False)
    if not isinstance(asked_dry, bool):
        problems.append(Problem("/dry", f"'dry' must be true or false, got {shown(asked_dry)}"))
    if problems:
        raise ValidationError(problems, subject="step")
    from sandbox.codec import from_wire
    from sandbox.models import EventRequest

    try:
        event = from_wire(EventRequest, body)
    except ValidationError as exc:
        raise exc.within("/trackEvent") from None

    def track(sb: Sandbox, dry: bool) -> IntegrationState:
        return sb.track_event(
            event.profile_id,
            event.type,
            event.attributes,
            dry=dry or asked_dry,
            response_content=event.response_content,
            evaluable_campaign_ids=event.evaluable_campaign_ids,
        )

    return track


def _profile_step(data: dict[str, Any]) -> Step:
    """``{"updateProfile": ID, "attributes": {...}, "runRuleEngine": false}``: the profile
    updates ``fuzz`` prints. Without the rule engine it is not an evaluation, and
    ``--dry`` applies it all the same (as a clock move)."""
    problems = [
        Problem(f"/{escape_pointer_token(key)}", f"unknown key {short(key)!r} in a profile step")
        for key in data
        if key not in ("updateProfile", "attributes", "runRuleEngine")
    ]
    profile_id = data["updateProfile"]
    if not isinstance(profile_id, str):
        problems.append(
            Problem("/updateProfile", f"must be a profile id (a string), got {shown(profile_id)}")
        )
    run = data.get("runRuleEngine", False)
    if not isinstance(run, bool):
        problems.append(
            Problem("/runRuleEngine", f"'runRuleEngine' must be true or false, got {shown(run)}")
        )
    if problems:
        raise ValidationError(problems, subject="step")
    payload = {"attributes": data["attributes"]} if "attributes" in data else {}

    def update(sb: Sandbox, dry: bool) -> IntegrationState | ProfileState:
        answer = sb.update_profile(profile_id, payload, run_rule_engine=run, dry=dry and run)
        return answer.evaluation if answer.evaluation is not None else answer

    return update


def _session_id(value: Any, pointer: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(
            [
                Problem(
                    pointer,
                    f"must be a session id (a string), got {shown(value)}",
                )
            ],
            subject="step",
        )
    return value


def clock_step(amount: Any) -> timedelta:
    """``{"days": 2}`` as a timedelta: integers, forward, at most a century a line."""
    units = ", ".join(ADVANCE_UNITS)
    if not isinstance(amount, dict) or not amount:
        raise ValidationError(
            [
                Problem(
                    "/advance",
                    f"'advance' must map {units} to integers, such as "
                    f'{{"days": 1}}, got {shown(amount)}',
                )
            ],
            subject="step",
        )
    problems = []
    for unit, value in amount.items():
        pointer = f"/advance/{escape_pointer_token(unit)}"
        if unit not in ADVANCE_UNITS:
            hint = "".join(f"; did you mean {m!r}?" for m in close_matches(unit, ADVANCE_UNITS))
            problems.append(
                Problem(
                    pointer,
                    f"unknown unit {short(unit)!r}{hint}: 'advance' must map {units} to integers",
                )
            )
        elif type(value) is not int:
            problems.append(Problem(pointer, f"must be an integer, got {shown(value)}"))
        elif value < 0:
            problems.append(
                Problem(pointer, f"the clock moves forward only: must be >= 0, got {value}")
            )
        elif value > MAX_ADVANCE // timedelta(**{unit: 1}):
            limit = MAX_ADVANCE // timedelta(**{unit: 1})
            problems.append(
                Problem(pointer, f"at most {limit} {unit} (a century) a line, got {value}")
            )
    if not problems:
        step = timedelta(**amount)
        if step <= MAX_ADVANCE:
            return step
        problems.append(Problem("/advance", f"at most a century a line, got {step.days} days"))
    raise ValidationError(problems, subject="step")


def move_clock(sb: Sandbox, step: timedelta) -> datetime:
    try:
        sb.now + step  # only to see whether the clock can go that far
    except OverflowError:
        raise ValidationError(
            [
                Problem(
                    "/advance", f"the clock would pass the year 9999 (it is {sb.now.isoformat()})"
                )
            ],
            subject="step",
        ) from None
    return sb.advance(days=step.days, seconds=step.seconds)


def parse_line(text: str) -> Any:
    """The line's JSON, parsed as ``loads`` parses (exact numbers, the codec's bounds)."""
    try:
        return parse_json(text)
    except ValidationError:
        syntax = _syntax_error(text)
        if syntax is None:
            raise  # not a syntax error: a number too long, nesting too deep
        message = syntax.msg.removesuffix(" at")  # "Invalid control character at"
        raise TextError(f"not valid JSON: {message}", syntax.colno) from None


def _syntax_error(text: str) -> json.JSONDecodeError | None:
    # parse_json says where only in its message; the decoder, run again on a line
    # already refused, gives the column itself. Numbers and constants are not its business.
    try:
        json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        return exc
    except (RecursionError, ValueError):
        return None
    return None


class Request(NamedTuple):
    """A request line: the session id, the session, whether the line asks for a dry
    run, and where the session sits in the line (the prefix of its JSON pointers)."""

    session_id: str
    session: Any
    dry: bool
    where: str


def read_request(data: Any, number: int) -> Request:
    """A session dict, or {"customerSessionId", "customerSession", "dry"}: the session
    id, the session, whether the line asks for a dry run, and where the session sits
    in the line (the prefix of its JSON pointers)."""
    if not isinstance(data, dict):
        raise ValidationError(
            [
                Problem(
                    "",
                    f"expected a JSON object, got {type(data).__name__} "
                    f"{shown(data)}: write a "
                    'session such as {"profileId": "p1", "total": 80}, or '
                    '{"customerSessionId": "s1", "customerSession": {...}, "dry": false}',
                )
            ],
            subject="line",
        )
    if "customerSession" not in data:
        return Request(f"line-{number}", data, False, "")
    problems = [
        Problem(
            f"/{escape_pointer_token(key)}",
            f"unknown key {short(key)!r} beside 'customerSession'"
            + "".join(f"; did you mean {m!r}?" for m in close_matches(key, REQUEST_KEYS))
            + f"; the keys of a request are {', '.join(map(repr, REQUEST_KEYS))}",
        )
        for key in data
        if key not in REQUEST_KEYS
    ]
    session_id = data.get("customerSessionId", f"line-{number}")
    if not isinstance(session_id, str):
        problems.append(
            Problem(
                "/customerSessionId",
                f"'customerSessionId' must be a string, got {shown(session_id)}",
            )
        )
    dry = data.get("dry", False)
    if not isinstance(dry, bool):
        problems.append(Problem("/dry", f"'dry' must be true or false, got {shown(dry)}"))
    if problems:
        raise ValidationError(problems, subject="request")
    session = data["customerSession"]
    if not isinstance(session, dict):
        raise ValidationError(
            [
                Problem(
                    "/customerSession",
                    f"'customerSession' must be an object, got {shown(session)}",
                )
            ],
            subject="request",
        )
    return Request(session_id, session, dry, "/customerSession")
