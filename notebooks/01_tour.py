# %% [markdown]
# # A tour of promo-sandbox
#
# Define a campaign, evaluate sessions the way Talon.One's Integration API would,
# see why each rule fired or not, and watch limits move through a session's lifecycle.
# This notebook runs top to bottom in the test suite.

# %%
from decimal import Decimal

from sandbox import CartItem, Limit, NewCustomerSession, Sandbox
from sandbox import conditions as c
from sandbox import effects as e

sb = Sandbox(now="2026-12-01T10:00:00Z")
xmas = sb.campaign("Xmas", limits=[Limit("redeemCoupon", 1, entities=["Profile"])])
xmas.coupon("XMAS-2021", usage_limit=100, expiry_date="2026-12-24T23:59:59Z")
xmas.rule(
    "10% off carts over 50",
    when=[c.coupon_valid, c.total_at_least(50)],
    then=[e.set_discount("10% off", percent=10)],
)
shoes = sb.campaign("Shoe week")
shoes.rule(
    "20% off shoes",
    when=[c.has_item(category="shoes")],
    then=[
        e.set_discount_per_item(
            "Shoes 20%", percent=20, where=lambda item: item.category == "shoes"
        )
    ],
)
sb

# %% [markdown]
# ## One session
# `update` takes the attrs model or Talon.One's camelCase wire dict. In Jupyter the
# answer renders as a table of effects.

# %%
cart = (
    CartItem(sku="BOOT-1", name="Boots", quantity=1, price=Decimal("60"), category="shoes"),
    CartItem(sku="HAT-1", name="Hat", quantity=2, price=Decimal("7.50"), category="hats"),
)
state = sb.update("s1", NewCustomerSession(profile_id="p1", coupon="XMAS-2021", cart_items=cart))
state

# %%
assert state.discounts == {"10% off": Decimal("7.50"), "Shoes 20%#0": Decimal("12.00")}
print(state.explain())

# %% [markdown]
# ## Why a rule did not fire
# The coupon is valid, but the cart is below the campaign's threshold: the coupon is
# rejected with Talon.One's reason, and the failing condition shows the value it saw.

# %%
small = sb.update(
    "s2",
    {
        "profileId": "p2",
        "coupon": "xmas-2021",
        "cartItems": [{"sku": "HAT-1", "quantity": 1, "price": 7.5, "category": "hats"}],
    },
)
print(small.explain())
small.to_wire()["effects"]

# %% [markdown]
# ## Limits through the lifecycle
# Counters move only when a session closes, and move back on cancel.

# %%
sb.update(
    "s1", NewCustomerSession(profile_id="p1", coupon="XMAS-2021", cart_items=cart, state="closed")
)
print("usage counter after close:", sb.get_coupon("XMAS-2021").usage_counter)
again = sb.update("s3", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80})
print("p1 again:", again.rejected_coupons)
cancelled = sb.update("s1", {"state": "cancelled"})
print(cancelled.explain())  # what the cancel rolled back
print("usage counter after cancel:", sb.get_coupon("XMAS-2021").usage_counter)
print(
    "p1 again:",
    sb.update("s3", {"profileId": "p1", "coupon": "XMAS-2021", "total": 80}).accepted_coupons,
)

# %% [markdown]
# ## Bad input is reported field by field

# %%
from sandbox import ValidationError

try:
    sb.update(
        "s4", {"profileId": "p1", "cupon": "XMAS-2021", "cartItems": [{"sku": "A", "quantity": 0}]}
    )
except ValidationError as error:
    print(error)

# %% [markdown]
# ## Discounts over many carts
# Evaluate a few hundred carts (dry runs: nothing is stored) and plot what customers pay.

# %%
import random

import matplotlib.pyplot as plt

rng = random.Random(7)
paid, discount = [], []
for i in range(300):
    items = [
        {
            "sku": f"SKU-{j}",
            "quantity": rng.randint(1, 3),
            "price": rng.randint(5, 60),
            "category": rng.choice(["shoes", "hats", "coats"]),
        }
        for j in range(rng.randint(1, 4))
    ]
    answer = sb.update(
        f"sim-{i}", {"profileId": f"q{i}", "coupon": "XMAS-2021", "cartItems": items}, dry=True
    )
    paid.append(float(answer.session.effective_total))
    discount.append(float(answer.total_discount))

assert all(d <= p for d, p in zip(discount, paid, strict=True))
fig, ax = plt.subplots(figsize=(6, 3))
ax.scatter(paid, discount, s=8)
ax.set_xlabel("cart total")
ax.set_ylabel("discount")
ax.set_title("Xmas + Shoe week, 300 simulated carts")
plt.show()
