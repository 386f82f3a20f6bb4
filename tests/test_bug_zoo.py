"""Three of the bug zoo's planted bugs, found by ``fuzz`` at CI's fixed seed.

The whole zoo, on five seeds, is ``bench/bug_zoo.py``; these three (a group left out
of exclusivity, a threshold off by a cent, a first-order reward on every order, found
only over a lifecycle) keep the suite honest about the guided search. Each runs only
its own property (``checks=``), with the default budget of 200 examples.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.fuzzing import RulesFileError, fuzz, load_rules

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"


@pytest.mark.parametrize(
    ("bug", "where"),
    [
        ("group_leak", "sessions"),
        ("off_by_a_cent", "sessions"),
        ("reward_every_order", "lifecycle"),
    ],
)
def test_fuzz_finds_the_planted_bug_within_the_default_budget(bug: str, where: str) -> None:
    path = ZOO / f"{bug}.py"
    _, properties = load_rules(path)
    (name,) = properties  # each zoo file states one property
    report = fuzz(path, seed=0, checks=[name])
    assert report.examples == 200
    found = [v for v in report.violations if name in (v.check, v.invariant)]
    assert found, report.render()
    violation = found[0]
    assert (violation.check == "lifecycle") == (where == "lifecycle")
    assert violation.found_after is not None
    assert violation.found_after <= 200
    assert violation.replay  # the counterexample comes as replayable requests


def test_every_zoo_file_states_one_property_and_its_bug() -> None:
    files = sorted(ZOO.glob("*.py"))
    assert len(files) >= 8
    readme = (ZOO / "README.md").read_text()
    for file in files:
        _, properties = load_rules(file)
        assert len(properties) == 1, file.name
        assert file.read_text().startswith('"""Planted bug:'), file.name
        assert f"`{file.name}`" in readme, file.name


def test_fuzz_checks_runs_only_the_named_checks() -> None:
    path = ZOO / "group_leak.py"
    report = fuzz(path, examples=20, seed=0, checks=["rules_do_not_raise"])
    assert report.checks == ("rules_do_not_raise", "rules_keep_no_outside_state")
    assert not report.violations  # the planted bug breaks only the property


def test_fuzz_checks_names_the_available_checks_when_one_is_unknown() -> None:
    with pytest.raises(RulesFileError, match=r"no check named 'nope'.*property_one_welcome"):
        fuzz(ZOO / "group_leak.py", examples=5, checks=["nope"])
