"""Supervised windows: chronological splits, one contiguous float32 array per split, windows
by index.

A feature table (``timestamp``, ``symbol``, feature columns, label columns; see
:func:`cappuccino.features.table.build_feature_table`) is cut by **time** into train /
validation / test for all symbols at once, with an optional embargo of bars between
splits (labels look ahead; the embargo keeps a train label's horizon out of the next
split). Each split becomes one contiguous ``(rows, features)`` float32 array sorted by
(symbol, time), scaled with a scaler fitted on the **train rows only**.

A window of ``lookback`` bars ends at a row ``e`` and covers rows ``e - lookback + 1 .. e``;
it is valid when all those rows belong to the same symbol, are consecutive bars, have
finite features, and row ``e`` has a finite label. Windows are never materialised:
``WindowSplit.batch(idx)`` gathers ``(batch, lookback, features)`` from the array on its
device. The label of a window is the label at its last bar (which uses the future; the
features never do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch import Tensor

from cappuccino.data.schema import Timeframe, sort_bars
from cappuccino.features.scaling import Scaler, ScalerKind


@dataclass(frozen=True)
class TimeSplit:
    """Inclusive time bounds of one split (epoch ms, UTC)."""

    name: str
    start_ms: int
    end_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": datetime.fromtimestamp(self.start_ms / 1000, tz=UTC).isoformat(),
            "end": datetime.fromtimestamp(self.end_ms / 1000, tz=UTC).isoformat(),
        }


def chronological_splits(
    timestamps_ms: npt.ArrayLike,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    embargo_bars: int = 0,
    names: tuple[str, str, str] = ("train", "val", "test"),
    starts_ms: tuple[int, ...] | None = None,
) -> list[TimeSplit]:
    """Cut the sorted unique bar times into consecutive splits, leaving ``embargo_bars``
    bars out between consecutive splits: by ``fractions`` of the bars, or, with
    ``starts_ms``, at dates (the first bar at or after each later split's start; the split
    before it ends ``embargo_bars`` bars earlier). Dates give every dataset built from the
    same bars the same split, whatever its warm-up or window."""
    ts = np.unique(np.asarray(timestamps_ms, dtype=np.int64))
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars: got {embargo_bars}, expected >= 0")
    if starts_ms is not None:
        if len(starts_ms) != len(names) - 1 or list(starts_ms) != sorted(starts_ms):
            raise ValueError(
                f"split starts: got {list(starts_ms)}, expected {len(names) - 1} increasing dates"
            )
        first = [0, *(int(np.searchsorted(ts, s)) for s in starts_ms)]
        bounds = [*first, ts.size + embargo_bars]
        spans = [(first[k], bounds[k + 1] - embargo_bars - 1) for k in range(len(names))]
        for name, (a, b) in zip(names, spans, strict=True):
            if b < a or a >= ts.size:
                raise ValueError(
                    f"split {name!r}: no bars between the starts {list(starts_ms)} with an "
                    f"embargo of {embargo_bars} (data {int(ts[0])}..{int(ts[-1])} ms)"
                )
        return [
            TimeSplit(n, int(ts[a]), int(ts[b])) for n, (a, b) in zip(names, spans, strict=True)
        ]
    if len(fractions) != len(names) or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions: got {fractions}, expected {len(names)} positive numbers")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions: got {fractions} (sum {sum(fractions)}), expected sum 1")
    usable = ts.size - embargo_bars * (len(names) - 1)
    sizes = [int(usable * f) for f in fractions]
    if min(sizes) < 1:
        raise ValueError(
            f"{ts.size} bars cannot hold splits {fractions} with an embargo of {embargo_bars}"
        )
    sizes[-1] = usable - sum(sizes[:-1])
    out, i = [], 0
    for name, n in zip(names, sizes, strict=True):
        out.append(TimeSplit(name, int(ts[i]), int(ts[i + n - 1])))
        i += n + embargo_bars
    return out


@dataclass
class WindowSplit:
    """One split's rows on a device and the row indices where valid windows end."""

    name: str
    x: Tensor  # (rows, F) float32, scaled
    y: Tensor  # (rows,) float32 label (NaN where undefined)
    asset: Tensor  # (rows,) int64 asset id
    ends: Tensor  # (windows,) int64 row index of each window's last bar
    lookback: int
    time_ms: Tensor  # (rows,) int64 bar open time

    def __post_init__(self) -> None:
        self._offsets = torch.arange(-self.lookback + 1, 1, device=self.x.device)

    @property
    def n_windows(self) -> int:
        return int(self.ends.numel())

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Windows ``idx`` (indices into ``ends``): ``x (B, L, F)``, ``asset (B,)``, ``y (B,)``."""
        end = self.ends[idx]
        rows = (end.unsqueeze(1) + self._offsets).reshape(-1)
        x = torch.index_select(self.x, 0, rows).reshape(end.numel(), self.lookback, -1)
        return x, self.asset[end], self.y[end]

    def positive_rate(self) -> float:
        """Share of windows whose label is 1."""
        return float(self.y[self.ends].mean()) if self.n_windows else float("nan")


@dataclass
class WindowData:
    """Splits, the train-fitted scaler and what was built (for bundles and reports)."""

    splits: dict[str, WindowSplit]
    scaler: Scaler
    symbols: tuple[str, ...]
    feature_names: tuple[str, ...]
    label: str
    lookback: int
    time_splits: list[TimeSplit]
    report: dict[str, Any] = field(default_factory=dict)


def _valid_ends(
    sym: npt.NDArray[np.int64],
    t: npt.NDArray[np.int64],
    finite_x: npt.NDArray[np.bool_],
    finite_y: npt.NDArray[np.bool_],
    lookback: int,
    step_ms: int,
) -> npt.NDArray[np.int64]:
    """Rows ending a valid window (vectorised: breaks counted with a cumulative sum)."""
    n = sym.size
    ok_link = np.ones(n, dtype=bool)  # row i continues row i-1 (same symbol, next bar)
    ok_link[0] = False
    ok_link[1:] = (sym[1:] == sym[:-1]) & (t[1:] - t[:-1] == step_ms)
    bad = (~ok_link).astype(np.int64)
    bad_rows = (~finite_x).astype(np.int64)
    cb = np.cumsum(bad)
    cr = np.concatenate([[0], np.cumsum(bad_rows)])
    e = np.arange(lookback - 1, n)
    s = e - lookback + 1
    # no break strictly inside (s, e], no non-finite row in [s, e], finite label at e
    breaks = cb[e] - cb[s]
    holes = cr[e + 1] - cr[s]
    keep = (breaks == 0) & (holes == 0) & finite_y[e]
    out: npt.NDArray[np.int64] = e[keep].astype(np.int64)
    return out


def build_windows(
    table: pl.DataFrame,
    *,
    feature_names: list[str],
    label: str,
    lookback: int,
    timeframe: Timeframe,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    embargo_bars: int = 0,
    scaler: ScalerKind = "zscore",
    device: torch.device | str = "cpu",
    split_starts_ms: tuple[int, int] | None = None,
) -> WindowData:
    """Chronological splits of ``table`` into window arrays (see the module docstring)."""
    if lookback < 1:
        raise ValueError(f"lookback: got {lookback}, expected >= 1")
    missing = [c for c in [*feature_names, label] if c not in table.columns]
    if missing:
        raise ValueError(f"feature table: missing columns {missing}")
    symbols = tuple(sorted(table["symbol"].unique().to_list()))
    frame = sort_bars(table)
    t_all = frame["timestamp"].dt.epoch("ms").to_numpy()
    time_splits = chronological_splits(
        t_all, fractions=fractions, embargo_bars=embargo_bars, starts_ms=split_starts_ms
    )
    x_all = frame.select(feature_names).cast(pl.Float64).fill_null(np.nan).to_numpy()
    y_all = frame[label].cast(pl.Float64).fill_null(np.nan).to_numpy()
    sym_all = (
        frame["symbol"]
        .replace_strict({s: i for i, s in enumerate(symbols)}, return_dtype=pl.Int64)
        .to_numpy()
    )
    labels = np.unique(y_all[np.isfinite(y_all)])
    if not np.isin(labels, [0.0, 1.0]).all():
        raise ValueError(f"label {label}: expected 0/1 values, got {labels[:5].tolist()}")
    train = time_splits[0]
    in_train = (t_all >= train.start_ms) & (t_all <= train.end_ms)
    fitted = Scaler.fit(x_all[in_train], scaler)
    splits: dict[str, WindowSplit] = {}
    report: dict[str, Any] = {"splits": {}, "lookback": lookback, "label": label}
    for ts in time_splits:
        mask = (t_all >= ts.start_ms) & (t_all <= ts.end_ms)
        x = fitted.transform(x_all, rows=np.flatnonzero(mask))  # no float64 copy of the split
        y = y_all[mask]
        sym, t = sym_all[mask], t_all[mask]
        finite_rows: npt.NDArray[np.bool_] = np.asarray(np.isfinite(x).all(axis=1))
        ends = _valid_ends(sym, t, finite_rows, np.isfinite(y), lookback, timeframe.ms)
        split = WindowSplit(
            name=ts.name,
            x=torch.as_tensor(np.ascontiguousarray(x), device=device),
            y=torch.as_tensor(y.astype(np.float32), device=device),
            asset=torch.as_tensor(sym, device=device),
            ends=torch.as_tensor(ends, device=device),
            lookback=lookback,
            time_ms=torch.as_tensor(t, device=device),
        )
        splits[ts.name] = split
        per_symbol = {
            s: float(y[ends][sym[ends] == i].mean()) if (sym[ends] == i).any() else None
            for i, s in enumerate(symbols)
        }
        report["splits"][ts.name] = {
            **ts.to_dict(),
            "rows": int(mask.sum()),
            "windows": int(ends.size),
            "positive_rate": split.positive_rate(),
            "positive_rate_by_symbol": per_symbol,
        }
    return WindowData(
        splits=splits,
        scaler=fitted,
        symbols=symbols,
        feature_names=tuple(feature_names),
        label=label,
        lookback=lookback,
        time_splits=time_splits,
        report=report,
    )


def inference_windows(
    table: pl.DataFrame,
    *,
    feature_names: list[str],
    lookback: int,
    timeframe: Timeframe,
    scaler: Scaler,
    symbols: tuple[str, ...],
    device: torch.device | str = "cpu",
    since_ms: int | None = None,
) -> WindowSplit:
    """Every valid window of ``table`` for scoring (no label needed), scaled with a saved
    scaler; asset ids follow ``symbols`` (a model's training order). Symbols not in
    ``symbols`` are a ``ValueError``. With ``since_ms``, only windows ending at or after
    that bar (the history before it still feeds the windows)."""
    unknown = sorted(set(table["symbol"].unique().to_list()) - set(symbols))
    if unknown:
        raise ValueError(f"symbols {unknown} were not in training (known: {list(symbols)})")
    frame = sort_bars(table)
    t = frame["timestamp"].dt.epoch("ms").to_numpy()
    x = scaler.transform(frame.select(feature_names).cast(pl.Float64).fill_null(np.nan).to_numpy())
    sym = (
        frame["symbol"]
        .replace_strict({s: i for i, s in enumerate(symbols)}, return_dtype=pl.Int64)
        .to_numpy()
    )
    finite_rows: npt.NDArray[np.bool_] = np.asarray(np.isfinite(x).all(axis=1))
    ends = _valid_ends(sym, t, finite_rows, np.ones(t.size, dtype=bool), lookback, timeframe.ms)
    if since_ms is not None:
        ends = ends[t[ends] >= since_ms]
    return WindowSplit(
        name="predict",
        x=torch.as_tensor(np.ascontiguousarray(x), device=device),
        y=torch.full((t.size,), float("nan"), device=device),
        asset=torch.as_tensor(np.array(sym), device=device),
        ends=torch.as_tensor(ends, device=device),
        lookback=lookback,
        time_ms=torch.as_tensor(np.array(t), device=device),
    )
