"""Bar readers, one per source format, chosen by name or detected from the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cappuccino.data.errors import DataError
from cappuccino.data.readers._table import OnMalformed
from cappuccino.data.readers.base import RawBars
from cappuccino.data.readers.cryptodatadownload import (
    looks_like_cryptodatadownload,
    read_cryptodatadownload,
)
from cappuccino.data.readers.generic_csv import read_generic_csv
from cappuccino.data.readers.parquet import read_parquet_bars

COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zX": "xz", b"\x28\xb5\x2f\xfd": "zstd",
              b"PK\x03\x04": "zip"}  # fmt: skip
READERS: dict[str, Callable[..., RawBars]] = {
    "cryptodatadownload": read_cryptodatadownload,
    "csv": read_generic_csv,
    "parquet": read_parquet_bars,
}


def detect_format(path: Path) -> str:
    """``parquet`` by suffix, ``cryptodatadownload`` by header, else ``csv``."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "cryptodatadownload" if looks_like_cryptodatadownload(path) else "csv"


def read_bars(
    path: Path, *, fmt: str = "auto", on_malformed: OnMalformed = "error", **options: Any
) -> RawBars:
    """Read ``path`` with the reader named ``fmt`` (``auto`` detects it)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(str(path), value="a directory", expected="a CSV or Parquet file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    for sig, kind in COMPRESSED.items():
        if magic.startswith(sig):
            raise DataError(
                str(path),
                value=f"a {kind}-compressed file",
                expected=f"a plain CSV or Parquet file (decompress it first, e.g. {kind} -d)",
            )
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in READERS:
        raise ValueError(f"format: got {fmt!r}, expected auto or one of {sorted(READERS)}")
    if name != "parquet":
        options["on_malformed"] = on_malformed
    return READERS[name](path, **options)


__all__ = ["READERS", "RawBars", "detect_format", "read_bars"]
