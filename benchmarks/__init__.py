"""Side-by-side speed comparisons (``python -m benchmarks.<name>``); not part of the tests.

Imported before any benchmark module, so OpenMP's wait policy is set before torch loads
(:func:`cappuccino.utils.threads.prepare_openmp`), as the ``cappuccino`` command does.
"""

from cappuccino.utils.threads import prepare_openmp

prepare_openmp()
