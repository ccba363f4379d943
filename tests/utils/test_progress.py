"""Progress: counts, elapsed and ETA, one log line per step off a terminal (throttled for
fast loops), a rich bar on one; nothing on stdout."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from cappuccino.utils.progress import LogDisplay, RichDisplay, set_display, steps

DATA = Path(__file__).parents[2].parent / "shared/data/binance_1h"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_log_line_per_step_with_counts_elapsed_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    previous = set_display(LogDisplay())
    try:
        with caplog.at_level(logging.INFO, "cappuccino.progress"), steps("epochs", 4, clock) as s:
            for k in range(4):
                clock.t += 2.0  # each epoch takes 2 s
                s.advance(note=f"val_loss {0.7 - k / 10:.2f}")
    finally:
        set_display(previous)
    assert [r.getMessage() for r in caplog.records] == [
        "epochs 1/4 (25%), 2.0 s, ETA 6.0 s: val_loss 0.70",
        "epochs 2/4 (50%), 4.0 s, ETA 4.0 s: val_loss 0.60",
        "epochs 3/4 (75%), 6.0 s, ETA 2.0 s: val_loss 0.50",
        "epochs 4/4 (100%), 8.0 s, ETA 0.0 s: val_loss 0.40",
    ]


def test_fast_loops_log_at_most_once_a_second_but_first_and_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    previous = set_display(LogDisplay(min_interval_s=1.0))
    try:
        with caplog.at_level(logging.INFO, "cappuccino.progress"), steps("updates", 50, clock) as s:
            for _ in range(50):
                clock.t += 0.1  # 5 s in all
                s.advance()
    finally:
        set_display(previous)
    done = [int(r.getMessage().split()[1].split("/")[0]) for r in caplog.records]
    assert done[0] == 1 and done[-1] == 50
    assert 5 <= len(done) <= 7  # about one a second, not 50


def test_a_terminal_gets_a_rich_bar_with_counts() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    display = RichDisplay(console)
    previous = set_display(display)
    try:
        with steps("trials", 10) as s:
            s.update(3, note="3 complete")
            display.refresh()
            frame = out.getvalue()
    finally:
        set_display(previous)
    assert "trials" in frame and "3/10" in frame and "3 complete" in frame


def test_a_multi_file_import_logs_each_file_on_stderr_only(tmp_path: Path) -> None:
    files = [str(DATA / f"Binance_{p}USDT_1h.csv") for p in ("DOT", "SOL")]
    cmd = [sys.executable, "-m", "cappuccino.cli.main", "data", "import", *files,
           "--store", str(tmp_path / "s")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "reading files 1/2" in done.stderr and "reading files 2/2" in done.stderr
    assert "reading files" not in done.stdout and "DOT/USDT" in done.stdout
    # piped, the table keeps every column at full width (it was cut at 80 characters)
    header = next(line for line in done.stdout.splitlines() if "rows_read" in line)
    for column in ("symbol", "rows_read", "rows_stored", "duplicates_conflicting",
                   "missing_bars", "first", "last"):  # fmt: skip
        assert f" {column} " in header, column
