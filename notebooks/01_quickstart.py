# %% [markdown]
# # promo-sandbox quick start
#
# promo-sandbox answers customer sessions the way Talon.One's Integration API would:
# you write campaigns and rules in Python, send a session, and read back the effects,
# the rejection reasons and an explanation of why each rule fired or not. Nothing
# leaves your machine and the clock is yours.
#
# To run this notebook yourself: `pip install 'promo-sandbox[notebook]'`, then
# `jupytext --to ipynb 01_quickstart.py` and open it in JupyterLab (`jupyter lab`).
#
# ## 1. Write a campaign
#
# A `Sandbox` is one Talon.One Application with a fixed clock. A campaign holds
# coupon codes, limits and rules; a rule is a list of conditions (`when`) and a list
# of effects (`then`).

# %%
from decimal import Decimal

from sandbox import CartItem, Limit, NewCustomerSession, Sandbox, ValidationError, plots
from sandbox import conditions as c
from sandbox import effects as e

sb = Sandbox(now="2026-12-01T10:00:00Z")

xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
xmas.coupon("XMAS-2026", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
xmas.rule(
    "10% off carts of 50 or more",
    when=[c.coupon_valid, c.total_at_least(50)],
    then=[e.set_discount("Xmas 10%", percent=10)],
)

shoes = sb.campaign("Shoe week")  # no code needed
shoes.rule(
    "20% off shoes",
    when=[c.has_item(category="shoes")],
    then=[
        e.set_discount_per_item(
            "Shoes 20%", percent=20, where=lambda item: item.category == "shoes"
        )
    ],
)
sb  # campaigns, rules, codes with their usage, limits with their room, the clock

# %% [markdown]
# ## 2. Evaluate a session
#
# `sb.update(session_id, session)` is Talon.One's `updateCustomerSession`. It takes the
# attrs model, or the camelCase dict your integration sends. In Jupyter the answer
# shows as a table of effects.

# %%
cart = (
    CartItem(sku="BOOT-1", name="Boots", quantity=1, price=Decimal("60"), category="shoes"),
    CartItem(sku="HAT-1", name="Hat", quantity=2, price=Decimal("7.50"), category="hats"),
)
session = NewCustomerSession(profile_id="anna", coupon="XMAS-2026", cart_items=cart)
session  # the cart as a table, with its totals

# %%
state = sb.update("s1", session)
state

# %% [markdown]
# ## 3. Read the effects
#
# The answer is an `IntegrationState`. Helpers give the common questions directly;
# `effects` has every effect in Talon.One's envelope, and `to_wire()` is the JSON the
# real API would send.

# %%
print("accepted coupons:", state.accepted_coupons)
print("discounts:", state.discounts)  # 10% of 75, and 20% of the 60 boots
print("total", state.session.effective_total, "-> pays", state.discounted_total)
for effect in state.effects:
    print(effect)

assert state.discounts == {"Xmas 10%": Decimal("7.50"), "Shoes 20%#0": Decimal("12.00")}
assert state.discounted_total == Decimal("55.50")

# %%
wire = state.to_wire()
sorted(wire), wire["effects"][0]

# %% [markdown]
# ## 4. Why was a coupon rejected? `explain()`
#
# A cart of 22.50 is below the Xmas threshold: the coupon is valid, but the rule's
# condition fails, so Talon.One rejects the code with `CouponRejectedByCondition`.
# `explain()` says which condition failed and which value it saw. It returns a plain
# string (print it, search it, log it); as the last line of a cell it renders as tables.

# %%
small = sb.update(
    "s2",
    {
        "profileId": "ben",
        "coupon": "xmas-2026",  # codes match case-insensitively; effects quote what was sent
        "cartItems": [{"sku": "HAT-1", "quantity": 3, "price": 7.5, "category": "hats"}],
    },
)
assert small.rejected_coupons == {"xmas-2026": "CouponRejectedByCondition"}
small.explain()

# %%
print(small.explain())  # the same, as text

# %% [markdown]
# ## 5. Counters move when a session closes
#
# Limits are checked against committed counters, and counters move only when a
# session closes (and move back on cancel, reopen and returns). Anna may redeem the
# Xmas coupon once: her second session is rejected with `ProfileLimitReached`.

# %%
sb.update(
    "s1", NewCustomerSession(profile_id="anna", coupon="XMAS-2026", cart_items=cart, state="closed")
)
print("usage of XMAS-2026 after the close:", sb.get_coupon("XMAS-2026").usage_counter)

again = sb.update("s3", {"profileId": "anna", "coupon": "XMAS-2026", "total": 80})
assert again.rejected_coupons == {"XMAS-2026": "ProfileLimitReached"}
again.explain()

# %%
sb.get_session("s1")  # the stored session: its state, answers, and what it committed

# %% [markdown]
# ## 6. Bad input is reported field by field
#
# A payload that Talon.One would refuse raises `ValidationError`, with a JSON pointer
# and the value for every problem, and changes nothing.

# %%
try:
    sb.update(
        "s4",
        {"profileId": "anna", "cupon": "XMAS-2026", "cartItems": [{"sku": "A", "quantity": 0}]},
    )
except ValidationError as error:
    print(error)
    problems = error.errors
assert {p.pointer for p in problems} >= {"/cupon", "/cartItems/0/quantity"}

# %% [markdown]
# ## 7. Many sessions at once
#
# Dry runs (`dry=True`) answer exactly as a real update would and store nothing,
# which makes them the tool for "what would these carts get?". `sandbox.plots` turns
# a list of answers into a figure in one call.

# %%
import random

rng = random.Random(7)
states = []
for i in range(200):
    items = [
        {
            "sku": f"SKU-{j}",
            "quantity": rng.randint(1, 3),
            "price": rng.randint(5, 60),
            "category": rng.choice(["shoes", "hats", "coats"]),
        }
        for j in range(rng.randint(1, 4))
    ]
    payload = {"profileId": f"q{i}", "coupon": "XMAS-2026", "cartItems": items}
    states.append(sb.update(f"sim-{i}", payload, dry=True))

assert all(s.discounted_total >= 0 for s in states)
assert "sim-0" not in sb.sessions  # dry runs store nothing
plots.paid_before_and_after(states)

# %%
plots.rules_fired(states)

# %% [markdown]
# ## Next
#
# - `02_fuzzing.py`: generate valid and invalid sessions with Hypothesis, and let the
#   fuzzer find a planted bug and shrink it to a session you can replay.
# - `03_limits_and_lifecycle.py`: identifier and per-profile limits, close, cancel and
#   reopen with the counters shown, and a budget running out.
# - The rules files under `examples/` are ready to copy: `python -m sandbox fuzz
#   examples/xmas.py` checks one from the command line.
