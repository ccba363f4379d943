"""Multi-timeframe feature sets (``cappuccino14+4h+1d``): against an independent pandas
resample and ``merge_asof`` alignment of a real Binance file, a by-hand visibility case
(the 4h bar closing at 12:00 is seen from the 1h bar closing at 12:00 on), the lookahead
audit (the sets pass; the same construction reading the still-open bucket is caught), and
the names a config accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
import talib

from cappuccino.config.models import parse_feature_set_name
from cappuccino.data.importing import import_files
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import fill_gaps
from cappuccino.features.audit import audit_lookahead
from cappuccino.features.pipeline import compute_features
from cappuccino.features.sets import (
    FeatureSet,
    SeriesBars,
    feature_set_hash,
    get_feature_set,
    higher_timeframe_bars,
)
from tests.conftest import make_bars, shared_file

H1 = Timeframe.parse("1h")


@pytest.fixture(scope="module")
def ada(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """ADA/USDT hourly from the shared export, gaps filled (the export has real holes)."""
    store = ParquetStore(tmp_path_factory.mktemp("mtf") / "store")
    import_files([shared_file("ADAUSDT")], store)
    bars = store.read(H1).filter(
        pl.col("timestamp").is_between(datetime(2020, 6, 1, tzinfo=UTC),
                                       datetime(2021, 3, 1, tzinfo=UTC))
    )  # fmt: skip
    filled, counts = fill_gaps(bars, H1)
    assert sum(counts.values()) > 0, "the period should hold some of the file's gaps"
    return filled


def _pandas_reference(bars: pl.DataFrame, rule: str, hours: int) -> pd.DataFrame:
    """Each hourly row with the last ``rule`` bar closed by the end of that row's hour, built
    with pandas alone: resample (left-closed, left-labelled, UTC midnight origin), complete
    buckets only, TA-Lib on the long bars, then merge_asof on close times."""
    frame = bars.select("timestamp", "open", "high", "low", "close", "volume").with_columns(
        pl.col("timestamp").dt.epoch("ms")
    )
    df = pd.DataFrame(frame.to_dict(as_series=False))
    df.index = pd.to_datetime(df.pop("timestamp"), unit="ms", utc=True)
    origin = "start_day" if rule.endswith("D") else "epoch"  # days start at 00:00 UTC
    r = df.resample(rule, closed="left", label="left", origin=origin)
    long = pd.DataFrame({"open": r["open"].first(), "high": r["high"].max(),
                         "low": r["low"].min(), "close": r["close"].last(),
                         "volume": r["volume"].sum(), "n": r["close"].count()})  # fmt: skip
    long = long[long["n"] == hours].copy()
    long["rsi_14"] = talib.RSI(long["close"].to_numpy(), 14)
    long["cci_14"] = talib.CCI(*(long[c].to_numpy() for c in ("high", "low", "close")), 14)
    long["macd_hist"] = talib.MACD(long["close"].to_numpy(), 12, 26, 9)[2]
    long["closes_at"] = long.index + pd.Timedelta(hours=hours)
    rows = pd.DataFrame({"row": np.arange(len(df)), "closes_at": df.index + pd.Timedelta(hours=1)})
    return pd.merge_asof(rows, long.reset_index(drop=True), on="closes_at", direction="backward")


@pytest.mark.parametrize(("rule", "hours", "suffix"), [("4h", 4, "@4h"), ("1D", 24, "@1d")])
def test_matches_pandas_resample_and_asof_alignment(
    ada: pl.DataFrame, rule: str, hours: int, suffix: str
) -> None:
    got, report = compute_features(ada, "cappuccino14+4h+1d")
    ref = _pandas_reference(ada, rule, hours)
    for col in ("open", "high", "low", "close", "volume", "rsi_14", "cci_14", "macd_hist"):
        a = got[col + suffix].to_numpy()
        b = ref[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-12, err_msg=col)
    # warm-up in hourly rows: the first complete bucket, then the indicator's own warm-up
    first_full = int(np.argmax(~np.isnan(ref["close"].to_numpy(dtype=float))))
    assert report.warmup_bars["close" + suffix] == first_full
    assert report.warmup_bars["rsi_14" + suffix] == first_full + 14 * hours


def test_a_4h_bar_is_seen_from_the_hour_it_closes_never_earlier() -> None:
    # 2021-03-01 00:00 .. 23:00 UTC, closes 1, 2, ..., 24
    t0 = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)
    n = 24
    c = np.arange(1.0, n + 1)
    sb = SeriesBars(t0 + np.arange(n) * H1.ms, c, c + 0.5, c - 0.5, c, np.ones(n), H1.ms)
    hb, visible = higher_timeframe_bars(sb, Timeframe.parse("4h"))
    assert hb.close.tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert hb.open.tolist() == [1.0, 5.0, 9.0, 13.0, 17.0, 21.0]
    assert hb.high.tolist() == [4.5, 8.5, 12.5, 16.5, 20.5, 24.5]
    assert hb.volume.tolist() == [4.0] * 6
    # the 08:00-12:00 bar (index 2) from the bar opening 11:00 (closing 12:00) on
    hour = {h: int(visible[h]) for h in range(n)}
    assert hour[10] == 1 and hour[11] == 2 and hour[14] == 2 and hour[15] == 3
    assert [hour[h] for h in range(3)] == [-1, -1, -1]


def test_partial_first_bucket_is_left_out() -> None:
    t0 = int(datetime(2021, 3, 1, 2, tzinfo=UTC).timestamp() * 1000)  # starts inside 00-04
    c = np.arange(1.0, 11.0)
    sb = SeriesBars(t0 + np.arange(10) * H1.ms, c, c, c, c, np.ones(10), H1.ms)
    hb, visible = higher_timeframe_bars(sb, Timeframe.parse("4h"))
    assert hb.close.tolist() == [6.0, 10.0]  # 04-08 and 08-12; 00-04 lacks 00:00 and 01:00
    assert visible.tolist() == [-1] * 5 + [0] * 4 + [1]


@pytest.fixture(scope="module")
def two_symbols() -> pl.DataFrame:
    f = pl.read_parquet(sample_path()).filter(pl.col("symbol").is_in(["BTC/USDT", "ADA/USDT"]))
    return fill_gaps(f.filter(pl.col("timestamp").dt.month().is_in([1, 2, 3])), H1)[0]


@pytest.mark.parametrize("name", ["cappuccino14+4h+1d", "nn23+4h", "price_action14+1d"])
def test_audit_passes_for_multi_timeframe_sets(two_symbols: pl.DataFrame, name: str) -> None:
    report = audit_lookahead(two_symbols, name, n_cuts=6)
    assert report.passed, report.violations
    assert report.to_dict()["columns_checked"] == len(get_feature_set(name).columns)


def test_audit_catches_the_still_open_bucket(two_symbols: pl.DataFrame) -> None:
    tf = Timeframe.parse("4h")

    def leaky(b: SeriesBars) -> dict[str, np.ndarray]:
        # the bucket a bar is *in*, through its close: three hours of the future at 00:00
        hb, _ = higher_timeframe_bars(b, tf)
        inside = np.searchsorted(hb.time_ms, b.time_ms, side="right") - 1
        col = np.full(len(inside), np.nan)
        col[inside >= 0] = hb.close[inside[inside >= 0]]
        return {"close": b.close, "close@4h": col}

    fs = FeatureSet("leaky", ("close", "close@4h"), leaky, "reads the open bucket")
    report = audit_lookahead(two_symbols, fs, n_cuts=6)
    assert set(report.violations) == {"close@4h"}


@pytest.mark.parametrize("tf", ["4h", "1d"])
def test_audit_catches_a_bucket_seen_one_bar_early(two_symbols: pl.DataFrame, tf: str) -> None:
    # the leak shows only when a cut falls on the bar before a bucket's last bar: the audit
    # puts one cut on every bar of one bucket, so it is met whatever the random cuts are
    longer = Timeframe.parse(tf)

    def early(b: SeriesBars) -> dict[str, np.ndarray]:
        hb, _ = higher_timeframe_bars(b, longer)
        seen = np.searchsorted(hb.time_ms + longer.ms, b.time_ms + 2 * b.step_ms, "right") - 1
        col = np.full(len(seen), np.nan)
        col[seen >= 0] = hb.close[seen[seen >= 0]]
        return {"close": b.close, f"close@{tf}": col}

    fs = FeatureSet("early", ("close", f"close@{tf}"), early, "one bar early")
    for seed in range(3):
        report = audit_lookahead(two_symbols, fs, n_cuts=2, seed=seed)
        assert set(report.violations) == {f"close@{tf}"}, seed
        assert report.cut_points >= longer.ms // H1.ms


def test_columns_names_and_hash() -> None:
    fs = get_feature_set("nn23+4h+1d")
    base = get_feature_set("nn23").columns
    assert fs.columns[: len(base)] == base
    assert fs.columns[len(base)] == "logret_1@4h" and fs.columns[-1] == "dow_cos@1d"
    assert len(fs.columns) == 3 * len(base)
    hashes = {feature_set_hash(n) for n in ("nn23", "nn23+4h", "nn23+4h+1d")}
    assert len(hashes) == 3


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nn23+4h+1h", "timeframes must grow from left to right, 1h follows 4h"),
        ("nn23+4x", "'4x' is not a timeframe"),
        ("nn23+240m", "spell '240m' as '4h'"),
        ("nn24+4h", "expected one of"),
    ],
)
def test_bad_names_say_what_is_expected(name: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_feature_set_name(name)
    with pytest.raises(ValueError, match=expected):
        get_feature_set(name)


def test_timeframe_that_does_not_fit_the_bars_is_refused() -> None:
    bars = make_bars("AAA/USDT", 50)
    with pytest.raises(ValueError, match=r"\+90m: got 90m, expected a whole multiple of "
                       "the bars' timeframe 1h"):  # fmt: skip
        compute_features(bars, "nn23+90m")
    with pytest.raises(ValueError, match=r"\+1h: got 1h"):
        compute_features(bars, "nn23+1h")
