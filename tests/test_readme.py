"""The README's Python examples run as written, and the JSON it shows is what they answer.

Blocks that import a user's own ``my_rules`` module are run against the embedded default
rules file (examples/xmas.py) under that name.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sandbox.fuzzing import load_rules

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.fixture
def my_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    build, _ = load_rules(ROOT / "examples" / "xmas.py")
    module = types.ModuleType("my_rules")
    module.build = build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_rules", module)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
@pytest.mark.usefixtures("my_rules")
def test_each_readme_example_runs(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples name files under examples/, as from a clone
    namespace: dict[str, Any] = {"__name__": f"readme_block_{index}"}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)


def test_the_v2_answer_shown_is_what_the_example_answers() -> None:
    block = next(b for b in BLOCKS if "customerSession" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md V2 block", "exec"), namespace)
    state = namespace["state"]
    answer = state.to_wire(response_content=state.response_content)
    shown = json.loads(re.findall(r"```json\n(.*?)```", README, re.S)[0])
    assert shown["customerSession"] == answer["customerSession"]
    # The README shortens each effect to its type, campaign, coupon and props.
    assert [
        {k: effect[k] for k in ("effectType", "campaignId", "triggeredByCoupon", "props")}
        for effect in answer["effects"]
    ] == shown["effects"]
    assert shown["createdCoupons"] == answer["createdCoupons"] == []


def shown_output(starting: str) -> str:
    """The README's ```text block that starts with ``starting``."""
    (block,) = [b for b in re.findall(r"```text\n(.*?)```", README, re.S) if b.startswith(starting)]
    return str(block)


def test_the_diff_report_shown_is_what_diff_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    monkeypatch.chdir(ROOT)
    old, new, sessions = (
        "examples/spring_sale.py",
        "examples/spring_sale_raised.py",
        "examples/spring_sessions.jsonl",
    )
    assert f"diff {old} {new} --sessions {sessions}" in README
    assert main(["diff", old, new, "--sessions", sessions]) == 1
    assert capsys.readouterr().out == shown_output("diff: ")


def test_the_coverage_report_shown_is_what_eval_coverage_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    monkeypatch.chdir(ROOT)
    rules, sessions = "examples/spring_sale_raised.py", "examples/spring_sessions.jsonl"
    assert f"eval {rules} {sessions} --dry --coverage" in README
    assert main(["eval", rules, sessions, "--dry", "--coverage"]) == 0
    printed = capsys.readouterr().err.strip("\n")
    shown = shown_output("rule coverage over").removesuffix("  ...\n")
    assert printed.startswith(shown)
