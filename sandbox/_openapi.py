"""The server's OpenAPI document (``GET /sandbox/openapi.json``), made from its routes.

Each route that serves a Talon.One operation is listed under Talon.One's operation id
(the name the official SDK's method is generated from), with the query parameters and
headers the sandbox reads, described in the sandbox's own words: the bodies are
Talon.One's, and Talon.One's published OpenAPI spec (talon-one/t1-openapi-specs,
``integration-api/``) defines them in full; this document does not copy it. The
``/sandbox/...`` control surface is described from the route handlers' docstrings.
Only what the server serves is listed.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Collection, Iterable
from typing import Any

__all__ = ["document", "talon_operations"]

_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_ERROR = {
    "type": "object",
    "description": "Talon.One's error body",
    "properties": {
        "message": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "StatusCode": {"type": "integer"},
    },
    "required": ["message", "errors", "StatusCode"],
}
_BOOL = {"type": "boolean"}
_DRY = ("dry", "query", _BOOL, "Evaluate without storing anything.")

# "METHOD /path": (operationId, summary, request body (Talon.One's schema name) or None,
#                  success status, answer (Talon.One's schema name) or None, parameters)
_TALON: dict[str, tuple[str, str, str | None, str, str | None, tuple[Any, ...]]] = {
    "PUT /v2/customer_sessions/{customerSessionId}": (
        "updateCustomerSessionV2",
        "Update a customer session: evaluate it, and on close commit it",
        "IntegrationRequest",
        "200",
        "IntegrationStateV2",
        (
            _DRY,
            (
                "now",
                "query",
                {"type": "string", "format": "date-time"},
                "A dry run's moment (sandbox extension): now or later.",
            ),
        ),
    ),
    "GET /v2/customer_sessions/{customerSessionId}": (
        "getCustomerSession",
        "Get a customer session and its standing effects",
        None,
        "200",
        "IntegrationCustomerSessionResponse",
        (),
    ),
    "PUT /v2/customer_sessions/{customerSessionId}/reopen": (
        "reopenCustomerSession",
        "Reopen a closed session, rolling back what its close committed",
        None,
        "200",
        "ReopenSessionResponse",
        (),
    ),
    "POST /v2/customer_sessions/{customerSessionId}/returns": (
        "returnCartItems",
        "Return cart items of a closed session",
        "ReturnIntegrationRequest",
        "200",
        "IntegrationStateV2",
        (
            _DRY,
            (
                "runRuleEngine",
                "query",
                _BOOL,
                "Evaluate the kept items again for campaigns with reevaluateOnReturn.",
            ),
            (
                "Idempotency-Key",
                "header",
                {"type": "string", "maxLength": 255},
                "The same key within 24 hours of sandbox time answers the first answer again.",
            ),
        ),
    ),
    "PUT /v2/customer_profiles/{integrationId}": (
        "updateCustomerProfileV2",
        "Update a customer profile's attributes, optionally running the rules",
        "CustomerProfileIntegrationRequestV2",
        "200",
        "CustomerProfileIntegrationResponseV2",
        (("runRuleEngine", "query", _BOOL, "Evaluate the campaigns for the profile."), _DRY),
    ),
    "POST /v2/events": (
        "trackEventV2",
        "Track a custom event: the campaigns' rules read it as ctx.event",
        "IntegrationEventV2Request",
        "200",
        "TrackEventV2Response",
        (
            (
                "silent",
                "query",
                {"type": "string", "enum": ["yes", "no"], "default": "yes"},
                "yes (the default): answer 204 without a body.",
            ),
            _DRY,
        ),
    ),
    "GET /v1/customer_profiles/{integrationId}/inventory": (
        "getCustomerInventory",
        "The profile's coupons and referral codes, with their usage",
        None,
        "200",
        "CustomerInventory",
        tuple(
            (name, "query", _BOOL, f"Include the {name} part.")
            for name in ("profile", "referrals", "coupons", "loyalty", "giveaways", "achievements")
        ),
    ),
    "POST /v1/referrals": (
        "createReferral",
        "Create a referral code for an advocate",
        "NewReferral",
        "201",
        "Referral",
        (),
    ),
    "PUT /v1/customer_sessions/{customerSessionId}": (
        "updateCustomerSession",
        "Update a customer session in the legacy V1 format",
        "NewCustomerSession",
        "200",
        "IntegrationState",
        (_DRY,),
    ),
    "PUT /v1/customer_profiles/{integrationId}": (
        "updateCustomerProfile",
        "Update a customer profile in the legacy V1 format",
        "NewCustomerProfile",
        "200",
        "IntegrationState",
        (_DRY,),
    ),
}


def _talon(key: str) -> dict[str, Any]:
    operation_id, summary, body, status, answer, extra = _TALON[key]
    path = key.split(" ", 1)[1]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(path)
    ]
    parameters += [
        {"name": name, "in": where, "required": False, "schema": schema, "description": text}
        for name, where, schema, text in extra
    ]
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["Talon.One Integration API"],
        "responses": {
            status: {
                "description": f"Talon.One's {answer}" if answer else "OK",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "default": {
                "description": "Refused, in Talon.One's error body",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if key == "POST /v2/events":
        operation["responses"]["204"] = {"description": "Tracked (silent=yes)"}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": f"Talon.One's {body}",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return operation


@functools.cache
def talon_operations() -> dict[str, Any]:
    """The Talon.One operations the server can serve, by ``"METHOD /path"``."""
    return {key: _talon(key) for key in _TALON}


def _control(method: str, path: str, endpoint: Any, public: bool) -> dict[str, Any]:
    doc = inspect.cleandoc(endpoint.__doc__ or "")
    summary, _, rest = doc.partition("\n")
    operation: dict[str, Any] = {
        "operationId": "sandbox_" + endpoint.__name__ + ("" if method == "get" else f"_{method}"),
        "summary": summary.strip() or f"{method.upper()} {path}",
        "tags": ["sandbox control"],
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {}}},
            },
            "default": {
                "description": "Refused, in Talon.One's error body",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
        "security": [] if public else [{"api_key_v1": []}],
    }
    if rest.strip():
        operation["description"] = " ".join(rest.split())
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(path)
    ]
    if parameters:
        operation["parameters"] = parameters
    if method in ("put", "post"):
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return operation


def document(
    routes: Iterable[tuple[str, str, Any]],
    *,
    version: str,
    public: Collection[str] = (),
) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (``(method, path, endpoint)``, method in
    upper case); ``public`` lists the ``"METHOD /path"`` answered without an API key."""
    talon = talon_operations()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, endpoint in routes:
        key = f"{method} {path}"
        operation = talon.get(key) or _control(method.lower(), path, endpoint, public=key in public)
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promo-sandbox: a local Talon.One Integration API",
            "version": version,
            "description": (
                "The Talon.One Integration API operations this sandbox server serves, under "
                "Talon.One's operation ids (Talon.One's published OpenAPI spec defines their "
                "bodies in full), and the /sandbox control surface."
            ),
        },
        "security": [{"api_key_v1": []}],
        "paths": paths,
        "components": {
            "schemas": {},
            "securitySchemes": {
                "api_key_v1": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "ApiKey-v1 <key>, the key the server printed at start",
                }
            },
        },
    }
