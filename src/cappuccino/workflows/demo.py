"""The main job on the bundled sample (``make demo``): every capability joins it.

sample -> import/validate into a Parquet store -> gap fill -> features -> labels
-> lookahead audit -> a window classifier trained for a few epochs (tracked in MLflow)
-> PPO on the training period -> out-of-sample backtest against
the benchmarks (degenerate-policy verdict) -> HTML report. Writes under
``output_dir``: the store, the feature table, the resolved config, a JSON summary and
``rl/`` (bundle, backtest metrics and frames, ``report.html``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from cappuccino.bundles import load_policy
from cappuccino.config.demo import DemoConfig
from cappuccino.config.rl import CompareConfig, RLTrainConfig
from cappuccino.config.supervised import SupervisedConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.data.importing import ImportReport, import_files
from cappuccino.data.resample import resample_store
from cappuccino.data.sample import sample_path
from cappuccino.data.schema import Timeframe, resolve_symbols
from cappuccino.data.store import ParquetStore
from cappuccino.data.validate import fill_gaps
from cappuccino.datasets.market import build_market_arrays
from cappuccino.features.audit import AuditReport, audit_lookahead
from cappuccino.features.table import TableReport, build_feature_table
from cappuccino.reporting.metrics import view
from cappuccino.tracking import MlflowTracker
from cappuccino.training.rl.train import holdout_start, train_rl
from cappuccino.tuning.tune import tune
from cappuccino.utils.io import atomic_write_json, atomic_write_parquet
from cappuccino.utils.seeding import seed_everything
from cappuccino.workflows.backtest import evaluate, write_evaluation
from cappuccino.workflows.compare import compare
from cappuccino.workflows.supervised import signal_backtest
from cappuccino.workflows.supervised import train as train_supervised

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    imported: ImportReport
    table: TableReport
    audit: AuditReport
    summary_rows: list[dict[str, Any]]
    seconds: float
    rl: dict[str, Any] | None = None
    supervised: dict[str, Any] | None = None
    tune: dict[str, Any] | None = None
    compare: dict[str, Any] | None = None
    monitoring: dict[str, Any] | None = None
    resampled: list[dict[str, Any]] = field(default_factory=list)
    audits_also: list[AuditReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "import": self.imported.rows(),
            "resampled": self.resampled,
            "features": self.table.to_dict(),
            "audit": self.audit.to_dict(),
            "audit_also": [a.to_dict() for a in self.audits_also],
            "summary": self.summary_rows,
            "supervised": self.supervised,
            "rl": self.rl,
            "tune": self.tune,
            "compare": self.compare,
            "monitoring": self.monitoring,
            "seconds": round(self.seconds, 3),
        }


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the main job; see the module docstring."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.model_dump(mode="json"))
    store = ParquetStore(cfg.store_path)
    log.info("importing the bundled sample into %s", store.root)
    imported = import_files(
        [sample_path()],
        store,
        timeframe=cfg.data.tf,
        on_gap=cfg.data.on_gap,
        on_bad_ohlc=cfg.data.on_bad_ohlc,
        on_interval_mismatch=cfg.data.on_interval_mismatch,
        max_fill_bars=cfg.data.max_fill_bars,
        on_malformed=cfg.data.on_malformed,
    )
    symbols = resolve_symbols(cfg.data.symbols, store.symbols(cfg.data.tf))
    resampled = []
    for label in cfg.resample:
        target = Timeframe.parse(label)
        log.info("resampling %s to %s (complete buckets only)", cfg.data.tf, target)
        resampled += [r.to_dict() for r in resample_store(store, cfg.data.tf, target, symbols)]
    bars = store.read(cfg.data.tf, symbols)
    log.info(
        "building %s features and %d labels", cfg.features.feature_set, len(cfg.features.labels)
    )
    table, treport = build_feature_table(
        bars,
        cfg.features.feature_set,
        list(cfg.features.labels),
        timeframe=cfg.data.tf,
        drop_warmup=cfg.features.drop_warmup,
        align=cfg.features.align,
    )
    atomic_write_parquet(out / "features.parquet", table)
    audit_bars, _ = fill_gaps(bars.filter(pl.col("symbol").is_in(symbols[:3])), cfg.data.tf)
    audits = []
    for name in (cfg.features.feature_set, *cfg.audit_also):
        log.info("auditing %s for lookahead at %d cut points", name, cfg.features.audit_cuts)
        audits.append(audit_lookahead(audit_bars, name, n_cuts=cfg.features.audit_cuts,
                                      seed=cfg.seed))  # fmt: skip
    audit, *also = audits
    rows = []
    for u in imported.rows():
        s = u["symbol"]
        if s not in symbols:
            continue
        rates = treport.positive_rate.get(s, {})
        rows.append(
            {
                "symbol": s,
                "read": u["rows_read"],
                "stored": u["rows_stored"],
                "dupes": u["duplicates_removed"],
                "gaps": u["gaps"],
                "missing": u["missing_bars"],
                "filled": treport.filled_bars.get(s, 0),
                "warmup": treport.warmup_rows_dropped.get(s, 0),
                "no_label": treport.label_rows_dropped.get(s, 0),
                "rows": treport.rows_out.get(s, 0),
                **{f"P({k.removeprefix('label_')}>0)": round(v, 4) for k, v in rates.items()},
            }
        )
    supervised = _run_supervised(cfg, bars) if cfg.supervised.enabled else None
    rl = _run_rl(cfg, bars) if cfg.rl.enabled else None
    study = _run_tune(cfg, bars) if cfg.tune.enabled else None
    ab = _run_compare(cfg) if cfg.compare.enabled else None
    watched = _run_monitoring(cfg)
    result = DemoResult(
        imported=imported,
        table=treport,
        audit=audit,
        summary_rows=rows,
        seconds=time.perf_counter() - t0,
        rl=rl,
        supervised=supervised,
        tune=study,
        compare=ab,
        monitoring=watched,
        resampled=resampled,
        audits_also=also,
    )
    atomic_write_json(out / "summary.json", result.to_dict())
    return result


def _run_monitoring(cfg: DemoConfig) -> dict[str, Any]:
    """One status snapshot of what the demo wrote (its study, paper session and MLflow
    store): the static dashboard page ``dashboard.html``, the status report ``status.md``
    (with the A/B campaign's verdict when it ran), and the command of the live dashboard."""
    from cappuccino.monitoring import Monitor
    from cappuccino.monitoring import report as status_report
    from cappuccino.monitoring.dashboard import write_html

    out = cfg.output_dir
    db, state = out / "tune" / "optuna.db", out / "rl" / "paper" / "session.db"
    storages = [f"sqlite:///{db.resolve()}"] if db.is_file() else []
    states = [state] if state.is_file() else []
    uri = _tracking_uri(cfg)
    mlflow = uri if not uri.startswith("sqlite:///") or Path(uri[10:]).is_file() else None
    explained = out / "compare" / "explain" / "explain.json"
    explanations = [explained] if explained.is_file() else []
    m = Monitor(storages, states, mlflow, output_dir=out, explanations=explanations)
    try:
        snap = m.snapshot()
    finally:
        m.close()
    page = write_html(snap, out / "dashboard.html")
    compare_json = out / "compare" / "compare.json"
    ab = json.loads(compare_json.read_text()) if compare_json.is_file() else None
    r = status_report.build(snap.to_dict(), ab)
    report_md = status_report.write(r, out / "status.md")
    args = [*(f"--storage {u}" for u in storages), *(f"--state {p}" for p in states),
            *([f"--mlflow {mlflow}"] if mlflow else []),
            *(f"--explain {p}" for p in explanations)]  # fmt: skip
    return {"status": snap.status, "reasons": snap.reasons, "dashboard": str(page),
            "status_report": str(report_md), "next_actions": r["next_actions"],
            "snapshot_ms": snap.build_ms,
            "live_dashboard": "cappuccino dashboard " + " ".join(args)}  # fmt: skip


def _tracking_uri(cfg: DemoConfig) -> str:
    """The demo's MLflow store: the configured URI, else ``<output_dir>/mlflow.db``."""
    return cfg.supervised.tracking_uri or f"sqlite:///{(cfg.output_dir / 'mlflow.db').resolve()}"


def _run_tune(cfg: DemoConfig, bars: pl.DataFrame) -> dict[str, Any]:
    """A short study of the supervised model in ``<output_dir>/tune`` (SQLite storage,
    MLflow parent run with nested trials); a re-run starts a fresh study."""
    t, s = cfg.tune, cfg.supervised
    out = cfg.output_dir / "tune"
    db = out / "optuna.db"
    db.unlink(missing_ok=True)  # the demo's study is new each run: same seed, same trials
    uri = _tracking_uri(cfg)
    tune_cfg = TuneConfig.model_validate(
        {
            "seed": cfg.seed,
            "study_name": "demo",
            "output_dir": str(out),
            "storage": {"url": f"sqlite:///{db.resolve()}"},
            "n_trials": t.n_trials,
            "metric": t.metric,
            "direction": "maximize",
            "pruner": {"kind": "median", "n_startup_trials": t.n_startup_trials, "n_warmup_steps": 0},
            "supervised": {
                "seed": cfg.seed, "data": cfg.data.model_dump(mode="json"), "model": s.model,
                "feature_set": s.feature_set, "windows": s.windows.model_dump(mode="json"),
                "train": {**s.train.model_dump(mode="json"), "epochs": t.epochs},
                "backtest": {"enabled": False}, "tracking_uri": uri,
                "experiment": "cappuccino-demo", "phase": "demo",
            },
        }
    )  # fmt: skip
    log.info("tuning %s: %d trials", s.model, t.n_trials)
    first = tune(tune_cfg, bars=bars, after_fit=signal_backtest)
    if not t.warm_trials:
        return first
    warm_cfg = tune_cfg.model_copy(update={
        "study_name": "demo_warm", "n_trials": t.warm_trials, "warm_start": "demo",
        "narrow_from": "demo", "top_k": 3,
    })  # fmt: skip
    log.info("a second study warm-started from the first's top trials, ranges narrowed")
    warm = tune(warm_cfg, bars=bars, after_fit=signal_backtest)
    return first | {"warm": {k: warm[k] for k in (
        "study_name", "finished", "best_value", "best_trial", "warm_start", "narrowed_from")}}  # fmt: skip


def _run_compare(cfg: DemoConfig) -> dict[str, Any]:
    """A miniature A/B in ``<output_dir>/compare``: an encoder pretrained on the training
    period, then every arm and seed in this process."""
    c = cfg.compare
    ab = CompareConfig.model_validate({
        "seeds": c.seeds, "output_dir": str(cfg.output_dir / "compare"), "arms": c.arms,
        "rl": {"seed": cfg.seed, "data": {**cfg.data.model_dump(mode="json"),
                                          "store": str(cfg.store_path)},
               "split": cfg.rl.split.model_dump(mode="json"),
               "market": cfg.rl.market.model_dump(mode="json"),
               "env": c.env.model_dump(mode="json"), "ppo": c.ppo.model_dump(mode="json")},
        "encoder": c.encoder.model_dump(mode="json"), "pretrain": c.pretrain.model_dump(mode="json"),
        "eval_points": c.eval_points, "processes": False,
        "mappo": c.mappo.model_dump(mode="json"), "transfer_timeframe": c.transfer_timeframe,
    })  # fmt: skip
    log.info("A/B: %s x %d seeds, %d timesteps each", ", ".join(c.arms), len(c.seeds),
             c.ppo.total_timesteps)  # fmt: skip
    rep = compare(ab)
    return {k: rep.get(k) for k in ("arms", "comparisons", "verdicts", "warnings", "period",
                                    "encoder", "pretraining", "explanation", "transfer")} | {
        "report": str(cfg.output_dir / "compare" / "report.html")}  # fmt: skip


def _run_rl(cfg: DemoConfig, bars: pl.DataFrame) -> dict[str, Any]:
    """Train PPO on the training period, backtest it out of sample, write the report."""
    r = cfg.rl
    out = cfg.output_dir / "rl"
    train_cfg = RLTrainConfig(
        seed=cfg.seed,
        output_dir=out,
        data=cfg.data,
        split=r.split,
        market=r.market,
        env=r.env,
        ppo=r.ppo,
    )
    data = build_market_arrays(bars, r.env.feature_set, cfg.data.tf)
    log.info("training PPO for %d timesteps", r.ppo.total_timesteps)
    trained = train_rl(train_cfg, data=data)
    bundle = load_policy(trained.bundle)
    start = holdout_start(data, r.split)
    log.info("backtesting out of sample from %s", start.isoformat())
    ev = evaluate(data, bundle, start=start, end=r.split.test_end, benchmarks=r.benchmarks)
    paths = write_evaluation(ev, out / "backtest", out / "report.html")
    keys = view("headline")
    rows = [
        {"policy": x.name, **{k: x.metrics[k] for k in keys}} for x in [ev.policy, *ev.benchmarks]
    ]
    doc = {
        "train": trained.summary,
        "test_period": ev.context["period"],
        "metrics": rows,
        "degenerate": ev.verdict,
        "outputs": paths,
    }
    if r.paper_days > 0:
        doc["paper"] = _run_paper(cfg, data, trained.bundle, bundle)
    return doc


def _run_paper(cfg: DemoConfig, data: Any, path: Path, bundle: Any) -> dict[str, Any]:
    """The PPO bundle as a paper session: ``paper run --replay`` over the sample's last
    ``rl.paper_days`` days with the simulated broker, then ``paper status``, and the check that
    the session is the backtest of the same bars (fills and equity)."""
    from cappuccino.live.state import SessionState
    from cappuccino.monitoring.paper import session_status
    from cappuccino.workflows.paper import PaperSettings, build_runner

    end = data.datetime_at(data.n_bars - 1)
    start = end - timedelta(days=cfg.rl.paper_days)
    state = cfg.output_dir / "rl" / "paper" / "session.db"
    for old in state.parent.glob("session*"):  # a demo rerun starts a new session
        old.unlink()
    log.info("paper session (replay, simulated broker) %s .. %s", start.isoformat(),
             end.isoformat())  # fmt: skip
    runner = build_runner(PaperSettings(policy=str(path), broker="sim", state=state,
                                        store=cfg.store_path, replay=(start, end)))  # fmt: skip
    summary = runner.run()
    ev = evaluate(data, bundle, start=start, end=end, benchmarks=[])
    st = SessionState.reader(state)
    paper_eq = [r.equity for r in st.equity_rows()]
    fills = st.fills()
    st.engine.dispose()
    bt = ev.policy
    worst = max(abs(a / b - 1.0) for a, b in zip(paper_eq, bt.equity, strict=True))
    return {
        "state": str(state),
        "run": summary.to_dict(),
        "status": session_status(state),
        "equals_backtest": {
            "bars": len(paper_eq),
            "backtest_bars": int(bt.equity.size),
            "fills": len(fills),
            "backtest_trades": int(bt.trades_frame().height),
            "final_equity": paper_eq[-1],
            "backtest_final_equity": float(bt.equity[-1]),
            "max_relative_equity_difference": worst,
            "equal": len(paper_eq) == bt.equity.size
            and worst <= 1e-9
            and len(fills) == bt.trades_frame().height,
        },
    }


def _run_supervised(cfg: DemoConfig, bars: pl.DataFrame) -> dict[str, Any]:
    """Train one window classifier briefly; its run goes to a local MLflow store."""
    s = cfg.supervised
    uri = _tracking_uri(cfg)
    run_cfg = SupervisedConfig(
        seed=cfg.seed,
        output_dir=cfg.output_dir / "supervised",
        data=cfg.data,
        feature_set=s.feature_set,
        windows=s.windows,
        model=s.model,
        train=s.train,
        backtest=s.backtest,
        tracking_uri=uri,
        experiment="cappuccino-demo",
        phase="demo",
    )
    log.info("training %s for %d epochs", s.model, s.train.epochs)
    summary = train_supervised(run_cfg, MlflowTracker(uri, "cappuccino-demo"), bars=bars)
    return {**summary, "tracking_uri": uri}
