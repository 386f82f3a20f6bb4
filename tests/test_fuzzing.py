"""sandbox.fuzzing: loading rules files, and finding (or not) property violations."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox import NewCustomerSession, Sandbox, SandboxError, dumps, from_wire
from sandbox.fuzzing import FuzzReport, RulesFileError, Violation, fuzz, load_rules

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_planted_bug_is_found_with_a_small_replayable_shrunk_session() -> None:
    report = fuzz(EXAMPLES / "planted_bug.py", examples=120, seed=1)
    # The lifecycle checks the property after every step too; a property that one
    # session breaks is reported once, with that smaller counterexample.
    assert [v.check for v in report.violations] == ["property_at_most_half_off"]
    (violation,) = report.violations
    (request,) = violation.replay
    wire = request["customerSession"]
    # Shrunk: the VIP coupon and a total of 100, nothing unrelated.
    assert set(wire) <= {"state", "coupon", "total", "cartItems"}
    assert len(wire.get("cartItems", [])) <= 1
    session = from_wire(NewCustomerSession, wire)
    assert session.coupon == "VIP25"
    assert session.effective_total == Decimal("100.00")
    assert "rule 0 '25% off for VIPs': fired" in violation.explain

    rendered = report.render()
    assert "FAIL property_at_most_half_off" in rendered
    assert "1 violation" in rendered
    # The printed JSON line replays through `python -m sandbox eval` to the same failure.
    line = next(
        t.strip() for t in rendered.splitlines() if t.strip().startswith('{"customerSessionId"')
    )
    replayed = json.loads(line, parse_float=Decimal)
    factory, properties = load_rules(EXAMPLES / "planted_bug.py")
    state = factory().update(replayed["customerSessionId"], replayed["customerSession"])
    assert properties["property_at_most_half_off"](state) is False


def test_the_fixed_rules_file_has_no_violation() -> None:
    report = fuzz(EXAMPLES / "half_off_ok.py", examples=80, seed=1)
    assert report.violations == []
    assert report.render().endswith("no violations")
    assert "property_at_most_half_off" in report.checks


def test_load_rules_builds_a_fresh_sandbox_each_time() -> None:
    factory, properties = load_rules(EXAMPLES / "planted_bug.py")
    first, second = factory(), factory()
    assert isinstance(first, Sandbox)
    assert first is not second
    assert list(properties) == ["property_at_most_half_off"]


def test_a_module_level_sandbox_is_rebuilt_per_run(tmp_path: Path) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "sandbox = Sandbox(now='2026-12-01T10:00:00Z')\n"
        "sandbox.campaign('Promo').coupon('SAVE')\n"
        "def property_true(state):\n    return True\n"
    )
    factory, properties = load_rules(rules)
    first = factory()
    first.update("s1", {"coupon": "SAVE", "total": 1})
    assert "s1" not in factory().sessions
    assert list(properties) == ["property_true"]
    assert fuzz(rules, examples=10, seed=2).violations == []


BAD_FILES = {
    "syntax error": ("def build(:\n", r"rules\.py:1: syntax error"),
    "no sandbox": ("x = 1\n", r"defines neither build\(\) nor a module-level 'sandbox'"),
    "build returns something else": (
        "def build():\n    return 42\n",
        r"build\(\) returned int 42, not a sandbox\.Sandbox",
    ),
    "build raises": (
        "def build():\n    raise KeyError('oops')\n",
        r"build\(\) raised KeyError",
    ),
    "file raises": (
        "import not_a_module_anywhere\n",
        r"running the file raised ModuleNotFoundError",
    ),
    "property not callable": (
        "from sandbox import Sandbox\ndef build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n"
        "property_x = 3\n",
        r"property_x must be a function",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_rules_files_raise_clear_errors(tmp_path: Path, name: str) -> None:
    source, message = BAD_FILES[name]
    rules = tmp_path / "rules.py"
    rules.write_text(source)
    with pytest.raises(RulesFileError, match=message) as caught:
        load_rules(rules)
    assert isinstance(caught.value, SandboxError)


def test_missing_file_and_bad_examples(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="not found"):
        load_rules(tmp_path / "nope.py")
    with pytest.raises(RulesFileError, match="examples"):
        fuzz(EXAMPLES / "half_off_ok.py", examples=0)


def test_a_raising_property_is_a_violation(tmp_path: Path) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "def build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n"
        "def property_boom(state):\n    raise ValueError('boom')\n"
    )
    report = fuzz(rules, examples=5, seed=3)
    assert [v.check for v in report.violations] == ["property_boom"]
    assert "raised ValueError: boom" in report.violations[0].message


def test_a_rule_that_raises_is_one_violation_not_one_per_invariant(tmp_path: Path) -> None:
    rules = tmp_path / "raising_rule.py"
    rules.write_text(
        "from sandbox import Sandbox, effects as e\n"
        "def build():\n"
        "    sb = Sandbox(now='2026-12-01T10:00:00Z')\n"
        "    sb.campaign('A').rule('tier', when=[lambda ctx: ctx.attributes['tier'] == 'vip'],\n"
        "                          then=[e.set_discount('x', 5)])\n"
        "    return sb\n"
    )
    report = fuzz(rules, examples=30, seed=1)
    assert [v.check for v in report.violations] == ["rules_do_not_raise"]
    assert "KeyError" in report.violations[0].message
    assert "campaign 'A', rule 'tier'" in report.violations[0].message


REMEMBERING_RULES = """
from sandbox import Sandbox, effects as e

seen = set()


def first_visit(ctx):
    \"\"\"first visit of this profile and total\"\"\"
    key = (ctx.profile_id, ctx.total)
    new = key not in seen
    seen.add(key)
    return new


def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    promo = sb.campaign("Welcome")
    promo.coupon("HELLO")
    promo.rule("first visit bonus", when=[first_visit], then=[e.set_discount("welcome", 5)])
    return sb
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rule_keeping_state_in_a_module_level_set_is_its_own_plain_finding(
    tmp_path: Path, seed: int
) -> None:
    rules = tmp_path / "remembering.py"
    rules.write_text(REMEMBERING_RULES)
    report = fuzz(rules, examples=40, seed=seed)
    assert [v.check for v in report.violations][:1] == ["rules_keep_no_outside_state"]
    finding = report.violations[0]
    assert finding.message.splitlines()[0] == (
        "rule 'first visit bonus' in campaign 'Welcome' answered differently for the same "
        "session and sandbox state: it keeps state outside the sandbox"
    )
    rendered = report.render()
    assert "FAIL rules_keep_no_outside_state" in rendered
    assert "Flaky" not in rendered


def test_each_check_line_says_fail_exactly_when_a_violation_names_that_check() -> None:
    lifecycle = Violation(
        "lifecycle",
        "a dry run answered differently",
        ({"reopen": "s1"},),
        invariant="dry_run_matches_update",
    )
    report = FuzzReport("rules.py", 10, 1, ("rules_do_not_raise", "lifecycle"), [lifecycle])
    lines = report.render().splitlines()
    assert "  FAIL lifecycle" in lines
    assert "  ok   lifecycle" not in lines
    assert "  ok   rules_do_not_raise" in lines
    assert "VIOLATED lifecycle: dry_run_matches_update" in lines


def test_every_reported_violation_belongs_to_a_listed_check(tmp_path: Path) -> None:
    rules = tmp_path / "remembering.py"
    rules.write_text(REMEMBERING_RULES)
    for report in (
        fuzz(rules, examples=30, seed=1),
        fuzz(EXAMPLES / "planted_bug.py", examples=60, seed=1),
    ):
        failed = {v.check for v in report.violations}
        assert failed <= set(report.checks)
        shown = {
            line.split()[1] for line in report.render().splitlines() if line.startswith("  FAIL ")
        }
        assert shown == failed


PROPERTY_SIGNATURES = {
    "no argument": "def property_x():\n    return True\n",
    "three arguments": "def property_x(state, sb, extra):\n    return True\n",
    "keyword-only": "def property_x(*, state):\n    return True\n",
}


@pytest.mark.parametrize("name", list(PROPERTY_SIGNATURES))
def test_a_property_with_the_wrong_signature_is_bad_usage_not_a_violation(
    tmp_path: Path, name: str
) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "def build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n" + PROPERTY_SIGNATURES[name]
    )
    with pytest.raises(RulesFileError) as caught:
        load_rules(rules)
    message = str(caught.value)
    assert message.startswith(f"{rules}:4: property_x(")
    assert "property_NAME(state: IntegrationState) -> bool" in message


def test_a_property_with_defaults_or_star_args_is_fine(tmp_path: Path) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "def build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n"
        "def property_a(state, limit=2):\n    return True\n"
        "def property_b(*states):\n    return True\n"
    )
    assert sorted(load_rules(rules)[1]) == ["property_a", "property_b"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    state.total_discount <= 10\n",
            r"property_x returned None: .*is a `return` missing\?",
        ),
        ("    return state.total_discount\n", r"property_x returned Decimal .*not a bool"),
    ],
)
def test_a_property_returning_no_bool_is_bad_usage(
    tmp_path: Path, body: str, expected: str
) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "from sandbox import Sandbox\n"
        "def build():\n    return Sandbox(now='2026-12-01T10:00:00Z')\n"
        "def property_x(state):\n" + body
    )
    with pytest.raises(RulesFileError, match=expected):
        fuzz(rules, examples=5, seed=1)


def test_a_property_may_take_the_sandbox_to_check_the_whole_lifecycle(tmp_path: Path) -> None:
    # A user property violated only after a cancel: the lifecycle machine finds it.
    rules = tmp_path / "cancel_rules.py"
    rules.write_text(
        "from sandbox import Sandbox, conditions as c, effects as e\n"
        "def build():\n"
        "    sb = Sandbox(now='2026-12-01T10:00:00Z')\n"
        "    camp = sb.campaign('C')\n"
        "    camp.coupon('SAVE-1')\n"
        "    camp.rule('five', when=[c.coupon_valid], then=[e.set_discount('five', 5)])\n"
        "    return sb\n"
        "def property_nothing_is_ever_cancelled(state, sb):\n"
        "    return all(s.state.value != 'cancelled' for s in sb.sessions.values())\n"
    )
    report = fuzz(rules, examples=60, seed=1)
    assert [(v.check, v.invariant) for v in report.violations] == [
        ("lifecycle", "property_nothing_is_ever_cancelled")
    ]
    steps = report.violations[0].replay
    assert any(step.get("customerSession", {}).get("state") == "cancelled" for step in steps), steps


def test_a_replayed_counterexample_fails_again_and_passes_against_the_fixed_rules(
    tmp_path: Path,
) -> None:
    from sandbox.cli import main

    counterexample = tmp_path / "counterexample.jsonl"
    counterexample.write_text(
        '{"customerSessionId": "fuzz-1", "customerSession": {"coupon": "VIP25", "total": 100.00}}\n'
    )
    assert main(["fuzz", str(EXAMPLES / "planted_bug.py"), "--replay", str(counterexample)]) == 1
    assert main(["fuzz", str(EXAMPLES / "half_off_ok.py"), "--replay", str(counterexample)]) == 0


def test_the_junit_file_has_one_case_per_check_and_the_json_report_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xml.etree import ElementTree as ET

    from sandbox.cli import main
    from sandbox.fuzzing import FuzzReport

    monkeypatch.chdir(tmp_path)
    junit, report = tmp_path / "fuzz.xml", tmp_path / "fuzz.json"
    code = main(
        [
            "fuzz",
            str(EXAMPLES / "planted_bug.py"),
            "--examples",
            "60",
            "--seed",
            "1",
            "--junit",
            str(junit),
            "--json",
            str(report),
        ]
    )
    assert code == 1
    suite = ET.parse(junit).getroot()
    data = json.loads(report.read_text())
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == data["checks"]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["property_at_most_half_off"]
    back = FuzzReport.from_json(data)
    assert back.to_json() == data
    assert back.violations[0].replay == tuple(data["violations"][0]["replay"])
    # The counterexample was saved where the report says, and replays to the failure.
    saved = data["replayFiles"]["property_at_most_half_off"]
    assert main(["fuzz", str(EXAMPLES / "planted_bug.py"), "--replay", saved]) == 1


# ---------------------------------------------------------------------------
# Every distinct failure is reported, ranked by money at stake

TWO_WAYS_OVER = """
from sandbox import Sandbox, conditions as c, effects as e
def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    app = sb.campaign("App")
    app.rule("40% in the app", when=[c.attribute_equals("channel", "app")],
             then=[e.set_discount("App 40%", percent=40)])
    vip = sb.campaign("VIP")
    vip.coupon("VIP35")
    vip.rule("35% for VIPs", when=[c.coupon_valid], then=[e.set_discount("VIP 35%", percent=35)])
    return sb
def property_at_most_30_percent_off(state):
    return state.total_discount * 100 <= state.session.effective_total * 30
"""


def _replays_to_a_failure(rules: Path, violation: Violation) -> bool:
    from sandbox.fuzzing import replay

    lines = [dumps(step) for step in violation.replay]
    return bool(replay(rules, lines).violations)


def test_two_distinct_violations_of_one_property_are_both_reported_ranked_by_money(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "two_ways.py"
    rules.write_text(TWO_WAYS_OVER)
    name = "property_at_most_30_percent_off"
    report = fuzz(rules, examples=60, seed=1, checks=[name])
    found = [v for v in report.violations if v.check == name]
    kinds = [v.kind for v in found]
    # Each campaign alone breaks the promise: a failure each, told apart by what fired.
    assert any("App / 40% in the app" in k and "VIP" not in k for k in kinds), kinds
    assert any("VIP / 35% for VIPs" in k and "App" not in k for k in kinds), kinds
    assert len(set(kinds)) == len(kinds)
    for violation in found:
        assert violation.shrunk
        assert violation.stake is not None
        assert violation.stake > 0
        assert not violation.within_rounding
        assert _replays_to_a_failure(rules, violation), violation.render()
    stakes = [v.stake for v in found]
    assert stakes == sorted(stakes, reverse=True)
    rendered = report.render()
    assert f"FAIL {name} ({len(found)} distinct failures)" in rendered
    assert f"VIOLATED {name} (1 of {len(found)})" in rendered


ARTEFACT_AND_BUG = """
from sandbox import Sandbox, conditions as c, effects as e
def build():
    sb = Sandbox(now="2026-12-01T10:00:00Z")
    everyday = sb.campaign("Everyday")
    everyday.rule("30% off", when=[c.total_at_least(0)],
                  then=[e.set_discount("Everyday 30%", percent=30)])
    extra = sb.campaign("Extra")
    extra.coupon("EXTRA10")
    extra.rule("10% more", when=[c.coupon_valid], then=[e.set_discount("Extra 10%", percent=10)])
    return sb
def property_at_most_30_percent_off(state):
    return state.total_discount * 100 <= state.session.effective_total * 30
"""


def test_a_rounding_artefact_never_hides_a_larger_violation_of_the_same_property(
    tmp_path: Path,
) -> None:
    # 30% of 1.05 is 0.315, rounded to 0.32: over 30% by half a cent, on most carts. The
    # money-losing bug (a coupon stacking 10% more) must be reported all the same, first.
    rules = tmp_path / "artefact.py"
    rules.write_text(ARTEFACT_AND_BUG)
    name = "property_at_most_30_percent_off"
    report = fuzz(rules, examples=100, seed=1, checks=[name])
    found = [v for v in report.violations if v.check == name]
    assert len(found) >= 2, report.render()
    first, last = found[0], found[-1]
    assert "Extra / 10% more" in first.kind
    assert not first.within_rounding
    assert last.within_rounding
    assert "Extra" not in last.kind
    assert last.stake is not None
    assert first.stake is not None
    assert last.stake <= Decimal("0.01") < first.stake
    assert "within rounding" in report.render()


def test_money_at_stake_is_the_discount_over_the_largest_one_the_property_allows() -> None:
    from sandbox.fuzzing import money_at_stake

    sb = Sandbox(now="2026-12-01T10:00:00Z")
    from sandbox import conditions as c
    from sandbox import effects as e

    sb.campaign("A").rule("35%", when=[c.total_at_least(0)], then=[e.set_discount("A", percent=35)])
    state = sb.update("s1", NewCustomerSession(total=Decimal("200")), dry=True)
    assert state.total_discount == Decimal("70.00")

    def at_most_30(s: object) -> bool:
        return s.total_discount * 100 <= s.session.effective_total * 30  # type: ignore[attr-defined]

    # 30% of 200 is 60: ten over the bound.
    assert money_at_stake(at_most_30, state) == Decimal("10.0000")
    # A promise that no discount at all would keep is not about an amount.
    assert money_at_stake(lambda s: False, state) is None


def test_the_lifecycle_does_not_shrink_again_what_a_single_session_already_showed() -> None:
    # planted_bug.py stacks 30% and 25%: one session shows it, and the lifecycle (which
    # checks the same property after every step) runs its whole budget without stopping
    # to shrink the same failure again.
    report = fuzz(EXAMPLES / "planted_bug.py", examples=40, seed=1)
    # (A lifecycle failure raised and shrunk would be reported: nothing hides it now.)
    assert [v.check for v in report.violations] == ["property_at_most_half_off"]
    assert report.tried["lifecycle"] >= 20  # all of max(10, examples // 2): none failed


def test_a_run_cut_short_by_its_time_budget_reports_no_false_finding() -> None:
    # The budget ends a search in the middle; Hypothesis then sees its test stop early,
    # which must not read as a rule keeping outside state.
    report = fuzz(EXAMPLES / "zoo" / "limit_per_code.py", seed=1, time_budget=1.0)
    assert report.out_of_time
    assert "rules_keep_no_outside_state" not in {v.check for v in report.violations}


def test_the_summary_says_the_counterexamples_are_saved_when_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import main

    monkeypatch.chdir(tmp_path)
    rules = str(EXAMPLES / "planted_bug.py")
    assert main(["fuzz", rules, "--examples", "30", "--seed", "1", "--no-database"]) == 1
    out = capsys.readouterr().out
    assert "save its counterexample lines" not in out
    assert "each counterexample is saved" in out
    command = next(line for line in out.splitlines() if "replay it:" in line)
    saved = command.split("--replay ")[1]
    assert Path(saved).is_file()
    # Not saved (a report made by the library): the summary says how to save them.
    report = fuzz(EXAMPLES / "planted_bug.py", examples=30, seed=1)
    assert "save its counterexample lines to FILE.jsonl" in report.render()
