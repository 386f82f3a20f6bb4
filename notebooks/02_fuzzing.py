# %% [markdown]
# # Fuzzing your rules
#
# promo-sandbox's Hypothesis strategies generate sessions that your rules must handle:
# valid ones, and ones with exactly one planted flaw, each labelled with the Talon.One
# reason it must produce. This notebook runs top to bottom in the test suite.

# %%
from collections import Counter
from pathlib import Path

from hypothesis import given, settings

from sandbox.fuzzing import fuzz, load_rules
from strategies import invalid_sessions, reachable_flaws, sessions, unreachable_flaws

EXAMPLES = Path("..") / "examples"
build, properties = load_rules(EXAMPLES / "xmas.py")
sb = build()

# A few more codes, so that more of Talon.One's rejection reasons are reachable.
xmas = sb.get_campaign("Xmas")
xmas.coupon("EARLY-BIRD", expiry_date="2026-11-30T23:59:59Z")
xmas.coupon("NEW-YEAR", start_date="2027-01-01T00:00:00Z")
xmas.coupon("FOR-ANNA", recipient="anna")
autumn = sb.campaign("Autumn", end="2026-11-30T23:59:59Z")
autumn.coupon("AUTUMN-10")
sorted(properties)

# %% [markdown]
# ## Which flaws can this inventory produce?
# A flaw is reachable when the sandbox has what it needs (an expiring coupon, a
# per-profile limit, ...). The rest are listed with what is missing.

# %%
reachable_flaws(sb)

# %%
unreachable_flaws(sb)

# %% [markdown]
# ## Every planted flaw gets exactly its reason
# An oracle loop: draw a flawed session, evaluate it (a dry run stores nothing), and
# compare the engine's rejection with the label the strategy carried.

# %%
seen: Counter[str] = Counter()


@settings(max_examples=150, database=None, deadline=None)
@given(invalid_sessions(sb))
def check_flaw(case):
    state = sb.update("nb", case.session, dry=True)
    reasons = {**state.rejected_coupons, **state.rejected_referrals}
    assert case.expected in reasons.values(), (case, reasons)
    seen[case.expected] += 1


check_flaw()
seen.most_common()

# %%
import matplotlib.pyplot as plt

reasons, counts = zip(*sorted(seen.items()), strict=True)
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(reasons, counts)
ax.set_xlabel("draws")
ax.set_title("planted flaws, each confirmed by the engine")
plt.show()

# %% [markdown]
# ## Rule-aware sessions reach your thresholds
# `sessions(sb)` reads the constants the rules compare against (here the 50 and 20
# totals and the "shoes" category), so the interesting edges come up often.

# %%
fired: Counter[str] = Counter()


@settings(max_examples=200, database=None, deadline=None)
@given(sessions(sb))
def count_rules(session):
    for effect in sb.update("nb", session, dry=True).effects:
        if effect.rule_index >= 0:  # code rejections before any rule carry index -1
            fired[f"{effect.rule_name}: {effect.effect_type}"] += 1


count_rules()
fired.most_common()

# %% [markdown]
# ## A planted bug, found and shrunk
# `examples/planted_bug.py` stacks two campaigns that together give more than its own
# `property_at_most_half_off` allows. `fuzz` finds it and shrinks the session to the
# smallest one that still breaks the property, as a replayable JSON line.

# %%
report = fuzz(EXAMPLES / "planted_bug.py", examples=150, seed=1)
print(report.render())
assert [v.check for v in report.violations] == ["property_at_most_half_off"]
