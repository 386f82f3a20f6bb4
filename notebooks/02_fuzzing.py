# %% [markdown]
# # Fuzzing your rules
#
# promo-sandbox ships Hypothesis strategies that generate the sessions your rules must
# handle: valid ones, and ones with exactly one planted flaw, each labelled with the
# Talon.One reason it must produce. `fuzz` puts them to work on a whole rules file and
# shrinks any failure to a small session you can replay.
#
# This notebook reads the rules files under `examples/`. It finds them from its own
# folder (Jupyter runs a notebook in the folder it lives in), looking upwards, so it
# works from a clone of the repository or from a copy of `notebooks/` and `examples/`.

# %%
import json
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from sandbox import dumps, plots
from sandbox.fuzzing import fuzz, load_rules
from sandbox.strategies import (
    invalid_sessions,
    reachable_flaws,
    sessions,
    unreachable_flaws,
    valid_sessions,
)


def find_examples(start: Path) -> Path:
    """The nearest examples/ folder at or above ``start``."""
    for folder in (start, *start.parents):
        if (folder / "examples" / "xmas.py").is_file():
            return folder / "examples"
    raise FileNotFoundError(f"no examples/ folder at or above {start}")


EXAMPLES = find_examples(Path.cwd().resolve())

# A few example draws per strategy; health checks off as the draws are few and cheap.
few = settings(
    max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

# %% [markdown]
# ## A rules file
#
# A rules file defines `build()` returning a `Sandbox`, and may define its own
# properties: functions named `property_*` taking an answer and returning a bool.
# `examples/xmas.py` is a Christmas coupon, a referral programme and a shoe discount.

# %%
build, properties = load_rules(EXAMPLES / "xmas.py")
sb = build()
# A few more codes, so that more of Talon.One's rejection reasons can be planted.
xmas = sb.get_campaign("Xmas")
xmas.coupon("EARLY-BIRD", expiry_date="2026-11-30T23:59:59Z")
xmas.coupon("NEW-YEAR", start_date="2027-01-01T00:00:00Z")
xmas.coupon("FOR-ANNA", recipient="anna")
sb.campaign("Autumn", end="2026-11-30T23:59:59Z").coupon("AUTUMN-10")
print("the file's own properties:", sorted(properties))
sb

# %% [markdown]
# ## Valid sessions
#
# `valid_sessions(sb)` draws open, schema-valid sessions whose codes pass every validity
# check at the sandbox's clock. Here is a property test over them, the way you would
# write it in your own test suite: no customer ever gets more than half off.

# %%
drawn = []


@few
@given(valid_sessions(sb))
def test_no_customer_gets_more_than_half_off(session):
    state = sb.update("nb", session, dry=True)  # a dry run stores nothing
    assert state.total_discount * 2 <= state.session.effective_total
    drawn.append(state)


test_no_customer_gets_more_than_half_off()
print(len(drawn), "sessions checked; the one with the largest discount:")
max(drawn, key=lambda state: state.total_discount)

# %% [markdown]
# ## Invalid sessions: every planted flaw gets exactly its reason
#
# `invalid_sessions(sb)` plants one flaw (an expired coupon, a code for another
# profile, ...) and carries the reason Talon.One must answer with. Which flaws this
# inventory can produce depends on what it holds; the rest are listed with what is
# missing.

# %%
reachable_flaws(sb)

# %%
unreachable_flaws(sb)

# %%
flawed = []


@few
@given(invalid_sessions(sb))
def test_each_planted_flaw_gives_its_reason(case):
    state = sb.update("nb", case.session, dry=True)
    reasons = {**state.rejected_coupons, **state.rejected_referrals}
    assert case.expected in reasons.values(), (case, reasons)
    flawed.append(state)


test_each_planted_flaw_gives_its_reason()
plots.rejection_reasons(flawed)

# %% [markdown]
# ## Rule-aware sessions reach your thresholds
#
# `sessions(sb)` reads the constants the rules compare against (the 50 and 20 totals,
# the "shoes" category), so the edges of each rule come up often. Which rules fired?

# %%
any_sessions = []


@few
@given(sessions(sb))
def collect(session):
    any_sessions.append(sb.update("nb", session, dry=True))


collect()
plots.rules_fired(any_sessions)

# %% [markdown]
# ## A planted bug, found and shrunk
#
# `examples/planted_bug.py` has two campaigns that each look fine: 30% off carts of 100
# or more, and 25% off with the coupon VIP25. They stack, so a VIP with a big basket
# gets 55% off, which breaks the file's own `property_at_most_half_off`. `fuzz` checks
# the built-in invariants and the file's properties, and shrinks each failure to the
# smallest session that still shows it.

# %%
report = fuzz(EXAMPLES / "planted_bug.py", examples=60, seed=1)
print(report.render())
assert [v.check for v in report.violations] == ["property_at_most_half_off"]

# %% [markdown]
# ## Read and replay the counterexample
#
# The counterexample is a list of requests in JSON, one per line, exactly what
# `python -m sandbox eval examples/planted_bug.py FILE.jsonl` reads. `sandbox.dumps`
# writes money digit for digit; reading it back with `parse_float=Decimal` keeps it
# exact. Replaying it in Python is one `update` per request.

# %%
(violation,) = report.violations
lines = [dumps(request) for request in violation.replay]
print("\n".join(lines))

bug_build, bug_properties = load_rules(EXAMPLES / "planted_bug.py")
replayed = bug_build()
for line in lines:
    request = json.loads(line, parse_float=Decimal)
    answer = replayed.update(request["customerSessionId"], request["customerSession"])
assert not bug_properties["property_at_most_half_off"](answer)
answer.explain()  # both campaigns fired on one session

# %% [markdown]
# ## The fix
#
# `examples/half_off_ok.py` puts the two campaigns in one evaluation group with mode
# `highestDiscount`: a customer gets the better deal, never both. The same fuzz run
# finds nothing, and the counterexample now gets 30% off.

# %%
fixed_report = fuzz(EXAMPLES / "half_off_ok.py", examples=60, seed=1)
print(fixed_report.render())
assert fixed_report.ok

fixed_build, fixed_properties = load_rules(EXAMPLES / "half_off_ok.py")
last = json.loads(lines[-1], parse_float=Decimal)
fixed = fixed_build().update(last["customerSessionId"], last["customerSession"], dry=True)
assert fixed_properties["property_at_most_half_off"](fixed)
fixed.explain()

# %% [markdown]
# In your own test suite, the lifecycle state machine runs the same invariants through
# opens, closes, cancels, reopens and returns in three lines:
#
# ```python
# from sandbox.strategies import SessionLifecycle
# from my_rules import build
#
# TestMyRules = SessionLifecycle.for_rules(build).TestCase
# ```
