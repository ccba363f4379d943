"""Side-by-side speed comparisons (``python -m benchmarks.<name>``); not part of the tests.

Imported before any benchmark module, so OpenMP's wait policy is set before torch loads
(:func:`cappuccino.utils.threads.prepare_openmp`), and malloc keeps large blocks
(:func:`~cappuccino.utils.threads.prepare_allocator`), as the ``cappuccino`` command does.
"""

from cappuccino.utils.threads import prepare_allocator, prepare_openmp

prepare_openmp()
prepare_allocator()
