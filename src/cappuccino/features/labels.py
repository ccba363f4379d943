"""Labels: the only forward-looking code in Cappuccino.

A label at bar t looks at bars after t; features never do. Entry is at bar t's
close. Rows without a full horizon get null labels (the table builder drops and
counts them). The label specs (what to compute) are configuration:
:mod:`cappuccino.config.labels`.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from cappuccino.config.labels import ForwardReturnLabel, LabelSpec, TripleBarrierLabel, parse_label
from cappuccino.features.indicators import F64
from cappuccino.features.pipeline import segments


def forward_return(close: F64, horizon: int) -> F64:
    """Simple return ``close[t+h] / close[t] - 1``; NaN for the last ``h`` bars."""
    out = np.full_like(close, np.nan)
    if horizon < len(close):
        out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out


def forward_return_label(close: F64, spec: ForwardReturnLabel) -> tuple[F64, F64]:
    """(net forward return, buy label as 0.0/1.0); both NaN without a full horizon."""
    net = (1.0 + forward_return(close, spec.horizon)) * (1.0 - spec.fee) ** 2 - 1.0
    buy = np.where(np.isnan(net), np.nan, (net > spec.threshold).astype(np.float64))
    return net, buy


def triple_barrier_label(
    high: F64, low: F64, close: F64, spec: TripleBarrierLabel
) -> tuple[F64, F64, F64]:
    """(label, bars to exit, exit return); NaN for the last ``max_holding`` bars."""
    n, h = len(close), spec.max_holding
    label = np.full(n, np.nan)
    bars = np.full(n, np.nan)
    ret = np.full(n, np.nan)
    m = n - h
    if m <= 0:
        return label, bars, ret
    entry = close[:m]
    up_hit = sliding_window_view(high[1:], h)[:m] >= (entry * (1 + spec.take_profit))[:, None]
    dn_hit = sliding_window_view(low[1:], h)[:m] <= (entry * (1 - spec.stop_loss))[:, None]
    never = h + 1
    first_up = np.where(up_hit.any(axis=1), up_hit.argmax(axis=1) + 1, never)
    first_dn = np.where(dn_hit.any(axis=1), dn_hit.argmax(axis=1) + 1, never)
    down_first = (first_dn <= first_up) & (first_dn < never)
    up_first = (first_up < first_dn) & (first_up < never)
    label[:m] = np.where(up_first, 1.0, np.where(down_first, -1.0, 0.0))
    bars[:m] = np.where(up_first, first_up, np.where(down_first, first_dn, h))
    ret[:m] = np.where(
        up_first, spec.take_profit, np.where(down_first, -spec.stop_loss, close[h:] / entry - 1.0)
    )
    return label, bars, ret


def compute_labels(
    bars: pl.DataFrame, specs: list[ForwardReturnLabel | TripleBarrierLabel]
) -> pl.DataFrame:
    """Label columns for every bar of ``bars`` (sorted, gap-free), same row order; nulls at the end."""
    names = [c for s in specs for c in s.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"labels: duplicate label columns {names}")
    out = {name: np.empty(bars.height) for name in names}
    c, h, lo = (np.ascontiguousarray(bars[x].to_numpy()) for x in ("close", "high", "low"))
    for seg in segments(bars):
        sl = slice(seg.start, seg.stop)
        for spec in specs:
            if isinstance(spec, ForwardReturnLabel):
                values: tuple[F64, ...] = forward_return_label(c[sl], spec)
            else:
                values = triple_barrier_label(h[sl], lo[sl], c[sl], spec)
            for name, arr in zip(spec.columns, values, strict=True):
                out[name][sl] = arr
    return pl.DataFrame([pl.Series(k, v, nan_to_null=True) for k, v in out.items()])


__all__ = [
    "ForwardReturnLabel",
    "LabelSpec",
    "TripleBarrierLabel",
    "compute_labels",
    "forward_return",
    "forward_return_label",
    "parse_label",
    "triple_barrier_label",
]
