"""Supervised training with its test-period signal backtest, scoring (``cappuccino
predict``) and supervised ensembles: the composition of training, bundles and evaluation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cappuccino.bundles.ensemble import load_supervised_members
from cappuccino.bundles.supervised import SupervisedBundle, load_bundle
from cappuccino.config.supervised import SignalBacktestSettings, SupervisedConfig
from cappuccino.data.schema import Timeframe
from cappuccino.datasets.market import MarketArrays, build_market_arrays
from cappuccino.datasets.windows import WindowData, inference_windows
from cappuccino.features.labels import ForwardReturnLabel, LabelSpec, parse_label
from cappuccino.features.sets import get_feature_set
from cappuccino.features.table import build_feature_table
from cappuccino.policies import SignalPolicy
from cappuccino.reporting.metrics import view
from cappuccino.tracking import Tracker
from cappuccino.training.supervised import predict_split
from cappuccino.training.supervised_run import AfterFit, train_supervised
from cappuccino.workflows.backtest import Evaluation, evaluate, write_evaluation


def train(
    cfg: SupervisedConfig,
    tracker: Tracker | None = None,
    bars: pl.DataFrame | None = None,
    market: MarketArrays | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`~cappuccino.training.supervised_run.train_supervised`, then (with
    ``cfg.backtest.enabled``) the backtest of the model's test-period signals, logged in
    the same tracked run. ``kwargs`` go to ``train_supervised``."""
    return train_supervised(cfg, tracker, bars, after_fit=signal_backtest(cfg, market), **kwargs)


def signal_backtest(cfg: SupervisedConfig, market: MarketArrays | None = None) -> AfterFit | None:
    """The after-fit step of ``cfg``: the signal backtest over the test split (None when the
    backtest is off)."""
    if not cfg.backtest.enabled:
        return None

    def run(bundle: Path, data: WindowData, bars: pl.DataFrame
            ) -> tuple[dict[str, Any], dict[str, float], Path] | None:  # fmt: skip
        if "test" not in data.report["splits"]:
            return None
        test = data.report["splits"]["test"]
        ev = backtest_signals(
            load_bundle(bundle), bars, cfg.backtest,
            start=test["start"], end=test["end"], market=market,
        )  # fmt: skip
        out = cfg.output_dir / "backtest"
        section = {
            **backtest_summary(ev),
            "outputs": write_evaluation(ev, out, report=out / "report.html"),
        }
        metrics = {f"backtest_{k}": float(ev.policy.metrics[k]) for k in view("headline")}
        return section, metrics, out

    return run


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
        market, policy, start=start, end=end, rules=settings.market,
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
        "policy": {k: ev.policy.metrics[k] for k in view("headline")},
        "benchmarks": {b.name: {k: b.metrics[k] for k in view("headline")} for b in ev.benchmarks},
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


def predict_ensemble(
    path: Path, bars: pl.DataFrame, *, allow_version_mismatch: bool = False
) -> pl.DataFrame:
    """Mean probability of a supervised ensemble's members on every (timestamp, symbol)
    all of them score; ``signal`` at the mean of their thresholds."""
    members = load_supervised_members(path, allow_version_mismatch=allow_version_mismatch)
    frames = [
        predict(b, bars).select("timestamp", "symbol", pl.col("prob").alias(f"p{i}"))
        for i, b in enumerate(members)
    ]
    joined = frames[0]
    for f in frames[1:]:
        joined = joined.join(f, on=["timestamp", "symbol"], how="inner")
    cols = [f"p{i}" for i in range(len(frames))]
    threshold = sum(float(b.meta["threshold"]) for b in members) / len(members)
    return (
        joined.with_columns(pl.mean_horizontal(cols).alias("prob"))
        .select("timestamp", "symbol", "prob")
        .with_columns((pl.col("prob") >= threshold).alias("signal"))
        .sort(["timestamp", "symbol"])
    )
