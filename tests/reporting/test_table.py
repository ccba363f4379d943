"""One table type (rich, Markdown, HTML), one metric registry, one page base."""

from __future__ import annotations

import pytest
from rich.console import Console

from cappuccino.reporting.metrics import METRICS, format_value, units, view
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table


def test_views_come_from_the_one_registry_in_its_order() -> None:
    assert view("headline") == ("total_return", "sharpe", "max_drawdown", "turnover",
                                "fees_paid", "exposure")  # fmt: skip
    assert view("backtest")[:3] == ("total_return", "cagr", "sharpe")
    assert set(view("classifier")) == {"loss", "accuracy", "precision", "recall", "f1_pos",
                                       "roc_auc", "pr_auc"}  # fmt: skip
    assert "f1" in view("history") and "f1" not in view("classifier")
    assert format_value("total_return", 0.12345) == "12.35%"
    assert format_value("fees_paid", 1234.5) == "1,234" and format_value("cagr", None) == "n/a"
    assert format_value("unregistered", 3) == "3"
    assert "Sharpe (ann.): mean / std (ddof 1)" in units("headline")
    assert all(m.unit and m.label for m in METRICS.values())
    with pytest.raises(ValueError, match="metric view: got 'nope', expected one of"):
        view("nope")


def test_one_table_three_renderings_by_hand() -> None:
    t = Table.from_records(
        [{"policy": "a<b", "sharpe": 1.234, "cagr": None, "n": 1200},
         {"policy": "c|d", "sharpe": -0.5, "cagr": 0.1, "n": 7}],
        ["policy", "sharpe", "cagr", "n"], title="T", labels=True,
    )  # fmt: skip
    assert t.header == ("policy", "Sharpe (ann.)", "CAGR", "n")
    assert t.rows == (("a<b", "1.234", "n/a", "1,200"), ("c|d", "-0.500", "10.00%", "7"))
    assert t.markdown() == (
        "### T\n\n| policy | Sharpe (ann.) | CAGR | n |\n|---|---:|---:|---:|\n"
        "| a<b | 1.234 | n/a | 1,200 |\n| c\\|d | -0.500 | 10.00% | 7 |"
    )
    html = t.html()
    assert "<td>a&lt;b</td>" in html and '<th class="num">Sharpe (ann.)</th>' in html
    console = Console(width=200, record=True)
    console.print(t.rich())
    text = console.export_text()
    assert "Sharpe (ann.)" in text and "10.00%" in text and "1,200" in text
    with pytest.raises(ValueError, match="a row of 1 cells, 2 columns"):
        Table(title="x", header=("a", "b"), rows=(("1",),))


@pytest.mark.parametrize("page", ["backtest", "campaign", "compare", "study"])
def test_every_page_extends_the_shared_base(page: str) -> None:
    t = Table.from_cells(["a"], [["<1>"]])
    extra = {
        "backtest": {"verdict": None},
        "compare": {"verdicts": ["v1"]},
        "study": {"r": {"storage": "s", "direction": "maximize", "metric": "m", "kind": "rl",
                        "counts": {}, "best_trial": 0, "best_value": 1.0, "best_bundle": "b"},
                  "history": "", "importance": ""},
        "campaign": {},
    }[page]  # fmt: skip
    html = render_page(f"{page}.html.j2", title="Page <x>", context={"k": "v"}, intro=["hello"],
                       sections=[Section(t, "Heading", "text")], units=["u1"], **extra)  # fmt: skip
    assert html.startswith("<!doctype html>") and "th.num, td.num" in html  # the base's style
    assert "<h1>Page &lt;x&gt;</h1>" in html and "<dt>k</dt><dd>v</dd>" in html
    assert "<h2>Heading</h2>" in html and "<td>&lt;1&gt;</td>" in html and "<li>u1</li>" in html
