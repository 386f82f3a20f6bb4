"""Checks of what a rules file defines: times, codes and names of Talon.One's enums.

Each raises a :class:`~sandbox.DefinitionError` saying where (the campaign, the
code), what is wrong and the value.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from sandbox.errors import DefinitionError
from sandbox.models import MAX_CODE_LENGTH

__all__ = ["MIN_CODE_LENGTH", "check_code_shape", "enum_value", "parse_time"]

MIN_CODE_LENGTH = 4  # Talon.One: a stored coupon or referral value has minLength 4


def parse_time(value: Any, what: str) -> datetime:
    """An aware datetime from an ISO 8601 string or a datetime; naive is an error."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DefinitionError(
                f"{what} must be an ISO 8601 date-time such as '2026-12-01T10:00:00Z', got {value!r}"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise DefinitionError(f"{what} must be an ISO 8601 string or a datetime, got {value!r}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise DefinitionError(
            f"{what} must carry a time zone (e.g. a trailing 'Z' for UTC), got naive {value!r}"
        )
    try:
        parsed.astimezone(UTC)  # every time is written back in UTC
    except OverflowError:
        raise DefinitionError(
            f"{what} must be within the years 1 to 9999 in UTC, got {value!r}"
        ) from None
    return parsed


def enum_value(enum_type: Any, value: Any, what: str) -> Any:
    """``enum_type(value)``, or a DefinitionError listing the valid values and the closest."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_type)
        close = difflib.get_close_matches(str(value), [m.value for m in enum_type], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DefinitionError(f"{what} must be one of {allowed}, got {value!r}{hint}") from None


def check_code_shape(code: Any, kind: str, where: str) -> str:
    if not isinstance(code, str):
        raise DefinitionError(f"{where}: a {kind} code must be a string, got {code!r}")
    if not MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH:
        raise DefinitionError(
            f"{where}: a {kind} code must have {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} characters "
            f"(Talon.One), got {len(code)}"
        )
    if code != code.strip() or not code.isprintable():
        raise DefinitionError(
            f"{where}: a {kind} code must not have spaces at its ends or control characters"
        )
    return code
