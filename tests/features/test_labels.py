"""Labels: hand-computed forward-return and triple-barrier cases; incomplete horizons dropped and counted."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cappuccino.data.schema import Timeframe
from cappuccino.features.labels import (
    ForwardReturnLabel,
    TripleBarrierLabel,
    compute_labels,
    forward_return_label,
    parse_label,
    triple_barrier_label,
)
from cappuccino.features.table import build_feature_table
from tests.conftest import make_bars

nan = np.nan


def test_forward_return_net_of_round_trip_fee() -> None:
    close = np.array([100, 102, 103, 101.0])
    net, buy = forward_return_label(
        close, ForwardReturnLabel(horizon=2, threshold=0.005, fee=0.001)
    )
    # (103/100) * 0.999^2 - 1 = 0.027942..., (101/102) * 0.999^2 - 1 = -0.011765...
    np.testing.assert_allclose(net[:2], [1.03 * 0.999**2 - 1, 101 / 102 * 0.999**2 - 1], rtol=1e-12)
    np.testing.assert_array_equal(buy, [1, 0, nan, nan])


def test_fee_can_turn_a_buy_into_no_buy() -> None:
    close = np.array([100, 100.15])
    assert forward_return_label(close, ForwardReturnLabel(horizon=1, fee=0.0))[1][0] == 1
    assert forward_return_label(close, ForwardReturnLabel(horizon=1, fee=0.001))[1][0] == 0


def test_triple_barrier_cases() -> None:
    spec = TripleBarrierLabel(take_profit=0.1, stop_loss=0.05, max_holding=3)
    close = np.array([100, 100, 100, 100, 100, 100, 100.0])
    high = np.array([100, 104, 111, 100, 100, 100, 100.0])
    low = np.array([100, 99, 99, 100, 94, 100, 100.0])
    label, bars, ret = triple_barrier_label(high, low, close, spec)
    # t=0: bar 2 reaches 111 >= 110 first -> +1 after 2 bars
    # t=1: bar 2 high 111 -> +1 after 1 bar
    # t=2: bars 3-5: bar 4 low 94 <= 95 -> -1 after 2 bars
    # t=3: bar 4 -> -1 after 1 bar
    np.testing.assert_array_equal(label, [1, 1, -1, -1, nan, nan, nan])
    np.testing.assert_array_equal(bars, [2, 1, 2, 1, nan, nan, nan])
    np.testing.assert_allclose(ret[:4], [0.1, 0.1, -0.05, -0.05])


def test_triple_barrier_same_bar_is_stop_and_timeout_is_zero() -> None:
    spec = TripleBarrierLabel(take_profit=0.1, stop_loss=0.05, max_holding=2)
    label, bars, ret = triple_barrier_label(
        np.array([100, 120, 100, 100.0]),
        np.array([100, 90, 100, 100.0]),
        np.array([100, 100, 100, 103.0]),
        spec,
    )
    assert label[0] == -1 and bars[0] == 1  # both barriers in bar 1: conservative
    assert label[1] == 0 and bars[1] == 2 and ret[1] == pytest.approx(0.03)  # time limit, close 103


def test_incomplete_horizons_are_dropped_and_counted() -> None:
    bars = make_bars("A/USDT", 300)
    spec = ForwardReturnLabel(horizon=24)
    lab = compute_labels(bars, [spec])
    assert lab["label_buy_24"].null_count() == 24
    table, report = build_feature_table(
        bars, "cappuccino14", [spec], timeframe=Timeframe.parse("1h")
    )
    assert report.label_rows_dropped == {"A/USDT": 24}
    assert report.warmup_rows_dropped == {"A/USDT": 63}
    assert table.height == 300 - 24 - 63
    assert report.positive_rate["A/USDT"]["label_buy_24"] == pytest.approx(
        table["label_buy_24"].mean()
    )


def test_parse_label() -> None:
    assert parse_label("forward:h=12,threshold=0.01,fee=0.001") == ForwardReturnLabel(
        horizon=12, threshold=0.01, fee=0.001
    )
    assert parse_label("triple:tp=0.03,sl=0.02,h=48") == TripleBarrierLabel(
        take_profit=0.03, stop_loss=0.02, max_holding=48
    )
    with pytest.raises(ValueError, match="expected forward"):
        parse_label("sideways:h=1")
    with pytest.raises(ValueError, match="horizon"):
        parse_label("forward:h=0")


def test_aligned_table_shares_one_calendar() -> None:
    from datetime import UTC, datetime

    a = make_bars("A/USDT", 300)
    b = make_bars("B/USDT", 300, start=datetime(2021, 1, 2, tzinfo=UTC), seed=3)
    b = b.filter(pl.int_range(pl.len()) != 100)  # one missing bar
    spec = ForwardReturnLabel(horizon=6)
    table, report = build_feature_table(
        pl.concat([a, b]), "nn23", [spec], timeframe=Timeframe.parse("1h"), align=True
    )
    assert report.alignment is not None
    assert report.alignment.bars_per_symbol == 300 - 24  # A starts 24 bars earlier
    assert report.filled_bars == {"A/USDT": 0, "B/USDT": 1}
    ta = table.filter(pl.col("symbol") == "A/USDT")["timestamp"]
    assert ta.equals(table.filter(pl.col("symbol") == "B/USDT")["timestamp"])
