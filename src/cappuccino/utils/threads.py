"""Thread counts chosen on purpose, so that a busy machine slows work down instead of
stalling it.

Measured on this project's 2-core machines: the RL env at 256 envs, lookback 10, steps at
about 145k steps/s on 2 torch threads, and at 38k (3.8x slower) once one other CPU-bound
process shares the cores: OpenMP's idle threads spin on barriers between the many small
ops of a step and starve the thread that has work. With ``OMP_WAIT_POLICY=PASSIVE``
(idle threads sleep) the same run holds 135k quiet and 143k under load; 1 thread holds too.

- :func:`prepare_openmp` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already
  sets it. OpenMP reads it once, when torch loads its runtime, so it must run before the
  first ``import torch``: the ``cappuccino`` command, the benchmarks and the test suite call
  it first. A script that imports torch itself should export the variable instead (or
  use 1 thread).
- :func:`prepare_allocator` keeps glibc's malloc from handing every large tensor back to
  the kernel when it is freed. By default blocks over 32 MiB are ``mmap``-ed and
  unmapped on free, so each minibatch of a large rollout faults its pages in again:
  multi-agent PPO with 143 symbols spent 22 s of 56 s per update in the kernel doing
  that, and took 23 s per update (sys 3 s) with the threshold at 1 GiB. It sets the mmap
  and trim thresholds to 1 GiB, unless ``MALLOC_MMAP_THRESHOLD_`` is set; freed memory
  then stays in the process for reuse (resident size is the peak, not the current use).
- :func:`resolve_threads` turns the ``--threads`` setting (``auto`` or a count; default
  from ``CAPPUCCINO_THREADS``, else ``auto``) into a count: ``auto`` is the cores this
  process may run on. :func:`configure_threads` applies it to torch.
"""

from __future__ import annotations

import os
import sys

THREADS_ENV = "CAPPUCCINO_THREADS"


def prepare_openmp() -> bool:
    """Default ``OMP_WAIT_POLICY`` to ``PASSIVE`` (a value already set wins); False when
    torch is already imported and the setting came too late for this process (child
    processes still inherit it)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


MALLOC_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def prepare_allocator() -> bool:
    """glibc malloc's mmap and trim thresholds to :data:`MALLOC_THRESHOLD` (see the module
    docstring); False where it does not apply (not glibc, or ``MALLOC_MMAP_THRESHOLD_``
    set by the user, which wins)."""
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries: leave them as they are
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD) == 1
    return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD) == 1)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(value: str | int | None = None) -> int:
    """The torch thread count for ``value``: a positive integer, ``auto`` (the available
    cores) or None (``CAPPUCCINO_THREADS``, else ``auto``). ``ValueError`` names the
    setting and the bad value."""
    where = "--threads"
    if value is None:
        value, where = os.environ.get(THREADS_ENV, "auto"), THREADS_ENV
    text = str(value).strip().lower()
    if text == "auto":
        return available_cores()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{where}: got {value!r}, expected 'auto' or an integer >= 1")
    return n


def configure_threads(n: int) -> int:
    """Use ``n`` intra-op threads in torch (and OpenMP/BLAS): set on torch when it is
    loaded, else through ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, which torch reads when it
    loads (so a command that never needs torch does not pay for importing it). Returns ``n``."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


SMALL_OP_THREADS = 1
"""Threads for work made of many small ops (an env step, a small network's minibatch)."""


class torch_threads:
    """Run a block with ``n`` torch intra-op threads, then restore the previous count.

    Measured on 2 cores with ``OMP_WAIT_POLICY=PASSIVE``: the env at 256 envs, lookback 10,
    steps at 519k steps/s on 1 thread and 263k on 2 (a sleeping OpenMP thread is woken for
    every small op); PPO with a 64x64 net at 3,285 env steps/s on 1 thread and 989 on 2,
    while a 1024-wide net needs both (838 vs 1,468). Setting the count costs about a
    microsecond, so a loop may switch per step.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.before = 0

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.before != self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        import torch

        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)
