"""Shared test settings.

Hypothesis profiles: ``dev`` (the default) and ``ci``, chosen when the environment variable
``CI`` is set. The ci profile turns the per-example deadline off (a shared 2-core machine is
noisy) and derandomizes, so that a CI run draws the same examples every time.

BLAS runs one thread in the test process (unless the user chose a count): the suite's models
are tiny, so a second thread buys nothing on a quiet machine, and on a busy one it waits for
its turn inside every product (the demo's training took 80 s instead of 10 s beside other
work). The tests of thread counts set the counts they test; blas.starting_threads() still
knows the count the process started with.
"""

import os

import pytest
from hypothesis import settings

from minillm import blas

settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Before every test: a test that trains through the command line lets its thread chooser
    set the count, which would otherwise carry over to the tests after it."""
    if not blas.user_chose_threads() and blas.blas_info():
        blas.set_blas_threads(1)
