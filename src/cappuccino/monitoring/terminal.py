"""The terminal view of a snapshot (``cappuccino monitor``): the same tables as the page."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from cappuccino.monitoring.views import all_tables

_STYLE = {"ok": "bold green", "amber": "bold yellow", "red": "bold red"}


def renderable(snap: dict[str, Any]) -> Group:
    """A banner with the overall status and its reasons, then every section's tables."""
    head = Text(f"{snap['status'].upper()} at {snap['at'][:19]} UTC", style=_STYLE[snap["status"]])
    for r in snap["reasons"]:
        head.append(f"\n{r}", style="default")
    parts: list[Any] = [Panel(head, title="cappuccino monitor", expand=False)]
    for heading, tables in all_tables(snap):
        parts.append(Text(heading, style="bold underline"))
        for t in tables:
            parts.append(t.rich())
            parts += [Text(n, style="dim") for n in t.notes]
    return Group(*parts)
