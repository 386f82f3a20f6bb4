# %% [markdown]
# # Changing rules safely
#
# A rule change looks small in review: one number. What it does to customers' carts is
# another matter. This notebook raises a coupon's threshold and asks the two questions a
# team changing live rules needs answered:
#
# 1. **What will this change do to real carts?** `sandbox.diff` evaluates the same
#    sessions, dry, against the old and the new rules and groups the sessions whose
#    outcome differs: on recorded sessions, and on generated ones, each kind of
#    difference shrunk to the smallest session that shows it.
# 2. **Which of my rules did my sessions never exercise?** `sandbox.coverage` counts,
#    for each rule, how often it fired and which condition stopped it, and lists what
#    never happened.
#
# Like the other notebooks, it finds `examples/` from its own folder, looking upwards.

# %%
import difflib
import json
from decimal import Decimal
from pathlib import Path

from sandbox.coverage import Coverage
from sandbox.diff import compare, search
from sandbox.fuzzing import fuzz, load_rules


def find_examples(start: Path) -> Path:
    """The nearest examples/ folder at or above ``start``."""
    for folder in (start, *start.parents):
        if (folder / "examples" / "spring_sale.py").is_file():
            return folder / "examples"
    raise FileNotFoundError(f"no examples/ folder at or above {start}")


EXAMPLES = find_examples(Path.cwd().resolve())
OLD, NEW = EXAMPLES / "spring_sale.py", EXAMPLES / "spring_sale_raised.py"

# %% [markdown]
# ## The change
#
# `examples/spring_sale.py` gives 10 off carts of 50 or more with the code SPRING10, and
# 15 off any cart of 200 or more. The change under review raises the coupon's threshold to
# 60, in `examples/spring_sale_raised.py`. Here is the diff a reviewer sees (past the
# docstrings):


# %%
def code_of(path: Path) -> list[str]:
    text = path.read_text()
    return text[text.index('"""', 3) + 3 :].splitlines()


print("\n".join(difflib.unified_diff(code_of(OLD), code_of(NEW), "old", "new", lineterm="", n=1)))
old_build, _ = load_rules(OLD)
new_build, _ = load_rules(NEW)

# %% [markdown]
# ## On recorded sessions
#
# `examples/spring_sessions.jsonl` holds eleven sessions as a shop would have sent them:
# plain sessions, requests with their own session id, a V2 session with `couponCodes`, a
# mistyped code, a code in lower case. `compare(old, new, sessions)` evaluates each one
# dry on both sandboxes (nothing is stored, no counter moves).

# %%
lines = (EXAMPLES / "spring_sessions.jsonl").read_text().splitlines()
recorded = [json.loads(line, parse_float=Decimal) for line in lines]
sessions = [line.get("customerSession", line) for line in recorded]  # unwrap the requests


def cart_total(session):
    """A session's total as the shop sent it: its ``total``, or its cart's sum."""
    if "total" in session:
        return session["total"]
    return sum(item["price"] * item["quantity"] for item in session["cartItems"])


report = compare(old_build(), new_build(), sessions)
print(report.render())

# %% [markdown]
# ## Reading the groups
#
# A session can differ in several ways at once, so it sits in each of its groups: here the
# same sessions lose their code (`code now rejected`), their discount (`discount down`) and
# the discount effect (`effect removed`). Each difference carries both outcomes; the
# index is the session's place in the list (0 for the file's first line).

# %%
for kind, members in report.groups.items():
    print(f"{kind}: sessions {[d.index for d in members]}")

print()
for d in report.groups["code now rejected"]:
    total = cart_total(sessions[d.index])
    print(f"line {d.index + 1}: cart {total}, {d.old.codes} -> {d.new.codes}, ", end="")
    print(f"discount {d.old.discount} -> {d.new.discount}")
print(f"\ntotal discount change over these carts: {report.total_discount_change}")

# Every changed cart has a total in [50, 60): exactly the carts the new threshold drops.
assert all(50 <= cart_total(sessions[d.index]) < 60 for d in report.differences)

# %% [markdown]
# ## On generated sessions
#
# Recorded sessions show what happened to the carts you have. `search(old, new)` draws
# sessions from both rule sets' thresholds and codes with Hypothesis, compares them, and
# shrinks one example per kind of difference: the smallest session that shows it. For a
# raised threshold, that is a cart right at the old threshold.

# %%
generated = search(old_build, new_build, examples=80, seed=1)
print(generated.render())

# %%
smallest = generated.examples["code now rejected"]
print(smallest)
new_build().update("smallest", json.loads(smallest, parse_float=Decimal), dry=True).explain()

# %% [markdown]
# The same report, as CI sees it: `python -m sandbox diff OLD.py NEW.py` exits 0 when
# nothing differs and 1 when something does (2 on bad input), and `--json FILE` writes
# this:

# %%
print(json.dumps(report.to_json(), indent=1))

# %% [markdown]
# ## Coverage of the new rules
#
# Which of the new rules did the recorded sessions exercise? `Coverage().recording()`
# counts every answer given while the block runs (here only the new sandbox's). The table
# highlights what never happened: a rule that never fired, a condition that never was the
# one to fail, a rejection reason never produced.

# %%
new_sb = new_build()
recorded_coverage = Coverage()
with recorded_coverage.recording(sandbox=new_sb):
    for number, session in enumerate(sessions, start=1):
        new_sb.update(f"line-{number}", session, dry=True)
recorded_coverage

# %% [markdown]
# No recorded cart reaches 200, so "Big basket" never fired: whatever these sessions say
# about the change, they say nothing about that rule. A fuzz run of the new file draws
# sessions aimed at every threshold; its coverage shows both rules fired.

# %%
assert [r.campaign for r in recorded_coverage.never_fired] == ["Big basket"]

fuzz_coverage = Coverage()
with fuzz_coverage.recording():
    fuzz_report = fuzz(NEW, examples=40, seed=1)
print(fuzz_report.render().splitlines()[-1])
assert fuzz_coverage.never_fired == []
fuzz_coverage

# %% [markdown]
# From the command line, the same counts come at the end of a run with `--coverage`:
#
# ```bash
# python -m sandbox eval examples/spring_sale_raised.py examples/spring_sessions.jsonl --dry --coverage
# python -m sandbox fuzz examples/spring_sale_raised.py --coverage
# pytest --sandbox-coverage
# ```
