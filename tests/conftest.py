"""Shared test settings.

Hypothesis profiles: ``dev`` (the default) and ``ci``, chosen when the environment variable
``CI`` is set. The ci profile turns the per-example deadline off (a shared 2-core machine is
noisy) and derandomizes, so that a CI run draws the same examples every time.
"""

import os

from hypothesis import settings

settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
