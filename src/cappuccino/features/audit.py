"""Lookahead audit: does any feature at bar t change when bars after t change?

For each of ``n_cuts`` cut times (for a multi-timeframe set, also one cut at every bar of
one bucket of its longest timeframe, so that a leak showing at one phase of the bucket is
met), the feature set is recomputed (a) on bars
truncated after the cut and (b) on bars whose future after the cut is replaced by
a random walk. Every value at or before the cut must equal the full computation
(to ``tol``, nulls matching nulls). A column that differs anywhere is reported with
the number of differing values and the first offending (symbol, time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cappuccino.features.pipeline import compute_features
from cappuccino.features.sets import FeatureSet, get_feature_set
from cappuccino.market.timeframe import Timeframe


@dataclass
class AuditReport:
    feature_set: str
    cut_points: int
    columns: list[str]
    violations: dict[str, int] = field(default_factory=dict)
    first_violation: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_set": self.feature_set,
            "cut_points": self.cut_points,
            "passed": self.passed,
            "columns_checked": len(self.columns),
            "violations": self.violations,
            "first_violation": self.first_violation,
        }


def _perturb_after(bars: pl.DataFrame, cut: Any, rng: np.random.Generator) -> pl.DataFrame:
    after = (bars["timestamp"] > cut).to_numpy()
    k = int(after.sum())
    scale = np.ones(bars.height)
    scale[after] = np.exp(rng.normal(0.0, 0.05, k))
    vol = np.ones(bars.height)
    vol[after] = rng.uniform(0.1, 10.0, k)
    s = pl.Series(scale)
    return bars.with_columns(
        *(pl.col(c) * s for c in ("open", "high", "low", "close")),
        pl.col("volume") * pl.Series(vol),
    )


def _bucket_phases(fs: FeatureSet, times: pl.Series) -> int:
    """Bars per bucket of the longest timeframe a column names (``<column>@<tf>``), at most
    a week of them; 1 without such columns."""
    longest = max((Timeframe.parse(c.rsplit("@", 1)[1]).ms for c in fs.columns if "@" in c),
                  default=0)  # fmt: skip
    if not longest or len(times) < 2:
        return 1
    step = int(np.diff(times.dt.epoch("ms").to_numpy()).min())
    return int(min(longest // step, 7 * 24, len(times) // 2))


def audit_lookahead(
    bars: pl.DataFrame,
    feature_set: FeatureSet | str,
    *,
    n_cuts: int = 12,
    seed: int = 0,
    tol: float = 1e-9,
) -> AuditReport:
    """Run the audit on ``bars`` (sorted, gap-free). ``tol`` is relative (absolute below 1)."""
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    if n_cuts < 1:
        raise ValueError(f"n_cuts must be >= 1, got {n_cuts}")
    rng = np.random.default_rng(seed)
    full, _ = compute_features(bars, fs)
    times = bars["timestamp"].unique().sort()
    # cut points spread over the middle 90% of the calendar, plus random jitter
    pos = np.linspace(0.05, 0.95, n_cuts) * (len(times) - 1)
    pos = np.clip(pos + rng.integers(-3, 4, n_cuts), 0, len(times) - 2).astype(int)
    # columns of a longer timeframe (``rsi_14@4h``) change only when the cut falls at one
    # phase of their bucket: consecutive cuts covering a whole bucket of the longest one
    phases = _bucket_phases(fs, times)
    if phases > 1:
        mid = min(len(times) // 2, len(times) - 1 - phases)
        pos = np.unique(np.concatenate([pos, np.arange(mid, mid + phases)]))
    report = AuditReport(feature_set=fs.name, cut_points=len(pos), columns=list(fs.columns))
    for cut in times.gather(pos).to_list():
        keep = (bars["timestamp"] <= cut).to_numpy()
        ref = full.filter(pl.Series(keep))
        variants = [bars.filter(pl.Series(keep)), _perturb_after(bars, cut, rng)]
        for variant in variants:
            got, _ = compute_features(variant, fs)
            got = got.filter(got["timestamp"] <= cut)
            for col in fs.columns:
                a = ref[col].to_numpy()
                b = got[col].to_numpy()
                both_nan = np.isnan(a) & np.isnan(b)
                with np.errstate(invalid="ignore"):
                    close = np.abs(a - b) <= tol * np.maximum(1.0, np.abs(a))
                bad = ~(both_nan | close)
                if bad.any():
                    report.violations[col] = report.violations.get(col, 0) + int(bad.sum())
                    if col not in report.first_violation:
                        i = int(np.argmax(bad))
                        report.first_violation[col] = f"{ref['symbol'][i]} @ {ref['timestamp'][i]}"
    return report
