"""camelCase wire dicts: valid ones, and ones broken at exactly one site.

Invalid payloads follow schemathesis and hypothesis-graphql: draw a valid
session, write it as a wire dict, enumerate every violation site (a JSON
pointer times a kind) up front, sample one uniformly, mutate the dict there,
and re-check with the real codec. A mutation the codec accepts, or that it
reports at another pointer, is rejected, so no payload is ever mislabelled.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal, overload

import attrs
from hypothesis import event, reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from sandbox.codec import from_wire, to_wire
from sandbox.core import Sandbox
from sandbox.errors import ValidationError
from sandbox.models import MAX_CODE_LENGTH, MAX_IDENTIFIERS
from strategies._inventory import check_sandbox
from strategies._sessions import _shown_as, check_version, draw_session, session_class

__all__ = ["VIOLATION_KINDS", "InvalidPayload", "payloads"]

VIOLATION_KINDS = (
    "missing_required",
    "wrong_type",
    "out_of_range",
    "bad_enum",
    "extra_key",
    "too_many_identifiers",
    "malformed_money",
    "string_too_long",
)

_DELETE = object()


@attrs.frozen
class InvalidPayload:
    """A wire dict the codec refuses, with where (``pointer``) and how (``kind``).

    ``pointer`` is the JSON pointer the codec reports for the violation, one of
    ``ValidationError.pointers``.
    """

    payload: dict[str, Any] = attrs.field(hash=False)
    pointer: str
    kind: str


@attrs.frozen
class _Site:
    pointer: str
    kind: str
    replacement: SearchStrategy[Any] | None  # None: delete the key


_NOT_STRINGS = st.sampled_from([42, True, None, ["x"], {"x": 1}]).filter(lambda v: v is not None)
_BAD_MONEY = st.sampled_from(["12.50", "NaN", True, False, float("nan"), float("inf")])
_NEGATIVE = st.sampled_from([-1, -0.01, -100])


_TOO_LONG = st.text("ABCDEFGHIJ0123456789", min_size=MAX_CODE_LENGTH + 1, max_size=120)


def _root_sites(payload: dict[str, Any], version: int = 1) -> Iterator[_Site]:
    codes = ("coupon", "referral") if version == 1 else ("referralCode",)
    for field in ("profileId", *codes):
        yield _Site(f"/{field}", "wrong_type", _NOT_STRINGS)
    for field in codes:
        yield _Site(f"/{field}", "string_too_long", _TOO_LONG)
    if version == 2:
        yield from _v2_sites(payload)
    yield _Site("/state", "bad_enum", st.sampled_from(["opened", "OPEN", "pending", ""]))
    yield _Site("/state", "wrong_type", st.sampled_from([1, True, ["open"]]))
    yield _Site("/cartItems", "wrong_type", st.sampled_from(["sku-1", {"sku": "sku-1"}, 3]))
    yield _Site("/identifiers", "wrong_type", st.sampled_from(["91.11.156.141", 7, {"ip": "x"}]))
    many = st.lists(
        st.ip_addresses().map(str), min_size=MAX_IDENTIFIERS + 1, max_size=MAX_IDENTIFIERS + 3
    )
    yield _Site("/identifiers", "too_many_identifiers", many)
    yield _Site("/attributes", "wrong_type", st.sampled_from([["tier"], "vip", 1]))
    if version == 1:
        yield _Site("/total", "wrong_type", st.sampled_from([[10], {"amount": 10}]))
        yield _Site("/total", "out_of_range", _NEGATIVE)
        yield _Site("/total", "malformed_money", _BAD_MONEY)
    yield _Site("/couponCode", "extra_key", st.just("XMAS-2021"))
    for index, _ in enumerate(payload.get("cartItems") or ()):
        item = f"/cartItems/{index}"
        yield _Site(f"{item}/sku", "missing_required", None)
        yield _Site(f"{item}/quantity", "missing_required", None)
        yield _Site(f"{item}/sku", "wrong_type", st.sampled_from([1, None, ["sku-1"]]))
        yield _Site(f"{item}/quantity", "wrong_type", st.sampled_from(["1", 1.5, True, None]))
        yield _Site(f"{item}/quantity", "out_of_range", st.sampled_from([0, -1]))
        yield _Site(f"{item}/price", "out_of_range", _NEGATIVE)
        yield _Site(f"{item}/price", "malformed_money", _BAD_MONEY)
        yield _Site(f"{item}/name", "wrong_type", _NOT_STRINGS)
        yield _Site(f"{item}/productId", "extra_key", st.just(7))
        for name in (
            (payload["cartItems"][index].get("additionalCosts") or {}) if version == 2 else ()
        ):
            cost = f"{item}/additionalCosts/{_token(name)}/price"
            yield _Site(cost, "out_of_range", _NEGATIVE)
            yield _Site(cost, "malformed_money", _BAD_MONEY)


def _token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _v2_sites(payload: dict[str, Any]) -> Iterator[_Site]:
    """Where a V2 session breaks beyond the fields it shares with V1."""
    yield _Site("/couponCodes", "wrong_type", st.sampled_from(["XMAS-2021", 7, {"code": "X"}]))
    for index, _ in enumerate(payload.get("couponCodes") or ()):
        yield _Site(f"/couponCodes/{index}", "wrong_type", _NOT_STRINGS)
        yield _Site(f"/couponCodes/{index}", "string_too_long", _TOO_LONG)
    yield _Site("/additionalCosts", "wrong_type", st.sampled_from([["shipping"], "shipping", 5]))
    for name in payload.get("additionalCosts") or {}:
        cost = f"/additionalCosts/{_token(name)}"
        yield _Site(f"{cost}/price", "missing_required", None)
        yield _Site(f"{cost}/price", "out_of_range", _NEGATIVE)
        yield _Site(f"{cost}/price", "malformed_money", _BAD_MONEY)
    # A V1 key in a V2 session: refused at the V1 key, naming the V2 key that replaces it.
    yield _Site("/total", "extra_key", st.sampled_from([10, 80.5]))


def _mutate(payload: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(payload)
    *parents, last = (t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:])
    node: Any = result
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    key: Any = int(last) if isinstance(node, list) else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return result


def _codec_pointers(payload: dict[str, Any], version: int = 1) -> list[str] | None:
    try:
        from_wire(session_class(version), payload, strict_total=True)
    except ValidationError as exc:
        return exc.pointers
    return None


@overload
def payloads(
    *, valid: Literal[True] = ..., sb: Sandbox | None = ..., version: int = ...
) -> SearchStrategy[dict[str, Any]]: ...
@overload
def payloads(
    *, valid: Literal[False], sb: Sandbox | None = ..., version: int = ...
) -> SearchStrategy[InvalidPayload]: ...
@overload
def payloads(
    *, valid: bool, sb: Sandbox | None = ..., version: int = ...
) -> SearchStrategy[Any]: ...
def payloads(
    *, valid: bool = True, sb: Sandbox | None = None, version: int = 1
) -> SearchStrategy[Any]:
    """camelCase ``NewCustomerSession`` wire dicts, as an integration would send them
    (``version=2``: ``NewCustomerSessionV2`` dicts, with ``couponCodes`` and
    ``additionalCosts``; violations at those sites too).

    ``valid=True`` draws ``to_wire`` of a drawn session (rule-aware with a
    sandbox ``sb``); ``from_wire`` accepts every one. ``valid=False`` draws
    :class:`InvalidPayload`: one violation, at a site sampled uniformly from
    those the payload has (kinds in ``VIOLATION_KINDS``), confirmed by the
    codec, with the pointer the codec reports. Each draw calls
    ``event(f"violation={kind}")``.
    """
    if not isinstance(valid, bool):
        raise InvalidArgument(
            f"payloads(valid=...) must be True or False, got {type(valid).__name__} {valid!r}"
        )
    check_sandbox("payloads", sb, optional=True)
    check_version("payloads", version)
    if version == 1:
        return _draw_payload(valid=valid, sb=sb)
    return _draw_payload(valid=valid, sb=sb, version=version)


@st.composite
@_shown_as("payloads")
def _draw_payload(
    draw: st.DrawFn, *, valid: bool = True, sb: Sandbox | None = None, version: int = 1
) -> Any:
    payload: dict[str, Any] = to_wire(draw_session(draw, sb, {}, version))
    if valid:
        return payload
    site = draw(st.sampled_from(list(_root_sites(payload, version))))
    value = _DELETE if site.replacement is None else draw(site.replacement)
    mutated = _mutate(payload, site.pointer, value)
    pointers = _codec_pointers(mutated, version)
    if pointers is None or site.pointer not in pointers:
        reject()
    event(f"violation={site.kind}")
    return InvalidPayload(mutated, site.pointer, site.kind)
