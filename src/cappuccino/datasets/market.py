"""Aligned market arrays for trading: prices and causal features on one calendar.

``MarketArrays`` holds ``T`` bars of ``A`` assets (symbol order fixed) on one common
calendar: ``open``/``close`` ``(T, A)`` and ``features`` ``(T, A, F)`` where the feature
value at bar ``t`` uses data up to bar ``t``'s close only. Bars filled by the gap
policy are flagged in ``filled`` ``(T, A)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from cappuccino.config.rl import SplitSettings
from cappuccino.data.align import align_universe
from cappuccino.data.schema import Timeframe, sort_bars
from cappuccino.data.store import ParquetStore
from cappuccino.features.pipeline import compute_features
from cappuccino.features.scaling import Scaler
from cappuccino.features.sets import get_feature_set


@dataclass(frozen=True)
class MarketArrays:
    """Aligned arrays; see the module docstring. ``timestamps`` are epoch milliseconds (UTC)."""

    timestamps: npt.NDArray[np.int64]
    symbols: tuple[str, ...]
    feature_set: str
    feature_names: tuple[str, ...]
    timeframe: Timeframe
    open: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    features: npt.NDArray[np.float64]
    filled: npt.NDArray[np.bool_]
    warmup_bars_dropped: int = 0
    features_carried: int = 0

    @property
    def n_bars(self) -> int:
        return int(self.timestamps.size)

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    def index_of(self, when: datetime | str | None, *, default: int, side: str = "left") -> int:
        """Index of the first bar at or after ``when`` (``side='left'``) or the bar after the
        last bar at or before it (``side='right'``); ``default`` when ``when`` is None."""
        if when is None:
            return default
        ts = datetime.fromisoformat(when) if isinstance(when, str) else when
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        ms = int(ts.timestamp() * 1000)
        return int(np.searchsorted(self.timestamps, ms, side=side))  # type: ignore[call-overload]

    def slice(self, start: int, end: int) -> MarketArrays:
        """Bars ``[start, end)`` as a new ``MarketArrays`` (views, no copy)."""
        if not 0 <= start < end <= self.n_bars:
            raise ValueError(
                f"MarketArrays.slice: got [{start}, {end}), expected 0 <= start < end <= {self.n_bars}"
            )
        return MarketArrays(
            timestamps=self.timestamps[start:end],
            symbols=self.symbols,
            feature_set=self.feature_set,
            feature_names=self.feature_names,
            timeframe=self.timeframe,
            open=self.open[start:end],
            close=self.close[start:end],
            features=self.features[start:end],
            filled=self.filled[start:end],
            warmup_bars_dropped=self.warmup_bars_dropped,
            features_carried=self.features_carried,
        )

    def between(self, start: datetime | str | None, end: datetime | str | None) -> MarketArrays:
        """Bars with ``start <= timestamp <= end`` (either bound optional)."""
        i = self.index_of(start, default=0)
        j = self.index_of(end, default=self.n_bars, side="right")
        if j - i < 2:
            raise ValueError(
                f"no bars between {start} and {end}: the data covers "
                f"{self.describe()['start']} to {self.describe()['end']}"
            )
        return self.slice(i, j)

    def training_bounds(self, split: SplitSettings) -> tuple[int, int]:
        """Bars ``[i0, i1)`` of ``split``'s training period; ``ValueError`` naming the field
        when ``split.train_end`` lies after the last bar (a run would silently train on less
        than it asked for, and nothing would be left to test on) or the period holds under
        two bars."""
        last = self.datetime_at(self.n_bars - 1)
        end = split.train_end if split.train_end.tzinfo else split.train_end.replace(tzinfo=UTC)
        if end > last:
            raise ValueError(
                f"split.train_end: got {end.isoformat()}, after the data's last bar "
                f"{last.isoformat()}; expected a time inside the data"
            )
        i0 = self.index_of(split.train_start, default=0)
        i1 = self.index_of(split.train_end, default=self.n_bars, side="right")
        if i1 - i0 < 2:
            raise ValueError(
                f"split: no training bars between {split.train_start} and {split.train_end}: "
                f"the data covers {self.describe()['start']} to {last.isoformat()}"
            )
        return i0, i1

    def datetime_at(self, i: int) -> datetime:
        """UTC time of bar ``i``'s open."""
        return datetime.fromtimestamp(int(self.timestamps[i]) / 1000, tz=UTC)

    def describe(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "feature_set": self.feature_set,
            "n_bars": self.n_bars,
            "start": self.datetime_at(0).isoformat(),
            "end": self.datetime_at(self.n_bars - 1).isoformat(),
            "filled_bars": int(self.filled.sum()),
            "warmup_bars_dropped": self.warmup_bars_dropped,
            "features_carried_forward": self.features_carried,
        }


def fit_scaler(data: MarketArrays, kind: str = "zscore") -> Scaler:
    """Per (asset, feature) scaler fitted on every bar of ``data`` (pass the training segment)."""
    return Scaler.fit(data.features, kind)  # type: ignore[arg-type]


def observation_rows(
    data: MarketArrays, scaler: Scaler, obs_clip: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(T, A * F)`` float32 rows of scaled features clipped to ``+-obs_clip``, one row per
    bar: the window source of :meth:`cappuccino.market.ObservationSpec.build`."""
    scaled = np.clip(scaler.transform(data.features), -obs_clip, obs_clip)
    rows = torch.as_tensor(scaled, dtype=torch.float32, device=torch.device(device))
    return rows.reshape(data.n_bars, -1)


PRICES_ONLY = "prices-only"
"""The ``feature_set`` of market arrays built without features (benchmark backtests)."""


def build_market_arrays(
    bars: pl.DataFrame, feature_set: str | None, timeframe: Timeframe
) -> MarketArrays:
    """Align ``bars`` (canonical schema, several symbols), compute ``feature_set`` per symbol
    and keep the bars where every symbol's features are warm. Symbol order is sorted.
    A feature undefined after its warm-up (e.g. on a zero-volume bar) carries its previous
    value forward; those values are counted in ``features_carried``.

    ``feature_set`` None: prices only (no features, no warm-up, every aligned bar kept;
    ``feature_set`` is then :data:`PRICES_ONLY`), for policies that read no observation.

    Raises ``ValueError`` if a price is not finite and positive.
    """
    aligned, _ = align_universe(bars, timeframe)
    aligned = sort_bars(aligned)
    symbols = tuple(sorted(aligned["symbol"].unique().to_list()))
    n_assets = len(symbols)
    n_bars = aligned.height // n_assets
    if feature_set is None:
        feats, cols = aligned.select("symbol", "timestamp"), []
    else:
        fs = get_feature_set(feature_set)
        feats, _ = compute_features(aligned, fs, timeframe=timeframe)
        feats, cols = sort_bars(feats), list(fs.columns)

    def block(frame: pl.DataFrame, names: list[str]) -> npt.NDArray[np.float64]:
        # (A * T, k) -> (T, A, k)
        arr = frame.select(names).cast(pl.Float64).to_numpy()
        return arr.reshape(n_assets, n_bars, len(names)).transpose(1, 0, 2)

    prices = block(aligned, ["open", "close"])
    features = (
        block(feats.with_columns(pl.col(cols).fill_null(np.nan)), cols)
        if cols
        else np.zeros((n_bars, n_assets, 0))
    )
    filled = aligned["filled"].to_numpy().reshape(n_assets, n_bars).T
    ts = aligned["timestamp"].dt.epoch("ms").to_numpy()[:n_bars]
    bad = ~(np.isfinite(prices) & (prices > 0))
    if bad.any():
        t, a, k = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(
            f"{symbols[a]} {('open', 'close')[k]} at bar {t}: got {prices[t, a, k]!r}, "
            "expected a finite price > 0"
        )
    finite = np.isfinite(features)
    if not finite.any(axis=0).all():
        raise ValueError(f"{feature_set}: a feature column has no finite value at all")
    first = int(finite.argmax(axis=0).max()) if cols else 0  # the last column to warm up
    if first >= n_bars - 1:
        raise ValueError(f"{feature_set}: warm-up takes {first} of {n_bars} bars")
    features = features[first:]
    holes = ~np.isfinite(features)
    carried = int(holes.sum())
    if carried:
        # undefined values after warm-up (e.g. a zero-volume bar): carry the previous value
        # forward, causal and counted
        idx = np.where(~holes, np.arange(features.shape[0])[:, None, None], 0)
        np.maximum.accumulate(idx, axis=0, out=idx)
        features = np.take_along_axis(features, idx, axis=0)
    return MarketArrays(
        timestamps=ts[first:].astype(np.int64),
        symbols=symbols,
        feature_set=PRICES_ONLY if feature_set is None else feature_set,
        feature_names=tuple(cols),
        timeframe=timeframe,
        open=np.ascontiguousarray(prices[first:, :, 0]),
        close=np.ascontiguousarray(prices[first:, :, 1]),
        features=np.ascontiguousarray(features),
        filled=np.ascontiguousarray(filled[first:]),
        warmup_bars_dropped=first,
        features_carried=carried,
    )


def load_market(
    store_path: Path, timeframe: str, symbols: list[str] | None, feature_set: str | None
) -> MarketArrays:
    """Aligned arrays for ``symbols`` (None: all) of a store (``feature_set`` None: prices
    only, see :func:`build_market_arrays`)."""
    tf = Timeframe.parse(timeframe)
    return build_market_arrays(ParquetStore(store_path).read_universe(tf, symbols), feature_set, tf)
