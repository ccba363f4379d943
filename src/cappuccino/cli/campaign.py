"""``cappuccino campaign ...``: the baseline comparison of every architecture."""

from __future__ import annotations

from pathlib import Path

import typer

from cappuccino.cli.render import (
    JSON_HELP,
    console,
    emit_json,
    fail_cleanly,
    progress,
    set_help,
    table,
)
from cappuccino.config.supervised import SupervisedConfig

app = typer.Typer(no_args_is_help=True, help="Campaigns over many models.")


@app.command("baseline")
@fail_cleanly
def baseline(
    config: Path | None = typer.Option(None, "--config", help="shared YAML run config"),
    overrides: list[str] = typer.Option(
        [], "--set", help=set_help(SupervisedConfig, "train.epochs=5")
    ),
    models: str = typer.Option(
        "mlp,lstm_attention,gru_attention,cnn_lstm,price_action_transformer,ft_transformer",
        "--models",
        help="comma-separated model names",
    ),
    configs_dir: Path = typer.Option(
        Path("configs/train"),
        "--configs",
        help="per-model baseline YAML (model params, features, lookback, loss) over --config",
    ),
    seeds: str = typer.Option("0", "--seeds", help="comma-separated seeds"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train every model on the same split and seeds; write the comparison table."""
    from cappuccino.config import load_config
    from cappuccino.config.loading import read_yaml
    from cappuccino.models.registry import get_model
    from cappuccino.tracking import MlflowTracker
    from cappuccino.workflows.campaign import campaign_configs, run_campaign, write_campaign

    base = load_config(SupervisedConfig, config, overrides)
    own: dict[str, dict[str, object]] = {}
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        get_model(name)  # validates the name
        path = configs_dir / f"{name}.yaml"
        own[name] = {}
        if path.is_file():
            load_config(SupervisedConfig, path)  # unknown keys: named, with a suggestion
            own[name] = read_yaml(path) or {}
    configs = campaign_configs(base, own, overrides)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: got {seeds!r}, expected comma-separated integers") from None
    tracker = MlflowTracker(base.tracking_uri, base.experiment) if base.tracking_uri else None
    with progress(f"training {len(configs)} models x {len(seed_list)} seeds", not as_json):
        rows = run_campaign(configs, seeds=seed_list, tracker=tracker)
    context = {
        "description": f"label {base.windows.label}; split {base.windows.fractions} of the "
        f"bars (the same dates for every model) with a {base.windows.embargo_bars}-bar "
        f"embargo; each model with its own baseline config from {configs_dir}",
        "seeds": seed_list,
    }
    paths = write_campaign(rows, base.output_dir, context=context)
    if as_json:
        emit_json({"rows": rows, "outputs": paths})
        return
    cols = [
        "model",
        "parameters",
        "epochs",
        "test_roc_auc",
        "test_pr_auc",
        "test_f1_pos",
        "seconds",
    ]
    table(rows, "baseline campaign (test, means over seeds)", cols)
    console.print(f"outputs: {', '.join(paths.values())}")
