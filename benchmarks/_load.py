"""A competing CPU-bound process, for the "under load" rows of the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def competing_process() -> Iterator[None]:
    """One other CPU-bound process (a Python busy loop) shares the cores while the block
    runs; it is killed when the block ends."""
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)  # let it reach the run queue
    try:
        yield
    finally:
        p.kill()
        p.wait()


def in_child(module: str, *args: str, env: dict[str, str]) -> str:
    """Run ``python -m module args`` with ``env`` added (e.g. another OpenMP wait policy,
    which a process fixes when torch loads) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=600, check=True,
    )  # fmt: skip
    return done.stdout
