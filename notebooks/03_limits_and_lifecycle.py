# %% [markdown]
# # Limits, budgets and the session lifecycle
#
# Talon.One counts what closed sessions used: coupon and referral redemptions per
# code, per profile, per identifier or campaign-wide, discount money against budgets,
# all optionally per day, week, month or year. Counters move when a session closes and
# move back when it is cancelled, reopened or has items returned. This notebook walks
# through each of those with the counters printed after every step.
#
# It uses two rules files from `examples/`, found from the notebook's own folder.

# %%
import runpy
from decimal import Decimal
from pathlib import Path

from sandbox import Limit, Sandbox, TransitionError, plots
from sandbox import conditions as c
from sandbox import effects as e


def find_examples(start: Path) -> Path:
    """The nearest examples/ folder at or above ``start``."""
    for folder in (start, *start.parents):
        if (folder / "examples" / "xmas.py").is_file():
            return folder / "examples"
    raise FileNotFoundError(f"no examples/ folder at or above {start}")


EXAMPLES = find_examples(Path.cwd().resolve())


def rules(name: str):
    """The build() function of a rules file under examples/."""
    return runpy.run_path(str(EXAMPLES / name))["build"]


def counters(sb: Sandbox) -> None:
    """Every limit counter that has moved, with its room; then each coupon's usage."""
    moved = sb.limit_counters()
    for counter in moved:
        scope = ", ".join(f"{k} {v}" for k, v in counter.scope.items()) or "campaign-wide"
        bucket = f", {counter.bucket}" if counter.bucket else ""
        print(
            f"  {counter.campaign_name}: {counter.action} ({scope}{bucket}): "
            f"{counter.counter} of {counter.limit} used, {counter.remaining} left"
        )
    if not moved:
        print("  no limit counter has moved")
    for campaign in sb.campaigns:
        for code in campaign.coupons:
            coupon = sb.get_coupon(code)
            print(f"  coupon {code}: usage counter {coupon.usage_counter}")


# %% [markdown]
# ## Per-identifier and per-profile limits
#
# `examples/seasonal_coupons.py` is a Black Friday campaign: the code BLACKFRIDAY may
# be redeemed once per profile *and* once per identifier (the shopper's IP address
# here), so a second account on the same connection gets nothing.

# %%
sb = rules("seasonal_coupons.py")()
IP_1, IP_2, IP_3 = "203.0.113.7", "198.51.100.23", "192.0.2.44"


def black_friday(profile, *ips, total=80, state="open"):
    session = {"profileId": profile, "coupon": "BLACKFRIDAY", "total": total, "state": state}
    return {**session, "identifiers": list(ips)} if ips else session


sb

# %%
first = sb.update("s1", black_friday("anna", IP_1, state="closed"))
print("anna on IP 1:", first.accepted_coupons, first.discounts)
counters(sb)

# %% [markdown]
# Ben shops from the same connection: the identifier has used its one redemption, so
# the code is rejected with `CouponLimitReached`, before the per-profile check.

# %%
ben = sb.update("s2", black_friday("ben", IP_1))
assert ben.rejected_coupons == {"BLACKFRIDAY": "CouponLimitReached"}
ben.explain()

# %% [markdown]
# A session may carry up to five identifiers; it needs room under *every* one of them.
# And a session with no identifier at all cannot be counted, so under an identifier
# limit it is rejected the same way, the details saying an identifier is required.

# %%
both = sb.update("s3", black_friday("carla", IP_2, IP_1))
none = sb.update("s4", black_friday("dora"))
assert both.rejected_coupons == none.rejected_coupons == {"BLACKFRIDAY": "CouponLimitReached"}
print(none.effects_of("rejectCoupon")[0].props["details"])

# %% [markdown]
# Anna on another connection passes the identifier check but meets the per-profile
# limit: `ProfileLimitReached`.

# %%
anna_again = sb.update("s5", black_friday("anna", IP_2))
assert anna_again.rejected_coupons == {"BLACKFRIDAY": "ProfileLimitReached"}
anna_again.explain()

# %% [markdown]
# ## Close, cancel, reopen: the counters follow
#
# An open session reserves nothing: two open sessions may both see the last
# unit, and the one that closes second is evaluated again at its close. Here Emil's
# session goes through open, close and cancel.

# %%
print("open:")
sb.update("emil", black_friday("emil", IP_3))
counters(sb)

print("closed:")
sb.update("emil", black_friday("emil", IP_3, state="closed"))
counters(sb)

print("cancelled:")
cancelled = sb.update("emil", {"state": "cancelled"})
print(" ", [str(effect) for effect in cancelled.rollbacks])
counters(sb)
assert sb.get_coupon("BLACKFRIDAY").usage_counter == 1  # only anna's redemption is left

# %% [markdown]
# A cancelled session is final. Trying to close it again is a `TransitionError` that
# names both states and the legal moves; nothing changes.

# %%
try:
    sb.update("emil", black_friday("emil", IP_3, state="closed"))
except TransitionError as error:
    print(error)

# %% [markdown]
# Reopening a closed session rolls back what its close committed and leaves it open,
# so it can be changed and closed again.

# %%
sb.update("fay", black_friday("fay", IP_3, state="closed"))
print("closed:")
counters(sb)
reopened = sb.reopen("fay")
print("reopened:", reopened.session.state.value)
counters(sb)
sb.update("fay", black_friday("fay", IP_3, total=150, state="closed"))
print("closed again with a bigger cart:")
counters(sb)
sb.get_session("fay")  # what the store holds: state, answers, what is committed

# %% [markdown]
# ## Periods: a limit per day
#
# `period="daily"` (or weekly, monthly, yearly) buckets a counter by the sandbox's UTC
# clock. Move the clock, and there is room again.

# %%
daily = Sandbox(now="2026-06-01T09:00:00Z")
deal = daily.campaign("Deal of the day", limits=[Limit("redeemCoupon", 2, period="daily")])
deal.coupon("DEAL-1")
deal.rule("5 off", when=[c.coupon_valid], then=[e.set_discount("Deal", Decimal(5))])

for i in range(3):
    answer = daily.update(f"d{i}", {"coupon": "DEAL-1", "total": 30, "state": "closed"})
    print("Monday, session", i, answer.accepted_coupons or answer.rejected_coupons)
daily.advance(days=1)
answer = daily.update("d3", {"coupon": "DEAL-1", "total": 30, "state": "closed"})
print("Tuesday:", answer.accepted_coupons)
counters(daily)

# %% [markdown]
# ## A budget running out
#
# `examples/tiered_cart.py` gives each cart one tier (Gold, Silver or Bronze, an
# evaluation group in listOrder mode) and, stacked on top, a 10 launch bonus for carts of
# 100 or more under a money budget: `Limit("setDiscount", 25)`. Two bonuses spend 20;
# the third would need 10 with 5 left, so its rule does not fire. (`setDiscountEffect`
# would count the number of discounts given instead of their money.)

# %%
tiered = rules("tiered_cart.py")
shop = tiered()
for i in range(4):
    answer = shop.update(f"t{i}", {"profileId": f"p{i}", "total": 120, "state": "closed"})
    print(f"session {i}: {answer.discounts}")
counters(shop)
answer.explain()

# %%
plots.limit_usage(shop)

# %% [markdown]
# With `partial_discounts=True`, a budget gives what is left and reports the value
# the rule wanted as `desiredValue`.

# %%
partial = tiered(partial_discounts=True)
for i in range(3):
    answer = partial.update(f"t{i}", {"total": 120, "state": "closed"})
(bonus,) = [effect for effect in answer.effects_of("setDiscount") if effect.name == "Launch bonus"]
print(bonus)
assert (bonus.value, bonus.props["desiredValue"]) == (Decimal(5), Decimal(10))

# %% [markdown]
# ## Returns give back their share
#
# Returning items from a closed session rolls back the returned share of its discounts
# and releases that share of the money budget. One of the two items of a 200 cart is
# half the cart, so half of each discount comes back.

# %%
shop = tiered()
cart = [{"sku": "LAMP", "quantity": 1, "price": 100}, {"sku": "RUG", "quantity": 1, "price": 100}]
closed = shop.update("r1", {"profileId": "gus", "cartItems": cart, "state": "closed"})
print("at close:", closed.discounts)
returned = shop.return_items("r1", [{"position": 1}])
for effect in returned.rollbacks:
    print(" ", effect)
counters(shop)
assert sum(e.value for e in returned.rollbacks) == Decimal(20)  # half of Gold 30 + bonus 10
shop
