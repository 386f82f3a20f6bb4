"""promo-sandbox: test Talon.One-style promotions locally, and fuzz them.

The public namespace; the implementation lives in the modules beside it.
"""

from sandbox import conditions, effects
from sandbox import display as _display  # noqa: F401 - registers the Jupyter renderers
from sandbox.codec import dumps, from_wire, loads, to_wire
from sandbox.core import CouponView, LimitCounter, ReferralView, Sandbox, StoredSession
from sandbox.engine import Context, Evaluation
from sandbox.errors import (
    DefinitionError,
    Problem,
    RuleError,
    SandboxError,
    TransitionError,
    UnknownEntityError,
    ValidationError,
)
from sandbox.ledger import ProfileStats
from sandbox.models import (
    AdditionalCost,
    CartItem,
    IntegrationRequest,
    NewCustomerSession,
    NewCustomerSessionV2,
    Product,
    ResponseContent,
    ReturnedCartItem,
    SessionState,
)
from sandbox.rules import Campaign, Coupon, Group, Limit, Referral, Rule
from sandbox.state import Effect, Explanation, IntegrationState, RuleFailureReason, SessionMeta
from sandbox.talon import (
    CouponRejection,
    EffectType,
    ExclusionReason,
    GroupMode,
    LimitAction,
    LimitEntity,
    Period,
    ReferralRejection,
)

__all__ = [
    "AdditionalCost",
    "Campaign",
    "CartItem",
    "Context",
    "Coupon",
    "CouponRejection",
    "CouponView",
    "DefinitionError",
    "Effect",
    "EffectType",
    "Evaluation",
    "ExclusionReason",
    "Explanation",
    "Group",
    "GroupMode",
    "IntegrationRequest",
    "IntegrationState",
    "Limit",
    "LimitAction",
    "LimitCounter",
    "LimitEntity",
    "NewCustomerSession",
    "NewCustomerSessionV2",
    "Period",
    "Problem",
    "Product",
    "ProfileStats",
    "Referral",
    "ReferralRejection",
    "ReferralView",
    "ResponseContent",
    "ReturnedCartItem",
    "Rule",
    "RuleError",
    "RuleFailureReason",
    "Sandbox",
    "SandboxError",
    "SessionMeta",
    "SessionState",
    "StoredSession",
    "TransitionError",
    "UnknownEntityError",
    "ValidationError",
    "conditions",
    "dumps",
    "effects",
    "from_wire",
    "loads",
    "to_wire",
]
