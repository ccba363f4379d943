"""``cappuccino rl ...``: train PPO on a store and write a policy bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from cappuccino.cli.render import console, emit_json, fail_cleanly, progress, table

app = typer.Typer(no_args_is_help=True, help="Reinforcement learning: PPO on the trading env.")


@app.command("train")
@fail_cleanly
def train(
    config: Path | None = typer.Argument(None, help="YAML run config (defaults embedded)"),
    overrides: list[str] = typer.Option(
        [], "--set", help="override, e.g. ppo.total_timesteps=20000"
    ),
    as_json: bool = typer.Option(False, "--json"),
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
