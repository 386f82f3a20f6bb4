"""Shared test set-up: the Hypothesis profiles and pytester.

"dev" is quick, for a tight edit-test loop (``--hypothesis-profile=dev``);
"fuzz" digs deeper before a release (``--hypothesis-profile=fuzz``). Both are
registered in one place, the promo_sandbox pytest plugin; calling it here too
keeps them available under ``-p no:promo_sandbox``. Nothing is loaded: locally
the default profile applies, and Hypothesis loads its built-in derandomized
"ci" profile itself when the CI variable is set.
"""

from promo_sandbox_pytest import register_profiles

pytest_plugins = ["pytester"]

register_profiles()
