"""One table type for every output: a terminal (rich), Markdown and HTML from one object.

Cells are formatted once, when the table is built: a column named after a registered
metric (:mod:`cappuccino.reporting.metrics`) takes its format and label, any other value
its natural text (floats to 4 significant digits, integers with thousands separators,
None as ``n/a``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from rich.table import Table as RichTable

from cappuccino.reporting.metrics import METRICS


def cell(value: Any, column: str | None = None) -> str:
    """One value as text: a number through the metric registry when ``column`` is a metric
    (a column may share a metric's name and hold text: a campaign's ``loss`` is its name)."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if column is not None and column in METRICS and (numeric or value is None):
        return METRICS[column].format(value)
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, str) and len(value) > 25 and value[4:5] == "-" and "T" in value:
        return value[:16].replace("T", " ")  # an ISO timestamp, to the minute
    return str(value)


@dataclass(frozen=True)
class Table:
    """A titled grid of text cells; ``numeric`` marks right-aligned columns."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.header):
                raise ValueError(f"table {self.title!r}: a row of {len(r)} cells, "
                                 f"{len(self.header)} columns")  # fmt: skip

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        title: str = "",
        labels: bool = False,
        notes: Sequence[str] = (),
    ) -> Table:
        """Rows from dicts; ``columns`` default to the first record's keys. ``labels``: head
        a metric column with its registered label instead of its name."""
        cols = list(columns or (records[0].keys() if records else []))
        head = tuple(METRICS[c].label if labels and c in METRICS else c for c in cols)
        first = records[0] if records else {}
        numeric = tuple(
            c in METRICS or (isinstance(first.get(c), int | float)
                             and not isinstance(first.get(c), bool))
            for c in cols
        )  # fmt: skip
        rows = tuple(tuple(cell(r.get(c), c) for c in cols) for r in records)
        return cls(title=title, header=head, rows=rows, numeric=numeric, notes=tuple(notes))

    @classmethod
    def from_cells(
        cls, header: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = ""
    ) -> Table:
        """Rows of values already in column order (formatted with :func:`cell`)."""
        return cls(
            title=title, header=tuple(header),
            rows=tuple(tuple(v if isinstance(v, str) else cell(v) for v in r) for r in rows),
        )  # fmt: skip

    def _right(self, i: int) -> bool:
        return bool(self.numeric[i]) if i < len(self.numeric) else i > 0

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table (title as a heading when there is one)."""
        align = ["---:" if self._right(i) else "---" for i in range(len(self.header))]
        lines = [f"### {self.title}", ""] if self.title else []
        lines += ["| " + " | ".join(self.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(lines)

    def html(self) -> str:
        """An escaped ``<table>`` (the shared page template styles it)."""

        def td(tag: str, i: int, text: str) -> str:
            cls = ' class="num"' if self._right(i) else ""
            return f"<{tag}{cls}>{escape(text)}</{tag}>"

        head = "".join(td("th", i, h) for i, h in enumerate(self.header))
        body = "".join("<tr>" + "".join(td("td", i, c) for i, c in enumerate(r)) + "</tr>"
                       for r in self.rows)  # fmt: skip
        thead = f"<thead><tr>{head}</tr></thead>" if any(self.header) else ""
        return f"<table>{thead}<tbody>{body}</tbody></table>"

    def rich(self) -> RichTable:
        t = RichTable(title=self.title or None, show_lines=False, show_header=any(self.header))
        for i, h in enumerate(self.header):
            t.add_column(h, justify="right" if self._right(i) else "left")
        for r in self.rows:
            t.add_row(*r)
        return t
