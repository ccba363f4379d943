"""What every reader returns: canonical bar columns plus source bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass
class RawBars:
    """Parsed but not yet validated bars from one source.

    ``frame`` has the canonical columns in file order plus ``_line`` (1-based source
    line, or row number for Parquet) and ``_volume_decimals`` (digits after the
    point in the volume text; used to tell rounding from real differences between
    duplicate rows).
    """

    frame: pl.DataFrame
    source: str
    rows_read: int
    malformed_skipped: int = 0
    unix_seconds_rows: int = 0
    date_unix_mismatch: int = 0
