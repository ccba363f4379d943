"""Multi-asset alignment onto one calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from cappuccino.data.align import align_universe
from cappuccino.data.schema import Timeframe
from tests.conftest import make_bars


def test_calendar_from_latest_first_to_earliest_last_with_fill_flags() -> None:
    t0 = datetime(2021, 1, 1, tzinfo=UTC)
    a = make_bars("A/USDT", 20, start=t0)  # hours 0..19
    b = make_bars("B/USDT", 20, start=datetime(2021, 1, 1, 5, tzinfo=UTC), seed=1)  # hours 5..24
    b = b.filter(~pl.col("timestamp").dt.hour().is_in([5, 8, 9]))  # starts at 6, gap 8-9
    out, rep = align_universe(pl.concat([a, b]), Timeframe.parse("1h"))
    assert rep.start == datetime(2021, 1, 1, 6, tzinfo=UTC)
    assert rep.end == datetime(2021, 1, 1, 19, tzinfo=UTC)
    assert rep.bars_per_symbol == 14
    assert rep.filled_bars == {"A/USDT": 0, "B/USDT": 2}
    assert rep.bars_before_start == {"A/USDT": 6, "B/USDT": 0}
    assert rep.bars_after_end == {"A/USDT": 0, "B/USDT": 5}
    ta = out.filter(pl.col("symbol") == "A/USDT")["timestamp"]
    tb = out.filter(pl.col("symbol") == "B/USDT")["timestamp"]
    assert ta.equals(tb)
    fb = out.filter((pl.col("symbol") == "B/USDT") & pl.col("filled"))
    b7 = b.filter(pl.col("timestamp").dt.hour() == 7)["close"][0]
    assert fb["close"].to_list() == [b7, b7]
