"""Settings shared by every test directory.

Hypothesis: no per-example deadline. A deadline times one example on the wall clock, which a
loaded CI machine stretches (one 200 ms deadline failed at 263 ms while the suite ran beside a
build); pytest-timeout bounds each test as a whole instead.
"""

from hypothesis import settings

settings.register_profile("pysozu", deadline=None)
settings.load_profile("pysozu")
