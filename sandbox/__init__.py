"""promo-sandbox: test Talon.One-style promotions locally, and fuzz them.

The public namespace; the implementation lives in the modules beside it.
"""

from sandbox.codec import dumps, from_wire, loads, to_wire
from sandbox.errors import (
    DefinitionError,
    Problem,
    RuleError,
    SandboxError,
    TransitionError,
    UnknownEntityError,
    ValidationError,
)
from sandbox.models import (
    AdditionalCost,
    CartItem,
    NewCustomerSession,
    Product,
    ReturnedCartItem,
    SessionState,
)

__all__ = [
    "AdditionalCost",
    "CartItem",
    "DefinitionError",
    "NewCustomerSession",
    "Problem",
    "Product",
    "ReturnedCartItem",
    "RuleError",
    "SandboxError",
    "SessionState",
    "TransitionError",
    "UnknownEntityError",
    "ValidationError",
    "dumps",
    "from_wire",
    "loads",
    "to_wire",
]
