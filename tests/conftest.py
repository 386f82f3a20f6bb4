"""Hypothesis profiles for the suite.

"dev" is quick, for a tight edit-test loop (``--hypothesis-profile=dev``);
"fuzz" digs deeper before a release (``--hypothesis-profile=fuzz``). Nothing is
loaded here: locally the default profile applies, and Hypothesis loads its
built-in derandomized "ci" profile itself when the CI variable is set.
"""

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

pytest_plugins = ["pytester"]

# The promo_sandbox pytest plugin registers the same two profiles; whichever
# runs first wins, so both register only what is missing, with equal values.
_PROFILES = {
    "dev": {"max_examples": 50},
    "fuzz": {
        "max_examples": 2000,
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow],
    },
}
for _name, _values in _PROFILES.items():
    try:
        settings.get_profile(_name)
    except InvalidArgument:
        settings.register_profile(_name, **_values)
