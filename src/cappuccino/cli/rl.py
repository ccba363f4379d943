"""``cappuccino rl ...``: train PPO on a store and write a policy bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    STORE_HELP,
    console,
    emit_json,
    fail_cleanly,
    parse_time,
    progress,
    set_help,
    table,
)
from cappuccino.config.rl import CompareConfig, PretrainConfig, RLTrainConfig

app = typer.Typer(no_args_is_help=True, help="Reinforcement learning: PPO on the trading env.")


@app.command("train")
@fail_cleanly
def train(
    config: Path | None = typer.Argument(None, help="YAML run config (defaults embedded)"),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(RLTrainConfig, "ppo.total_timesteps=20000")
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train PPO on the training period; prints the bundle directory."""
    from cappuccino.config import load_config
    from cappuccino.config.rl import RLTrainConfig
    from cappuccino.training.rl.train import train_rl
    from cappuccino.utils.io import atomic_write_json

    cfg = load_config(RLTrainConfig, config, overrides)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.output_dir / "config.json", cfg.model_dump(mode="json"))
    with progress("training PPO", not as_json):
        result = train_rl(cfg)
    if as_json:
        emit_json(result.summary)
        return
    table(
        [result.summary],
        "PPO training",
        ["timesteps", "updates", "seconds", "device", "final_entropy"],
    )
    console.print(f"bundle: {result.bundle}")


@app.command("pretrain-encoder")
@fail_cleanly
def pretrain_encoder(
    config: Path | None = typer.Argument(None, help="YAML pretraining config (defaults embedded)"),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(PretrainConfig, "pretrain.epochs=5")
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Pretrain an FT state encoder by masked feature modelling on the training period."""
    from cappuccino.config import load_config
    from cappuccino.config.rl import PretrainConfig
    from cappuccino.datasets.market import load_market
    from cappuccino.training.rl.pretrain import pretrain_encoder as run

    cfg = load_config(PretrainConfig, config, overrides)
    data = load_market(cfg.data.store, cfg.data.timeframe, cfg.data.symbols, cfg.env.feature_set)
    with progress("pretraining the encoder", not as_json):
        result = run(cfg, data)
    if as_json:
        emit_json(result.summary)
        return
    table(
        [result.summary],
        "Masked feature modelling",
        ["best_epoch", "best_val_loss", "val_baseline_loss", "val_skill", "epochs_run",
         "parameters", "seconds"],
    )  # fmt: skip
    console.print(f"encoder: {result.path}")


@app.command("compare")
@fail_cleanly
def compare(
    config: Path | None = typer.Argument(None, help="YAML comparison config (defaults embedded)"),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(CompareConfig, "seeds=[0,1,2,3,4]")
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A/B of PPO arms (MLP, FT from scratch, FT pretrained frozen / fine-tuned / on another
    timeframe) and multi-agent arms (MAPPO, IPPO) over seeds, out of sample, with
    intervals, paired tests and a verdict."""
    from cappuccino.config import load_config
    from cappuccino.config.rl import CompareConfig
    from cappuccino.workflows.compare import compare as run

    cfg = load_config(CompareConfig, config, overrides)
    with progress(f"{len(cfg.arms)} arms x {len(cfg.seeds)} seeds", not as_json):
        report = run(cfg)
    if as_json:
        emit_json({k: v for k, v in report.items() if k != "runs"})
        return
    table(
        [{"arm": k, "sharpe": v["sharpe"]["mean"], "sharpe_low": v["sharpe"]["low"],
          "sharpe_high": v["sharpe"]["high"], "total_return": v["total_return"]["mean"],
          "seconds": v["seconds"], "degenerate": v["degenerate_runs"]}
         for k, v in report["arms"].items()],
        "A/B (out of sample)",
        ["arm", "sharpe", "sharpe_low", "sharpe_high", "total_return", "seconds", "degenerate"],
    )  # fmt: skip
    for v in report["verdicts"]:
        console.print(f"- {v}")
    console.print(f"report: {cfg.output_dir / 'report.html'}")


@app.command("explain")
@fail_cleanly
def explain(
    bundle: Path = typer.Argument(..., help="an RL bundle directory"),
    store: Path = typer.Option(..., "--store", help=STORE_HELP),
    start: str | None = typer.Option(
        None, "--start", help="first bar (ISO date; default: after the bundle's training period)"
    ),
    end: str | None = typer.Option(None, "--end", help="last bar (ISO date; default: the last)"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    max_bars: int | None = typer.Option(
        None, "--max-bars", help="average over this many bars, evenly spaced (default: all)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Which (asset, feature) and portfolio tokens drive the policy's actions over a
    period: [CLS] attention (FT-Transformer policies) and integrated gradients, as a table
    and asset x feature heat maps."""
    from cappuccino.workflows.explain import explain_bundle
    from cappuccino.workflows.explain import table as explain_table

    if max_bars is not None and max_bars < 1:
        raise ValueError(f"--max-bars: got {max_bars}, expected >= 1")
    with progress("explaining the policy", not as_json):
        doc = explain_bundle(bundle, store, out, start=parse_time(start, "--start"),
                             end=parse_time(end, "--end"), max_bars=max_bars)  # fmt: skip
    if as_json:
        emit_json(doc)
        return
    console.print(explain_table(doc, top=10).rich())
    console.print(f"outputs: {', '.join(doc['outputs'].values())}")
