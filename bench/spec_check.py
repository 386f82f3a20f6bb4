"""Talon.One's own OpenAPI spec, through schemathesis, against ``python -m sandbox serve``.

A referee nobody here wrote: schemathesis generates requests (valid and invalid)
from Talon.One's Integration API spec for every operation the server serves and
checks each answer against the spec (status codes, required fields, types,
content type, headers, that invalid requests are refused and valid ones
accepted). This script starts the server in-process on a free port with the
rules of ``bench/spec_rules.py`` (or ``--rules FILE``), runs ``schemathesis
run`` over the served operations, and prints the failures counted by kind (the
schemathesis check) and by operation, from schemathesis's NDJSON report.

The spec is not in this repository. Get it from Talon.One's public repository
``talon-one/t1-openapi-specs`` (``integration-api/openapi.yaml``, which refers to
``paths/*.yaml`` and ``components/`` beside it, so keep the directory whole)::

    git clone --depth 1 https://github.com/talon-one/t1-openapi-specs /tmp/t1-openapi-specs
    pip install schemathesis   # 4.x; not a dependency of promo-sandbox
    python bench/spec_check.py --spec /tmp/t1-openapi-specs/integration-api/openapi.yaml \\
        --max-examples 50 --seed 1

``--spec`` defaults to the environment variable ``PROMO_SANDBOX_SPEC``. Options after
``--`` go to ``schemathesis run`` as they are (e.g. ``-- --phases fuzzing``). The
exit status is 0 when the run completed, whatever it found (the table is the result);
2 when the spec or schemathesis is missing. Slow (minutes): not part of the test
suite. Figures and the classification of every failure kind are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RULES = HERE / "spec_rules.py"
SPEC_ENV = "PROMO_SANDBOX_SPEC"


def served_operations(url: str) -> dict[str, list[str]]:
    """Talon.One's operations the server serves, from its own ``/sandbox/openapi.json``
    (generated from the routes): ``{path: [METHOD, ...]}``, the control surface left out."""
    with urllib.request.urlopen(url + "/sandbox/openapi.json", timeout=10) as answer:
        document = json.load(answer)
    return {
        path: sorted(method.upper() for method in methods)
        for path, methods in document["paths"].items()
        if not path.startswith("/sandbox/")
    }


def spec_operations(spec: Path) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every operation in the spec (its ``paths`` may ``$ref``
    one file per path, as Talon.One's does)."""
    import yaml  # schemathesis depends on PyYAML

    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    for path, item in (document.get("paths") or {}).items():
        if isinstance(item, dict) and "$ref" in item:
            item = yaml.safe_load((spec.parent / item["$ref"]).read_text(encoding="utf-8"))
        for method in item or {}:
            if method in {"get", "put", "post", "delete", "patch", "head", "options"}:
                found.add((method.upper(), path))
    return found


def path_regex(paths: list[str]) -> str:
    return "^(" + "|".join(re.escape(path) for path in sorted(paths)) + ")$"


def schemathesis_command() -> list[str]:
    exe = shutil.which("schemathesis")
    if exe is not None:
        return [exe]
    return [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]


def read_report(path: Path) -> tuple[list[dict[str, Any]], dict[str, int], list[str]]:
    """Failures (one per distinct failure schemathesis reported: operation, check code,
    title, status), test cases per operation, and errors (an operation schemathesis
    could not test), from the NDJSON events."""
    failures: list[dict[str, Any]] = []
    cases: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        ((kind, body),) = event.items()
        if kind != "ScenarioFinished":
            if kind == "NonFatalError":
                errors.append(f"{body.get('label')}: {body.get('info', {}).get('message', body)}")
            continue
        recorder = body["recorder"]
        label = recorder["label"]
        cases[label] += len(recorder.get("cases", {}))
        seen: set[tuple[str, str, str]] = set()
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"].lower() != "failure" or check.get("failure_info") is None:
                    continue
                failure = check["failure_info"]["failure"]
                code = failure.get("code") or check["name"]
                title = failure.get("title", "")
                message = failure.get("message", "")
                key = (check["name"], code, message)
                if key in seen:
                    continue
                seen.add(key)
                request, status, answer = _exchange(recorder, case_id)
                failures.append(
                    {
                        "operation": label,
                        "check": check["name"],
                        "code": code,
                        "kind": f"{code} {check['name']}",
                        "title": title,
                        "message": message,
                        "request": request,
                        "status": status,
                        "answer": answer,
                    }
                )
    return failures, dict(cases), errors


def _exchange(recorder: dict[str, Any], case_id: str) -> tuple[str, int | None, str]:
    """The request (method, path, query, body) and the answer (status, body) of a case."""
    case = recorder["cases"].get(case_id, {}).get("value", {})
    request = f"{case.get('method')} {case.get('path')}"
    for part in ("path_parameters", "query", "body"):
        if case.get(part) not in (None, {}):
            request += f" {part}={json.dumps(case[part], default=str)[:300]}"
    response = (recorder.get("interactions", {}).get(case_id) or {}).get("response") or {}
    content = response.get("content") or {}
    text = ""
    if "$base64" in content:
        text = base64.b64decode(content["$base64"]).decode("utf-8", "replace")
    elif "string" in content:
        text = content["string"]
    return request, response.get("status_code"), text


def table(title: str, counts: collections.Counter[str]) -> str:
    width = max([len(key) for key in counts] + [len(title)])
    lines = [f"{title:<{width}}  count", f"{'-' * width}  -----"]
    lines += [f"{key:<{width}}  {count:5d}" for key, count in counts.most_common()]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):5d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--spec",
        default=os.environ.get(SPEC_ENV),
        help=f"Talon.One's integration-api/openapi.yaml (default: ${SPEC_ENV})",
    )
    parser.add_argument("--rules", default=str(DEFAULT_RULES), help="the rules file served")
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", default="1", help="schemathesis --workers (default 1)")
    parser.add_argument("--report", help="keep the NDJSON report at this path")
    parser.add_argument("--show", type=int, default=1, help="messages shown per failure kind")
    parser.add_argument("extra", nargs="*", help="after --: more options for schemathesis run")
    args = parser.parse_args(argv)
    if not args.spec:
        parser.error(
            f"--spec PATH (or ${SPEC_ENV}) is required: Talon.One's "
            "integration-api/openapi.yaml from github.com/talon-one/t1-openapi-specs"
        )
    spec = Path(args.spec)
    if not spec.is_file():
        print(f"spec_check: no spec file at {spec}", file=sys.stderr)
        return 2
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        print(
            "spec_check: schemathesis is not installed: pip install schemathesis", file=sys.stderr
        )
        return 2

    sys.path.insert(0, str(HERE.parent))
    from sandbox.server import running

    key = "spec-check-key"
    with tempfile.TemporaryDirectory() as tmp, running(args.rules, api_key=key) as server:
        served = served_operations(server.url)
        in_spec = spec_operations(spec)
        served_pairs = {(m, p) for p, methods in served.items() for m in methods}
        tested = sorted(served_pairs & in_spec, key=lambda mp: (mp[1], mp[0]))
        missing = sorted(served_pairs - in_spec, key=lambda mp: (mp[1], mp[0]))
        report = (Path(args.report) if args.report else Path(tmp) / "report.ndjson").resolve()
        command = [
            *schemathesis_command(),
            "run",
            str(spec.resolve()),
            "--url",
            server.url,
            "-H",
            f"Authorization: ApiKey-v1 {key}",
            "--include-path-regex",
            path_regex(sorted({p for _, p in tested})),
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--workers",
            str(args.workers),
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--output-truncate",
            "false",
            "--continue-on-failure",
            *args.extra,
        ]
        print("served and in the spec:", ", ".join(f"{m} {p}" for m, p in tested))
        if missing:
            print("served, not in the spec:", ", ".join(f"{m} {p}" for m, p in missing))
        print("$", " ".join(command[:1] + command[1:]), flush=True)
        # in a scratch directory: schemathesis leaves a .schemathesis/ cache where it runs
        run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp)
        if not report.is_file():
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            print("spec_check: schemathesis wrote no report", file=sys.stderr)
            return 2
        failures, cases, errors = read_report(report)

    summary = [
        line.strip()
        for line in run.stdout.splitlines()
        if len(line) < 120 and re.search(r"test cases|\d+ (passed|failed)|\d+ errors?\b", line)
    ]
    print("\n".join(summary[-8:]))
    print(
        f"\nschemathesis exit status {run.returncode}; test cases recorded: {sum(cases.values())}"
    )
    print(table("operation", collections.Counter(cases)))
    print()
    print(table("failure kind", collections.Counter(f["kind"] for f in failures)))
    print()
    print(table("operation (failures)", collections.Counter(f["operation"] for f in failures)))
    print()
    print(
        table(
            "failure kind x operation",
            collections.Counter(f"{f['code']}  {f['operation']}" for f in failures),
        )
    )
    if errors:
        print("\nerrors (operations schemathesis could not test):")
        for error in errors:
            print(" ", error[:500])
    if args.show:
        print("\nexamples:")
        shown: collections.Counter[tuple[str, str]] = collections.Counter()
        for failure in failures:
            slot = (failure["code"], failure["operation"])
            if shown[slot] >= args.show:
                continue
            shown[slot] += 1
            message = " ".join(failure["message"].split())[:400]
            print(f"- [{failure['code']}] {failure['operation']}: {failure['title']}: {message}")
            print(f"    request: {failure['request'][:600]}")
            print(f"    answer {failure['status']}: {' '.join(failure['answer'].split())[:600]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
