"""Write ``sandbox/_spec/integration-api.json``: Talon.One's own definitions of the
operations the sandbox server serves, for ``GET /sandbox/openapi.json``.

    python tools/openapi_subset.py T1_OPENAPI_SPECS_GIT_DIR TALON_GO_GIT_DIR

The operations come from github.com/talon-one/t1-openapi-specs (``integration-api/paths/``,
dereferenced files; its ``HEAD``), except the legacy V1 session and profile updates, which
that repository no longer has: those come from the OpenAPI file of
github.com/talon-one/talon_go at 1a61921 (SDK 2.4.0, 2021, the last one listing them,
already marked deprecated). Each operation is copied as it is; schemas that occur more
than once are moved to ``components/schemas`` under a name taken from their title or
where they first occur, which keeps the file at about a quarter of the dereferenced size.
Needs PyYAML and openapi-spec-validator (a maintainer's tool, not run by the tests).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "sandbox" / "_spec" / "integration-api.json"

T1_OPERATIONS = [
    ("put", "/v2/customer_sessions/{customerSessionId}"),
    ("get", "/v2/customer_sessions/{customerSessionId}"),
    ("put", "/v2/customer_sessions/{customerSessionId}/reopen"),
    ("post", "/v2/customer_sessions/{customerSessionId}/returns"),
    ("put", "/v2/customer_profiles/{integrationId}"),
    ("post", "/v2/events"),
    ("get", "/v1/customer_profiles/{integrationId}/inventory"),
    ("post", "/v1/referrals"),
    ("post", "/v1/referrals_for_multiple_advocates"),
]
V1_COMMIT = "1a61921"
V1_OPERATIONS = [
    ("put", "/v1/customer_sessions/{customerSessionId}"),
    ("put", "/v1/customer_profiles/{integrationId}"),
]
_SCHEMA_LISTS = ("allOf", "oneOf", "anyOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")
_HOIST_ABOVE = 300  # characters of compact JSON: smaller repeats stay where they are


class _Loader(yaml.SafeLoader):
    """YAML as JSON reads it: a date in an example stays the text it is."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True
    ).stdout


def _resolve(node: Any, components: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline ``#/components/...`` references (the older file is not dereferenced)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            if ref in seen:
                raise ValueError(f"recursive schema {ref}")
            target: Any = {"components": components}
            for part in ref[2:].split("/"):
                target = target[part]
            return _resolve(target, components, (*seen, ref))
        return {k: _resolve(v, components, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, components, seen) for v in node]
    return node


def _schemas(node: Any, path: tuple[str, ...], is_schema: bool, found: list[Any]) -> None:
    """Every schema object under ``node``, with where it is, outermost first."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _schemas(item, (*path, str(i)), False, found)
        return
    if not isinstance(node, dict):
        return
    if is_schema:
        found.append((path, node))
    for key, value in node.items():
        if key == "schema":
            _schemas(value, (*path, key), True, found)
        elif is_schema and key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                _schemas(sub, (*path, key, name), True, found)
        elif is_schema and key in _SCHEMA_VALUES and isinstance(value, dict):
            _schemas(value, (*path, key), True, found)
        elif is_schema and key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                _schemas(sub, (*path, key, str(i)), True, found)
        elif not is_schema or key not in ("example", "examples", "default", "enum"):
            _schemas(value, (*path, key), False, found)


def _key(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


_STRUCTURE = {"properties", "schema", "content", "application/json", "additionalProperties", "not"}
_STRUCTURE.update(_SCHEMA_LISTS)
_SUFFIXES = {"items": "Item", "responses": "Response", "requestBody": "Request"}


def _name(node: dict[str, Any], path: tuple[str, ...], taken: set[str]) -> str:
    """A component name: the schema's title, or the property (or operation part) it
    first occurs as, e.g. ``CartItemsItem`` or ``UpdateCustomerSessionResponse``."""
    title = node.get("title")
    if isinstance(title, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9 _-]*", title):
        words = re.split(r"[ _-]+", title)
    else:
        suffix = ""
        words = []
        for part in reversed(path):
            if part in _SUFFIXES and not words:
                suffix = suffix or _SUFFIXES[part]
            elif part not in _STRUCTURE and not part.isdigit() and part not in _SUFFIXES:
                words = re.split(r"[^A-Za-z0-9]+", part)
                break
        words.append(suffix)
    base = "".join(w[:1].upper() + w[1:] for w in words if w) or "Schema"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    taken.add(name)
    return name


def _hoist(operations: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    found: list[Any] = []
    for op in operations.values():
        _schemas(op, (op["operationId"],), False, found)
    counts = Counter(_key(node) for _, node in found)
    repeated = {k for k, n in counts.items() if n > 1 and len(k) > _HOIST_ABOVE}
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path, node in found:  # outermost first: a name comes from where it first occurs
        key = _key(node)
        if key in repeated and key not in names:
            names[key] = _name(node, path, taken)
    schemas: dict[str, Any] = {}

    def replace(node: Any, is_schema: bool, top: bool = False) -> Any:
        if isinstance(node, list):
            return [replace(v, False) for v in node]
        if not isinstance(node, dict):
            return node
        if is_schema and not top:
            key = _key(node)
            if key in names:
                name = names[key]
                if name not in schemas:
                    schemas[name] = {}  # claimed before its insides are replaced
                    schemas[name] = replace(node, True, top=True)
                return {"$ref": f"#/components/schemas/{name}"}
        out = {}
        for key, value in node.items():
            if key == "schema":
                out[key] = replace(value, True)
            elif is_schema and key == "properties" and isinstance(value, dict):
                out[key] = {n: replace(s, True) for n, s in value.items()}
            elif is_schema and key in _SCHEMA_VALUES and isinstance(value, dict):
                out[key] = replace(value, True)
            elif is_schema and key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [replace(s, True) for s in value]
            elif is_schema and key in ("example", "examples", "default", "enum"):
                out[key] = value
            else:
                out[key] = replace(value, False)
        return out

    return {w: replace(op, False) for w, op in operations.items()}, dict(sorted(schemas.items()))


def _check(document: dict[str, Any]) -> None:
    """The subset as an OpenAPI 3.1 document is valid, schemas and all (the server's
    test checks the rest of what it serves, without the seconds this takes)."""
    from openapi_spec_validator import validate

    paths: dict[str, Any] = {}
    for key, operation in document["operations"].items():
        method, path = key.split(" ", 1)
        paths.setdefault(path, {})[method.lower()] = operation
    validate(
        {
            "openapi": "3.1.0",
            "info": {"title": "subset", "version": "0"},
            "paths": paths,
            "components": {
                "schemas": document["schemas"],
                "securitySchemes": document["securitySchemes"],
            },
        }
    )


def main(t1_git_dir: str, talon_go_git_dir: str) -> None:
    t1_commit = _git(t1_git_dir, "rev-parse", "HEAD").strip()
    operations: dict[str, Any] = {}
    for method, path in T1_OPERATIONS:
        name = "integration-api/paths/" + path.strip("/").replace("/", "-") + ".yaml"
        item = _load(_git(t1_git_dir, "show", f"{t1_commit}:{name}"))
        operations[f"{method.upper()} {path}"] = item[method]
    root = _load(_git(t1_git_dir, "show", f"{t1_commit}:integration-api/openapi.yaml"))
    v1_commit = _git(talon_go_git_dir, "rev-parse", V1_COMMIT).strip()
    old = _load(_git(talon_go_git_dir, "show", f"{v1_commit}:api/openapi.yaml"))
    for method, path in V1_OPERATIONS:
        op = _resolve(old["paths"][path][method], old["components"])
        op["security"] = [{"api_key_v1": []}]  # the file also lists a retired auth scheme
        operations[f"{method.upper()} {path}"] = op
    hoisted, schemas = _hoist(operations)
    document = {
        "source": {
            "talon-one/t1-openapi-specs": t1_commit,
            "talon-one/talon_go api/openapi.yaml (the V1 operations)": v1_commit,
        },
        "securitySchemes": root["components"]["securitySchemes"],
        "operations": hoisted,
        "schemas": schemas,
    }
    _check(document)
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    OUT.write_text(text + "\n", encoding="utf-8")
    print(
        f"{OUT}: {len(operations)} operations, {len(schemas)} shared schemas, {len(text):,} characters"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
