"""The bundled sample is what build_sample makes from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cappuccino.data.sample import (
    SAMPLE_END,
    SAMPLE_START,
    SAMPLE_SYMBOLS,
    build_sample,
    sample_path,
)


def test_bundled_sample_rebuilds_identically(tmp_path: Path, shared_dir: Path) -> None:
    out = tmp_path / "s.parquet"
    manifest = build_sample(shared_dir, out)
    bundled = pl.read_parquet(sample_path())
    assert pl.read_parquet(out).equals(bundled)
    assert json.loads(sample_path().with_suffix(".json").read_text()) == json.loads(
        out.with_suffix(".json").read_text()
    )
    assert sorted(bundled["symbol"].unique()) == sorted(SAMPLE_SYMBOLS)
    assert bundled["timestamp"].min() >= SAMPLE_START and bundled["timestamp"].max() == SAMPLE_END
    assert manifest["rows"]["BTC/USDT"] == 8_004
