"""Import files into the store: read -> validate -> upsert, with one report row per symbol."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cappuccino.data.readers import read_bars
from cappuccino.data.readers._table import OnMalformed
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore, UpsertResult
from cappuccino.data.validate import (
    MAX_FILL_BARS,
    NOT_BEFORE,
    GapPolicy,
    IntervalPolicy,
    OhlcPolicy,
    SymbolReport,
    check_policies,
    clean_bars,
)
from cappuccino.utils.progress import steps

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """Per symbol: what validation found, and what the store did."""

    timeframe: Timeframe
    validation: dict[str, SymbolReport]
    upserts: dict[str, UpsertResult]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per symbol, the ``data import`` table."""
        out = []
        for sym, v in self.validation.items():
            u = self.upserts[sym]
            row = {
                "symbol": sym,
                "timeframe": self.timeframe.label,
                "rows_read": v.rows_read,
                "rows_stored": u.rows_stored,
                "rows_new": u.rows_new,
                "rows_updated": u.rows_updated,
                "duplicates_removed": v.duplicates_removed,
                "duplicates_conflicting": v.duplicates_conflicting,
                "gaps": v.gaps,
                "missing_bars": v.missing_bars,
                "first": v.first.isoformat() if v.first else None,
                "last": v.last.isoformat() if v.last else None,
            }
            details = v.to_dict()
            details.pop("symbol")
            row["details"] = details
            row["conflicting_kept_from_store"] = u.rows_conflicting_kept
            row["orphan_temps_removed"] = u.orphan_temps_removed
            row["repaired_from"] = u.repaired_from
            out.append(row)
        return out


def import_files(
    paths: Sequence[Path],
    store: ParquetStore,
    *,
    fmt: str = "auto",
    timeframe: Timeframe | None = None,
    on_gap: GapPolicy = "keep",
    on_bad_ohlc: OhlcPolicy = "error",
    on_interval_mismatch: IntervalPolicy = "error",
    max_fill_bars: int = MAX_FILL_BARS,
    not_before: datetime = NOT_BEFORE,
    on_malformed: OnMalformed = "error",
    repair: bool = False,
    reader_options: dict[str, Any] | None = None,
) -> ImportReport:
    """Read, validate and upsert ``paths``; nothing is written unless every file validates.

    ``repair``: a stored partition that cannot be read is set aside and rewritten from
    these files (see :meth:`ParquetStore.upsert`); otherwise it is an error.
    """
    check_policies(on_gap, on_bad_ohlc, on_interval_mismatch, max_fill_bars)  # before any read
    if on_malformed not in ("error", "skip"):
        raise ValueError(f"on_malformed: got {on_malformed!r}, expected one of error, skip")
    if not paths:
        raise ValueError("paths: no files given")
    store.require_real(", ".join(str(p) for p in paths[:3]))
    raws = []
    with steps("reading files", len(paths) if len(paths) > 1 else None) as bar:
        for p in paths:
            log.info("reading %s", p)
            raws.append(
                read_bars(Path(p), fmt=fmt, on_malformed=on_malformed, **(reader_options or {}))
            )
            bar.advance(note=Path(p).name)
    clean = clean_bars(
        raws,
        timeframe=timeframe,
        on_gap=on_gap,
        on_bad_ohlc=on_bad_ohlc,
        on_interval_mismatch=on_interval_mismatch,
        max_fill_bars=max_fill_bars,
        not_before=not_before,
    )
    upserts = {u.symbol: u for u in store.upsert(clean.frame, clean.timeframe, repair=repair)}
    return ImportReport(timeframe=clean.timeframe, validation=clean.reports, upserts=upserts)
