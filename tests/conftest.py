"""Hypothesis profiles for the suite.

"dev" is quick, for a tight edit-test loop (``--hypothesis-profile=dev``);
"fuzz" digs deeper before a release (``--hypothesis-profile=fuzz``). Nothing is
loaded here: locally the default profile applies, and Hypothesis loads its
built-in derandomized "ci" profile itself when the CI variable is set.
"""

from hypothesis import settings

settings.register_profile("dev", max_examples=50)
settings.register_profile("fuzz", max_examples=2000, deadline=None)
