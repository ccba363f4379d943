"""The one error type for bad market data, with the location and the bad value."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: names the source (file:line or field), the bad value and what was expected.

    >>> str(DataError("bars.csv", line=12, column="close", value="abc", expected="a number"))
    "bars.csv:12: column 'close': got 'abc', expected a number"
    """

    def __init__(
        self,
        source: str,
        *,
        line: int | None = None,
        column: str | None = None,
        value: object = None,
        expected: str = "",
        detail: str = "",
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.value = value
        self.expected = expected
        where = source if line is None else f"{source}:{line}"
        parts = [where]
        if column is not None:
            parts.append(f"column {column!r}")
        what = []
        if value is not None:
            what.append(f"got {value!r}")
        if expected:
            what.append(f"expected {expected}")
        if detail:
            what.append(detail)
        parts.append(", ".join(what))
        super().__init__(": ".join(p for p in parts if p))
