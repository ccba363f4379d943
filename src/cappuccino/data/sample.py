"""The bundled demo sample: 7 Binance pairs, hourly, 2020-08-01 to 2021-06-30.

Built from the real CryptoDataDownload exports by :func:`build_sample`: read,
validate (duplicates resolved, gaps kept as gaps so that importing the sample
still shows them), cut to the window, written as Parquet with a JSON manifest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.data.readers import read_bars
from cappuccino.data.validate import clean_bars
from cappuccino.utils.io import atomic_write_json, atomic_write_parquet

SAMPLE_SYMBOLS = (
    "BTC/USDT",
    "ETH/USDT",
    "LTC/USDT",
    "ADA/USDT",
    "BNB/USDT",
    "XRP/USDT",
    "LINK/USDT",
)
SAMPLE_START = datetime(2020, 8, 1, tzinfo=UTC)
SAMPLE_END = datetime(2021, 6, 30, 23, tzinfo=UTC)
SAMPLE_FILE = "binance_1h_sample.parquet"


def sample_path() -> Path:
    """Path of the bundled sample Parquet inside the installed package."""
    return Path(str(resources.files("cappuccino.data").joinpath("sample", SAMPLE_FILE)))


def build_sample(source_dir: Path, out: Path) -> dict[str, Any]:
    """Rebuild the sample from ``Binance_<PAIR>_1h.csv`` files in ``source_dir``; return the manifest."""
    files = [Path(source_dir) / f"Binance_{s.replace('/', '')}_1h.csv" for s in SAMPLE_SYMBOLS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"sample sources missing: {missing}")
    clean = clean_bars([read_bars(f) for f in files], on_gap="keep")
    frame = clean.frame.filter(pl.col("timestamp").is_between(SAMPLE_START, SAMPLE_END)).sort(
        ["symbol", "timestamp"]
    )
    manifest = {
        "source": "CryptoDataDownload Binance hourly exports (www.CryptoDataDownload.com)",
        "window": [SAMPLE_START.isoformat(), SAMPLE_END.isoformat()],
        "timeframe": clean.timeframe.label,
        "rows": {s: int(n) for s, n in frame.group_by("symbol").len().sort("symbol").iter_rows()},
        "defects_resolved_in_full_files": {
            s: {
                "duplicates_removed": r.duplicates_removed,
                "gaps": r.gaps,
                "missing_bars": r.missing_bars,
            }
            for s, r in clean.reports.items()
        },
    }
    atomic_write_parquet(Path(out), frame)
    atomic_write_json(Path(out).with_suffix(".json"), manifest)
    return manifest
