"""``monitor --once`` (exit 1 when red, one JSON document), ``report status`` (Markdown and
HTML, the A/B verdict and the next actions), ``report runs`` (params that differ, final and
best metrics, curves) and ``dashboard --html``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app
from tests.monitoring.fixtures import make_session, make_study

runner = CliRunner()


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def test_monitor_once_exits_1_when_a_session_is_red_and_json_is_one_document(
    tmp_path: Path,
) -> None:
    url = make_study(tmp_path / "study.db")
    state = make_session(tmp_path / "s.db")  # its heartbeat is from 2021: red today
    res = runner.invoke(app, ["--log-level", "DEBUG", "monitor", "--once", "--json",
                              "--storage", url, "--state", str(state)])  # fmt: skip
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)  # exactly one document, whatever the log level
    assert doc["status"] == "red"
    assert doc["paper"][0]["health"]["reasons"][0].startswith("stale heartbeat")
    assert doc["studies"][0]["best"]["value"] == 0.5
    assert doc["machine"]["cpu"]["count"] >= 1
    ended = make_session(tmp_path / "e.db", ended=True)
    res = runner.invoke(app, ["monitor", "--once", "--state", str(ended)])
    assert res.exit_code == 0, res.stderr
    assert "stopped" in res.stdout and "980,000.00" in res.stdout


def test_report_status_gives_the_verdict_and_the_next_actions(tmp_path: Path) -> None:
    url = make_study(tmp_path / "study.db")
    state = make_session(tmp_path / "s.db", ended=True)
    compare = {
        "arms": {"mlp": {"sharpe": {"mean": 0.52, "low": 0.40, "high": 0.64, "n": 3.0},
                         "degenerate_runs": 0, "degenerate_matches": []},
                 "ft": {"sharpe": {"mean": 0.55, "low": 0.45, "high": 0.65, "n": 3.0},
                        "degenerate_runs": 3, "degenerate_matches": ["equal_weight:24"]}},
        "benchmarks": {"equal_weight:24": {"sharpe": 0.58}, "cash": {"sharpe": 0.0}},
        "verdicts": ["ft vs mlp: no significant difference at 0.05"], "warnings": [],
    }  # fmt: skip
    ab = tmp_path / "compare.json"
    ab.write_text(json.dumps(compare))
    out = tmp_path / "status.md"
    res = runner.invoke(app, ["report", "status", "--storage", url, "--state", str(state),
                              "--ab", str(ab), "--out", str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    acts = doc["next_actions"]
    # the fixture's heartbeats are from 2021: both running trials are stale today
    stale = [a for a in acts if a.startswith("Study ab: trial ")]
    assert [a.split(":")[1] for a in stale] == [" trial 7", " trial 8"]
    assert stale[0].endswith("limit 120 s (worker dead or hung): restart its workers "
                             "(`cappuccino tune --workers N`); Optuna fails and re-queues the "
                             "stale trial.")  # fmt: skip
    assert any(a.startswith("No arm of the A/B campaign beats equal_weight:24 (Sharpe 0.580")
               and a.endswith("do not deploy.") for a in acts)  # fmt: skip
    assert any("Arms ft have runs that trade like equal_weight:24" in a for a in acts)
    # 980,000 vs equal weight's 840,000: the session leads, so no "trails" action
    assert not any("trails equal weight" in a for a in acts)
    text = out.read_text()
    for needle in ("## Executive summary", "## Next actions", "A/B within the study: encoder",
                   "| True | 0.4000 |", "| False | 0.1500 |", "A/B campaign: arms out of sample",
                   "| ft | 0.550 | 0.450 to 0.650 | no | 3 |", "ValueError: boom"):  # fmt: skip
        assert needle in text, needle
    # the FT arm's mean 0.40 (n 3) vs MLP's 0.15 (n 2): Welch's t with Holm over one test
    from cappuccino.evaluation.compare import welch_t_test

    p = welch_t_test([0.3, 0.5, 0.4], [0.1, 0.2])["p"]
    verdict = "significantly higher" if p < 0.05 else "not significantly better"
    assert verdict in text
    html = tmp_path / "status.html"
    res = runner.invoke(app, ["report", "status", "--state", str(state), "--out", str(html)])
    assert res.exit_code == 0 and html.read_text().startswith("<!doctype html>")


def test_report_runs_puts_runs_side_by_side(
    tmp_path: Path, mlflow_store: Callable[[Path], str]
) -> None:
    from mlflow.tracking import MlflowClient

    uri = mlflow_store(tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cmp")
    ids = []
    for name, lr, losses in (("a", "0.001", [0.9, 0.5, 0.6]), ("b", "0.01", [0.8, 0.7, 0.4])):
        run = client.create_run(exp, run_name=name)
        rid = run.info.run_id
        client.log_param(rid, "lr", lr)
        client.log_param(rid, "seed", "0")
        for step, v in enumerate(losses):
            client.log_metric(rid, "val_loss", v, step=step)
            client.log_metric(rid, "val_pr_auc", 1 - v, step=step)
        client.set_terminated(rid)
        ids.append(rid)
    out = tmp_path / "runs.html"
    res = runner.invoke(app, ["report", "runs", "--tracking-uri", uri, "--runs", ",".join(ids),
                              "--out", str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["params_differ"] == {"lr": {"a": "0.001", "b": "0.01"}}
    assert doc["params_same"] == {"seed": "0"}
    m = doc["metrics"]
    assert m["val_loss"]["a"] == {"final": 0.6, "best": 0.5, "best_step": 1}  # a loss: minimum
    assert m["val_pr_auc"]["b"]["best"] == pytest.approx(0.6)  # otherwise the maximum
    assert m["val_pr_auc"]["b"]["best_step"] == 2
    text = out.read_text()
    assert "Parameters that differ" in text and text.count("plotly-graph-div") >= 2


def test_dashboard_html_writes_one_static_file(tmp_path: Path) -> None:
    url = make_study(tmp_path / "study.db")
    out = tmp_path / "d" / "dashboard.html"
    out.parent.mkdir()
    res = runner.invoke(app, ["dashboard", "--storage", url, "--html", str(out)])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith(f"dashboard snapshot: {out} (amber)")
    text = out.read_text()
    assert "Plotly" in text and "api/view" in text and '"study_name"' not in text[:1000]
