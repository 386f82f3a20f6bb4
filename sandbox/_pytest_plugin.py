"""The pytest plugin's old import path; the plugin is the top-level ``promo_sandbox_pytest``.

The entry point moved out of this package so that a user's own ``sandbox.py`` (which
shadows this package) cannot stop pytest from starting. Imports of this module keep
working, and the plugin recognises the library's package by this file (keep it).
"""

from promo_sandbox_pytest import (
    PropertyFailedError,
    PropertyItem,
    RulesFile,
    integration_state_diff,
    pytest_assertrepr_compare,
    register_profiles,
)

__all__ = [
    "PropertyFailedError",
    "PropertyItem",
    "RulesFile",
    "integration_state_diff",
    "pytest_assertrepr_compare",
    "register_profiles",
]
