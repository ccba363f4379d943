"""Labels: the only forward-looking code in Cappuccino.

A label at bar t looks at bars after t; features never do. Entry is at bar t's
close. Rows without a full horizon get null labels (the table builder drops and
counts them).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field

from cappuccino.features.indicators import F64
from cappuccino.features.pipeline import segments


class ForwardReturnLabel(BaseModel):
    """Buy label: simple forward return over ``horizon`` bars, net of a round trip, above ``threshold``.

    ``net = (close[t+h] / close[t]) * (1 - fee)^2 - 1`` where ``fee`` is the fraction paid
    per side (0.001 = 0.1%); ``buy = net > threshold``. Columns ``label_fwd_return_<h>``
    (net simple return, fraction) and ``label_buy_<h>`` (0/1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["forward_return"] = "forward_return"
    horizon: int = Field(24, ge=1, description="bars ahead")
    threshold: float = Field(0.0, description="minimum net simple return for a buy (fraction)")
    fee: float = Field(0.0, ge=0.0, lt=1.0, description="fee per side (fraction)")

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"label_fwd_return_{self.horizon}", f"label_buy_{self.horizon}")


class TripleBarrierLabel(BaseModel):
    """Triple-barrier label (Lopez de Prado): which of take-profit, stop-loss or time comes first.

    From the close of bar t, the upper barrier is ``close * (1 + take_profit)`` and the
    lower ``close * (1 - stop_loss)``; bars t+1..t+max_holding are scanned with their
    high and low. +1 if the upper is touched first, -1 if the lower is, 0 if neither by
    the end. When one bar touches both, the outcome is -1 (conservative: intrabar order
    is unknown). Columns ``label_tb_<h>`` (-1/0/1), ``label_tb_bars_<h>`` (bars to the
    touch, ``h`` if none) and ``label_tb_return_<h>`` (simple return at exit: the barrier
    level, or close[t+h] / close[t] - 1 at the time limit).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["triple_barrier"] = "triple_barrier"
    take_profit: float = Field(0.02, gt=0.0, description="upper barrier, fraction above entry")
    stop_loss: float = Field(
        0.02, gt=0.0, lt=1.0, description="lower barrier, fraction below entry"
    )
    max_holding: int = Field(24, ge=1, description="vertical barrier in bars")

    @property
    def columns(self) -> tuple[str, ...]:
        h = self.max_holding
        return (f"label_tb_{h}", f"label_tb_bars_{h}", f"label_tb_return_{h}")


LabelSpec = Annotated[ForwardReturnLabel | TripleBarrierLabel, Field(discriminator="kind")]


def parse_label(text: str) -> ForwardReturnLabel | TripleBarrierLabel:
    """Parse ``forward:horizon=24,threshold=0.01,fee=0.001`` or ``triple:take_profit=0.02,...``.

    Short keys: ``h`` (horizon / max_holding), ``tp``, ``sl``.
    """
    kind, _, rest = text.partition(":")
    aliases = {
        "forward": "forward_return",
        "fwd": "forward_return",
        "forward_return": "forward_return",
        "triple": "triple_barrier",
        "tb": "triple_barrier",
        "triple_barrier": "triple_barrier",
    }
    if kind.strip() not in aliases:
        raise ValueError(f"label: got {text!r}, expected forward:... or triple:...")
    k = aliases[kind.strip()]
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label: got {item!r} in {text!r}, expected key=value")
        key = key.strip()
        key = {
            "h": "horizon" if k == "forward_return" else "max_holding",
            "tp": "take_profit",
            "sl": "stop_loss",
        }.get(key, key)
        params[key] = value.strip()
    if k == "forward_return":
        return ForwardReturnLabel.model_validate(params)
    return TripleBarrierLabel.model_validate(params)


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
