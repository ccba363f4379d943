"""Bar intervals: ``Timeframe.parse("1h").ms == 3_600_000``, bars per year for annualising."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TF_RE = re.compile(r"^(\d+)([mhdw])$")


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar interval, e.g. ``Timeframe.parse("1h").ms == 3_600_000``."""

    ms: int

    def __post_init__(self) -> None:
        if self.ms <= 0:
            raise ValueError(f"timeframe must be positive, got {self.ms} ms")

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """Parse ``<n><unit>`` with unit m, h, d or w (ccxt's notation)."""
        m = _TF_RE.match(text.strip())
        if m is None:
            raise ValueError(f"timeframe: got {text!r}, expected <n><m|h|d|w> such as '1h'")
        return cls(int(m.group(1)) * _UNIT_MS[m.group(2)])

    @property
    def label(self) -> str:
        """Shortest exact ``<n><unit>`` spelling, e.g. ``1h`` rather than ``60m``."""
        for unit in ("w", "d", "h", "m"):
            size = _UNIT_MS[unit]
            if self.ms % size == 0:
                return f"{self.ms // size}{unit}"
        return f"{self.ms}ms"

    @property
    def periods_per_year(self) -> float:
        """Bars per 365-day year (crypto trades around the clock)."""
        return 365 * 86_400_000 / self.ms

    def __str__(self) -> str:
        return self.label
