"""Shared test set-up: the Hypothesis profiles and pytester.

"dev" is quick, for a tight edit-test loop (``--hypothesis-profile=dev``);
"fuzz" digs deeper before a release (``--hypothesis-profile=fuzz``). Both are
registered in one place, the promo_sandbox pytest plugin; calling it here too
keeps them available under ``-p no:promo_sandbox``.

When the CI variable is set, Hypothesis loads its built-in derandomized "ci" profile
itself. Otherwise (a new user's ``pytest -n auto``) this suite loads "local": random
seeds as Hypothesis' default, but with CI's tolerance of a slow machine (no deadline,
no too_slow health check), so a verdict never depends on how busy the machine is. A
``--hypothesis-profile`` on the command line still wins.
"""

import os

from hypothesis import HealthCheck, settings

from promo_sandbox_pytest import register_profiles

pytest_plugins = ["pytester"]

register_profiles()
settings.register_profile("local", deadline=None, suppress_health_check=[HealthCheck.too_slow])
if not os.environ.get("CI"):
    settings.load_profile("local")
