"""Build the model-ready table: gap fill -> features -> labels -> drop incomplete rows (counted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cappuccino.data.align import AlignReport, align_universe
from cappuccino.data.schema import Timeframe, sort_bars
from cappuccino.data.validate import fill_gaps
from cappuccino.features.labels import ForwardReturnLabel, TripleBarrierLabel, compute_labels
from cappuccino.features.pipeline import FeatureReport, compute_features
from cappuccino.features.sets import FeatureSet, get_feature_set


@dataclass
class TableReport:
    """Row accounting of one feature table, per symbol and in total."""

    feature_set: str
    label_columns: list[str]
    features: FeatureReport
    filled_bars: dict[str, int] = field(default_factory=dict)
    warmup_rows_dropped: dict[str, int] = field(default_factory=dict)
    label_rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    positive_rate: dict[str, dict[str, float]] = field(default_factory=dict)
    alignment: AlignReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_set": self.feature_set,
            "label_columns": self.label_columns,
            "features": self.features.to_dict(),
            "filled_bars": self.filled_bars,
            "warmup_rows_dropped": self.warmup_rows_dropped,
            "label_rows_dropped": self.label_rows_dropped,
            "rows_out": self.rows_out,
            "positive_rate": self.positive_rate,
            "alignment": self.alignment.to_dict() if self.alignment else None,
        }


def _count_by_symbol(frame: pl.DataFrame, mask: pl.Expr) -> dict[str, int]:
    out = frame.group_by("symbol").agg(mask.sum().alias("n"))
    return {s: int(n) for s, n in out.iter_rows()}


def build_feature_table(
    bars: pl.DataFrame,
    feature_set: FeatureSet | str,
    labels: list[ForwardReturnLabel | TripleBarrierLabel],
    *,
    timeframe: Timeframe,
    drop_warmup: bool = True,
    align: bool = False,
) -> tuple[pl.DataFrame, TableReport]:
    """Columns ``timestamp, symbol``, the set's features, then the label columns.

    Gaps are filled first (counted per symbol); with ``align`` every symbol is first put
    on the common calendar of :func:`~cappuccino.data.align.align_universe` (counted).
    With ``drop_warmup``, rows where any feature is null are dropped (counted); rows whose
    labels lack a full horizon are always dropped (counted).
    """
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    bars = sort_bars(bars)
    alignment = None
    if align:
        bars, alignment = align_universe(bars, timeframe)
        filled = alignment.filled_bars
    else:
        bars, filled = fill_gaps(bars, timeframe)
    feats, freport = compute_features(bars, fs, timeframe=timeframe)
    lab = compute_labels(bars, labels)
    table = pl.concat([feats, lab], how="horizontal")
    label_cols = list(lab.columns)
    report = TableReport(
        feature_set=fs.name,
        label_columns=label_cols,
        features=freport,
        filled_bars=filled,
        alignment=alignment,
    )
    # one filter for both drops: a second would copy the whole table once more
    drop = pl.lit(False)
    if drop_warmup:
        incomplete = pl.any_horizontal(pl.col(c).is_null() for c in fs.columns)
        report.warmup_rows_dropped = _count_by_symbol(table, incomplete)
        drop = incomplete
    if label_cols:
        unlabeled = pl.any_horizontal(pl.col(c).is_null() for c in label_cols)
        report.label_rows_dropped = _count_by_symbol(table, unlabeled & ~drop)
        drop = drop | unlabeled
    if drop_warmup or label_cols:
        table = table.filter(~drop)
    report.rows_out = {s: int(n) for s, n in table.group_by("symbol").len().iter_rows()}
    binary = [
        c
        for c in label_cols
        if c.startswith(("label_buy_", "label_tb_")) and "_bars_" not in c and "_return_" not in c
    ]
    if binary and table.height:
        rates = table.group_by("symbol").agg((pl.col(c) > 0).mean().alias(c) for c in binary)
        report.positive_rate = {r.pop("symbol"): r for r in rates.iter_rows(named=True)}
    return table, report
