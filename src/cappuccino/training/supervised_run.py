"""``cappuccino train``: store -> features + label -> windows -> model -> fit -> bundle, tracked.

Bundle layout (a directory; weights are a state dict loaded with ``weights_only=True``,
everything else JSON)::

    model.pt       state dict of the kept (best) epoch
    checkpoints/   epoch_NNN.pt: the top-k epochs by the early-stopping metric
    figures/       training_curves.png, confusion_test.png, roc_test.png, pr_test.png
    bundle.json    format, model name + resolved config, feature set + names, label,
                   lookback, symbols, scaler, threshold, val/test metrics, checkpoints,
                   resolved run config, environment, library versions, git commit
    history.json   one row per epoch
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from cappuccino.config.supervised import SignalBacktestSettings, SupervisedConfig
from cappuccino.data.schema import Timeframe
from cappuccino.data.store import ParquetStore
from cappuccino.datasets.market import MarketArrays, build_market_arrays
from cappuccino.datasets.windows import WindowData, build_windows
from cappuccino.evaluation.backtest import SignalPolicy
from cappuccino.evaluation.evaluate import Evaluation, evaluate, write_evaluation
from cappuccino.evaluation.figures import classifier_figures
from cappuccino.features.labels import ForwardReturnLabel, LabelSpec, parse_label
from cappuccino.features.scaling import Scaler
from cappuccino.features.sets import get_feature_set
from cappuccino.features.table import build_feature_table
from cappuccino.models import count_parameters
from cappuccino.models.registry import build_model, model_config
from cappuccino.tracking import Tracker, run_name
from cappuccino.training.bundle_io import (
    read_meta,
    read_state_dict,
    write_history,
    write_state_dict,
)
from cappuccino.training.supervised import FitResult, fit
from cappuccino.utils.devices import default_device
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import environment, git_commit, library_versions
from cappuccino.utils.seeding import seed_everything

log = logging.getLogger(__name__)
FORMAT = "cappuccino.supervised-bundle/1"


def binary_target(table: pl.DataFrame, spec: LabelSpec) -> tuple[pl.DataFrame, str]:
    """The 0/1 target of a label spec: ``label_buy_<h>`` for a forward-return label; for a
    triple-barrier label, 1 when the take-profit barrier is hit first (``label_tb_hit_<h>``)."""
    if isinstance(spec, ForwardReturnLabel):
        return table, spec.columns[1]
    src = spec.columns[0]
    name = src.replace("label_tb_", "label_tb_hit_")
    return table.with_columns((pl.col(src) == 1).cast(pl.Float64).alias(name)), name


def feature_table(cfg: SupervisedConfig, bars: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The feature table of ``cfg.feature_set`` with the binary target of ``cfg.windows.label``
    (warm-up rows dropped) and the target's column name. Depends only on the feature set,
    the label and the bars, so a study builds it once for all its trials."""
    spec = parse_label(cfg.windows.label)
    table, _ = build_feature_table(
        bars, cfg.feature_set, [spec], timeframe=cfg.data.tf, drop_warmup=True
    )
    return binary_target(table, spec)


def windows_from_table(
    cfg: SupervisedConfig, table: pl.DataFrame, target: str, device: torch.device
) -> WindowData:
    return build_windows(
        table,
        feature_names=list(get_feature_set(cfg.feature_set).columns),
        label=target,
        lookback=cfg.windows.lookback,
        timeframe=cfg.data.tf,
        fractions=cfg.windows.fractions,
        embargo_bars=cfg.windows.embargo_bars,
        scaler=cfg.windows.scaler,
        device=device,
        split_starts_ms=cfg.windows.split_starts_ms(),
    )


def prepare_windows(cfg: SupervisedConfig, bars: pl.DataFrame, device: torch.device) -> WindowData:
    return windows_from_table(cfg, *feature_table(cfg, bars), device)


@dataclass(frozen=True)
class SupervisedBundle:
    path: Path
    model: nn.Module
    scaler: Scaler
    meta: dict[str, Any]

    def check(self, *, feature_names: list[str], lookback: int) -> None:
        """Raise ``ValueError`` naming the mismatch with data to be scored."""
        if list(self.meta["feature_names"]) != list(feature_names):
            raise ValueError(
                f"bundle {self.path}: features {self.meta['feature_names']} in the bundle, "
                f"{feature_names} in the data"
            )
        if int(self.meta["lookback"]) != lookback:
            raise ValueError(
                f"bundle {self.path}: lookback {self.meta['lookback']} in the bundle, {lookback} asked"
            )


def save_bundle(
    path: Path, model: nn.Module, *, cfg: SupervisedConfig, data: WindowData, result: FitResult
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_state_dict(path / "model.pt", model)
    ckpt_dir = path / "checkpoints"
    checkpoints: list[dict[str, Any]] = []
    for c in result.checkpoints:
        name = f"epoch_{c.epoch:03d}.pt"
        write_state_dict(ckpt_dir / name, c.state)
        checkpoints.append({"epoch": c.epoch, "value": c.value, "file": f"checkpoints/{name}"})
    kept = {f"epoch_{c.epoch:03d}.pt" for c in result.checkpoints}
    for old in ckpt_dir.glob("epoch_*.pt"):  # a previous run's in the same directory
        if old.name not in kept:
            old.unlink()
    figures: dict[str, str] = {}
    if "test" in result.predictions:
        prob, y = result.predictions["test"]
        written = classifier_figures(
            path / "figures", history=result.history, best_epoch=result.best_epoch,
            y=y, prob=prob, threshold=result.threshold,
        )  # fmt: skip
        figures = {k: str(v.relative_to(path)) for k, v in written.items()}
    meta = {
        "format": FORMAT,
        "model": cfg.model,
        "model_params": model_config(cfg.model, cfg.model_config_).model_dump(),
        "parameters": count_parameters(model),
        "feature_set": cfg.feature_set,
        "feature_names": list(data.feature_names),
        "label": {"spec": cfg.windows.label, "column": data.label},
        "lookback": data.lookback,
        "symbols": list(data.symbols),
        "timeframe": cfg.data.tf.label,
        "scaler": data.scaler.to_dict(),
        "threshold": result.threshold,
        "best_epoch": result.best_epoch,
        "checkpoint_metric": cfg.train.early_stopping.metric,
        "checkpoints": checkpoints,
        "figures": figures,
        "metrics": {"val": result.val, "test": result.test},
        "data": data.report,
        "config": cfg.model_dump(mode="json", by_alias=True),
        "environment": environment(),
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    atomic_write_json(path / "bundle.json", meta)
    write_history(path / "history.json", result.history)
    return path


def load_bundle(path: Path, epoch: int | None = None) -> SupervisedBundle:
    """The bundle's kept model, or with ``epoch`` one of its top-k checkpoints."""
    meta = read_meta(path, FORMAT, "model bundle")
    weights = Path(path) / "model.pt"
    if epoch is not None:
        files = {int(c["epoch"]): c["file"] for c in meta.get("checkpoints", [])}
        if epoch not in files:
            raise ValueError(
                f"bundle {path}: no checkpoint of epoch {epoch}; kept: {sorted(files)}"
            )
        weights = Path(path) / files[epoch]
    model = build_model(
        meta["model"],
        n_features=len(meta["feature_names"]),
        window=int(meta["lookback"]),
        n_assets=len(meta["symbols"]),
        overrides=meta["model_params"],
    )
    model.load_state_dict(read_state_dict(weights))
    model.eval()
    return SupervisedBundle(Path(path), model, Scaler.from_dict(meta["scaler"]), meta)


def train_supervised(
    cfg: SupervisedConfig,
    tracker: Tracker | None = None,
    bars: pl.DataFrame | None = None,
    market: MarketArrays | None = None,
    *,
    data: WindowData | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    parent_run: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model``; returns the JSON summary (run id, bundle, best epoch, metrics,
    and with ``cfg.backtest.enabled`` the backtest of its test-period signals).

    Many runs over the same bars (a campaign, a study) pass what they share: ``market``
    (the market arrays of ``bars``) and ``data`` (windows built from ``bars`` for this
    config). ``on_epoch`` sees each epoch's history row after it is tracked (a study
    reports and prunes there); ``parent_run`` nests the tracked run under another.
    """
    seed_everything(cfg.seed)
    device = default_device()
    if bars is None:
        bars = ParquetStore(cfg.data.store).read_universe(cfg.data.tf, cfg.data.symbols)
    if data is None:
        data = prepare_windows(cfg, bars, device)
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        n_features=len(data.feature_names),
        window=data.lookback,
        n_assets=len(data.symbols),
        overrides=cfg.model_config_,
    )
    name = run_name(cfg.phase, "supervised", cfg.model, cfg.variant)
    tags = {
        "phase": cfg.phase,
        "experiment_type": "supervised",
        "model_type": cfg.model,
        "dataset_version": f"{cfg.feature_set}:{data.report['splits']['train']['start']}..."
        f"{data.report['splits']['test']['end']}",
    }

    def run(run_id: str | None) -> dict[str, Any]:
        if tracker is not None:
            tracker.log_params(cfg.model_dump(mode="json", by_alias=True))
            versions = library_versions(("mlflow-skinny", "rtdl-revisiting-models"))
            tracker.log_params({"env": environment(), "packages": versions})
            tracker.set_tags(
                {"git_commit": str(git_commit()), "cuda": str(torch.cuda.is_available())}
            )
            tracker.log_params(
                {f"data.{s}.{k}": v for s, d in data.report["splits"].items()
                 for k, v in d.items() if k in ("rows", "windows", "positive_rate")}
            )  # fmt: skip

        def step(row: dict[str, float]) -> None:
            if tracker is not None:
                tracker.log_metrics(row, step=int(row["epoch"]))
            if on_epoch is not None:
                on_epoch(row)

        result = fit(model, data, cfg.train, seed=cfg.seed, on_epoch=step)
        bundle = save_bundle(cfg.output_dir / "bundle", model, cfg=cfg, data=data, result=result)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "run_name": name,
            "bundle": str(bundle),
            "model": cfg.model,
            "parameters": count_parameters(model),
            "best_epoch": result.best_epoch,
            "best_metric": {
                "name": cfg.train.early_stopping.metric,
                "value": result.history[result.best_epoch - 1][cfg.train.early_stopping.metric]
                if result.best_epoch
                else None,
            },
            "epochs_run": len(result.history),
            "threshold": result.threshold,
            "val": result.val,
            "test": result.test,
            "positive_rate": {s: d["positive_rate"] for s, d in data.report["splits"].items()},
            "windows": {s: d["windows"] for s, d in data.report["splits"].items()},
            "seconds": round(result.seconds, 2),
        }
        final = {f"final_{s}_{k}": v for s in ("val", "test")
                 for k, v in summary[s].items() if isinstance(v, float)}  # fmt: skip
        if cfg.backtest.enabled and "test" in data.report["splits"]:
            test = data.report["splits"]["test"]
            ev = backtest_signals(
                load_bundle(bundle), bars, cfg.backtest,
                start=test["start"], end=test["end"], market=market,
            )  # fmt: skip
            out = cfg.output_dir / "backtest"
            summary["backtest"] = {
                **backtest_summary(ev),
                "outputs": write_evaluation(ev, out, report=out / "report.html"),
            }
            final |= {f"backtest_{k}": float(ev.policy.metrics[k]) for k in BACKTEST_KEYS}
        if tracker is not None:
            tracker.log_metrics(final, step=len(result.history))
            tracker.log_artifact(bundle, "bundle")
            if "backtest" in summary:
                tracker.log_artifact(cfg.output_dir / "backtest", "backtest")
        return summary

    if tracker is None:
        return run(None)
    with tracker.start_run(name, tags, parent=parent_run) as run_id:
        return run(run_id)


BACKTEST_KEYS = ("total_return", "sharpe", "max_drawdown", "turnover", "exposure", "fees_paid")
BACKTEST_UNITS = (
    "returns and drawdown: fractions of equity; sharpe: mean/std (ddof 1) of per-bar simple "
    "returns x sqrt(bars per year), risk-free 0; turnover: traded notional / mean equity per "
    "year; exposure: mean invested share; fees_paid: quote currency"
)


def label_horizon(spec: LabelSpec) -> int:
    """Bars the label looks ahead: the forward horizon or the triple barrier's max holding."""
    return spec.horizon if isinstance(spec, ForwardReturnLabel) else spec.max_holding


def backtest_signals(
    bundle: SupervisedBundle,
    bars: pl.DataFrame,
    settings: SignalBacktestSettings,
    *,
    start: datetime | str,
    end: datetime | str,
    market: MarketArrays | None = None,
) -> Evaluation:
    """Trade ``bundle``'s buy signals (decisions from ``start`` to ``end``) through the
    market core (:class:`~cappuccino.evaluation.backtest.SignalPolicy`: equal slots, held
    ``settings.hold_bars``, default the label's horizon), beside the benchmarks over the
    same bars and under the same rules; with the degenerate-policy verdict."""
    meta = bundle.meta
    tf = Timeframe.parse(meta["timeframe"])
    if market is None:
        market = build_market_arrays(
            bars.filter(pl.col("symbol").is_in(meta["symbols"])), meta["feature_set"], tf
        )
    since = datetime.fromisoformat(start) if isinstance(start, str) else start
    preds = predict(bundle, bars, since=since)
    hold = settings.hold_bars or label_horizon(parse_label(meta["label"]["spec"]))
    policy = SignalPolicy.from_predictions(meta["model"], preds, market.symbols, tf.ms, hold)
    ev = evaluate(
        market, policy, start=start, end=end, rules=settings.market.rules(),
        benchmarks=settings.benchmarks,
    )  # fmt: skip
    ev.context.update(
        {"bundle": str(bundle.path), "hold_bars": hold, "threshold": meta["threshold"],
         "windows_scored": preds.height, "signals": int(preds["signal"].sum())}
    )  # fmt: skip
    return ev


def backtest_summary(ev: Evaluation) -> dict[str, Any]:
    """The headline numbers of a signal backtest, with their units."""
    return {
        "period": ev.context["period"],
        "hold_bars": ev.context["hold_bars"],
        "signals": ev.context["signals"],
        "policy": {k: ev.policy.metrics[k] for k in BACKTEST_KEYS},
        "benchmarks": {b.name: {k: b.metrics[k] for k in BACKTEST_KEYS} for b in ev.benchmarks},
        "degenerate": ev.verdict,
        "units": BACKTEST_UNITS,
    }


def predict(
    bundle: SupervisedBundle,
    bars: pl.DataFrame,
    *,
    timeframe: str | None = None,
    since: datetime | None = None,
) -> pl.DataFrame:
    """Score every valid window of ``bars`` with ``bundle``: one row per window end with
    ``timestamp`` (the window's last bar), ``symbol``, ``prob`` (sigmoid of the logit) and
    ``signal`` (``prob >= threshold`` chosen on validation). With ``since``, only windows
    ending at or after it are scored; the features still see all of ``bars``."""
    from cappuccino.datasets.windows import inference_windows
    from cappuccino.training.supervised import predict_split

    meta = bundle.meta
    tf = Timeframe.parse(timeframe or meta["timeframe"])
    if tf.label != meta["timeframe"]:
        raise ValueError(
            f"timeframe {tf.label} asked, the bundle was trained on {meta['timeframe']}"
        )
    table, _ = build_feature_table(bars, meta["feature_set"], [], timeframe=tf, drop_warmup=True)
    features = list(get_feature_set(meta["feature_set"]).columns)
    bundle.check(feature_names=features, lookback=int(meta["lookback"]))
    split = inference_windows(
        table,
        feature_names=features,
        lookback=int(meta["lookback"]),
        timeframe=tf,
        scaler=bundle.scaler,
        symbols=tuple(meta["symbols"]),
        since_ms=None if since is None else int(since.timestamp() * 1000),
    )
    logits, _ = predict_split(bundle.model, split, 4096)
    ends = split.ends.numpy()
    prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return pl.DataFrame(
        {
            "timestamp": split.time_ms.numpy()[ends],
            "symbol": np.asarray(meta["symbols"], dtype=object)[split.asset.numpy()[ends]].astype(
                str
            ),
            "prob": prob,
            "signal": prob >= float(meta["threshold"]),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
