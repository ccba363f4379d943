"""HTML pages from one set of jinja2 templates with a shared base (``templates/``).

Every page (backtest, campaign, study, compare) extends ``base.html.j2``: title, a context
list, intro paragraphs, sections of :class:`~cappuccino.reporting.table.Table` objects,
figures (plotly, its JavaScript embedded once so the file works offline) and units.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2

from cappuccino.reporting.table import Table


@dataclass(frozen=True)
class Section:
    """A heading, a paragraph and a table."""

    table: Table
    heading: str = ""
    text: str = ""


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cappuccino.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_page(
    template: str,
    *,
    title: str,
    context: dict[str, Any] | None = None,
    intro: list[str] | None = None,
    sections: list[Section] | None = None,
    figures: list[str] | None = None,
    units: list[str] | None = None,
    **extra: Any,
) -> str:
    """``template`` (a page extending the base) rendered with the shared page parts."""
    return _env().get_template(template).render(
        title=title, context=context or {}, intro=intro or [], sections=sections or [],
        figures=figures or [], units=units or [], **extra,
    )  # fmt: skip
