"""The server's OpenAPI document (``GET /sandbox/openapi.json``), made from its routes.

Each route that serves a Talon.One operation is described by Talon.One's own definition
of it, from ``_spec/integration-api.json``: the served subset of Talon.One's OpenAPI
files, written by ``tools/openapi_subset.py`` (the sources and their commits are in
the document's ``info``). The ``/sandbox/...`` control surface is described from the
route handlers' docstrings. Only what the server serves is listed.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

__all__ = ["document", "talon_operations"]

_SPEC = Path(__file__).parent / "_spec" / "integration-api.json"
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


@functools.cache
def _spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_SPEC.read_text(encoding="utf-8"))
    return data


def talon_operations() -> dict[str, Any]:
    """Talon.One's operations the subset holds, by ``"METHOD /path"``."""
    operations: dict[str, Any] = _spec()["operations"]
    return operations


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
    spec = _spec()
    talon = spec["operations"]
    paths: dict[str, dict[str, Any]] = {}
    for method, path, endpoint in routes:
        key = f"{method} {path}"
        operation = talon.get(key) or _control(method.lower(), path, endpoint, public=key in public)
        paths.setdefault(path, {})[method.lower()] = operation
    sources = ", ".join(f"{repo} @ {commit[:12]}" for repo, commit in spec["source"].items())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promo-sandbox: a local Talon.One Integration API",
            "version": version,
            "description": (
                "The Talon.One Integration API operations this sandbox server serves, as "
                f"Talon.One defines them ({sources}), and the /sandbox control surface."
            ),
        },
        "security": [{"api_key_v1": []}],
        "paths": paths,
        "components": {
            "schemas": spec["schemas"],
            "securitySchemes": spec["securitySchemes"],
        },
    }
