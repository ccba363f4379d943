"""Progress of long work: library code counts its steps, the CLI chooses how they show.

Code that loops over epochs, PPO updates, trials, files or A/B runs wraps the loop in
:func:`steps` and calls :meth:`Steps.advance` (or :meth:`Steps.update` with an absolute
count). The display is process-wide (:func:`set_display`):

- :class:`RichDisplay` (the CLI on a terminal): a rich progress bar on stderr per running
  loop, with counts, elapsed time and ETA; nested loops (a trial's epochs) get their own
  bar, removed when done.
- :class:`LogDisplay` (the CLI when stderr is not a terminal, and the default): one log
  line per step on the ``cappuccino.progress`` logger (stderr), at most one a second for
  fast loops, always the first and the last: ``epochs 3/10 (30%), 12.3 s, ETA 28.7 s:
  val_loss 0.6812``.

Loops without a count (``total=None``) show as a spinner on a terminal and are not logged.
Nothing here writes to stdout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger("cappuccino.progress")


class Display(Protocol):
    def start(self, s: Steps) -> None: ...
    def update(self, s: Steps) -> None: ...
    def stop(self, s: Steps) -> None: ...


class Steps:
    """One counted loop: ``done`` of ``total`` steps since ``t0`` (``clock`` seconds)."""

    def __init__(
        self, description: str, total: int | None, display: Display, clock: Callable[[], float]
    ) -> None:
        self.description, self.total, self.done, self.note = description, total, 0, ""
        self.display, self.clock = display, clock
        self.t0 = clock()
        self.handle: Any = None  # the display's own state (a rich task id)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.update(self.done + n, note)

    def update(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        self.display.update(self)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.t0

    @property
    def eta(self) -> float | None:
        """Seconds left at the mean pace so far (None before the first step or without a
        total)."""
        if not self.total or self.done <= 0:
            return None
        return self.elapsed / self.done * max(self.total - self.done, 0)

    def line(self) -> str:
        text = f"{self.description} {self.done}/{self.total}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {self.elapsed:.1f} s"
        if self.eta is not None:
            text += f", ETA {self.eta:.1f} s"
        return text + (f": {self.note}" if self.note else "")


class LogDisplay:
    """One log line per step (at most one per ``min_interval_s``, first and last always)."""

    def __init__(self, level: int = logging.INFO, min_interval_s: float = 1.0) -> None:
        self.level, self.min_interval_s = level, min_interval_s
        self._last: dict[int, float] = {}

    def start(self, s: Steps) -> None:
        self._last[id(s)] = -float("inf")

    def update(self, s: Steps) -> None:
        if s.total is None:
            return
        now = s.clock()
        first_or_last = s.done <= 1 or s.done >= s.total
        if first_or_last or now - self._last.get(id(s), -float("inf")) >= self.min_interval_s:
            self._last[id(s)] = now
            log.log(self.level, "%s", s.line())

    def stop(self, s: Steps) -> None:
        self._last.pop(id(s), None)


class RichDisplay:
    """Rich progress bars on ``console`` (stderr), one per running loop."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self._progress: Any = None
        self._running = 0

    def _bars(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=True,
        )

    def start(self, s: Steps) -> None:
        if self._progress is None:
            self._progress = self._bars()
            self._progress.start()
        self._running += 1
        s.handle = self._progress.add_task(s.description, total=s.total, note="")

    def update(self, s: Steps) -> None:
        self._progress.update(s.handle, completed=s.done, note=s.note)

    def refresh(self) -> None:
        """Draw now (rich also redraws on its own, ten times a second)."""
        if self._progress is not None:
            self._progress.refresh()

    def stop(self, s: Steps) -> None:
        self._progress.remove_task(s.handle)
        self._running -= 1
        if self._running == 0:
            self._progress.stop()
            self._progress = None


_display: Display = LogDisplay()


def set_display(display: Display) -> Display:
    """Make ``display`` show every loop from now on; returns the previous one."""
    global _display
    previous, _display = _display, display
    return previous


@contextmanager
def steps(
    description: str, total: int | None, clock: Callable[[], float] = time.monotonic
) -> Iterator[Steps]:
    """Count the steps of one loop on the current display."""
    s = Steps(description, total, _display, clock)
    _display.start(s)
    try:
        yield s
    finally:
        _display.stop(s)
