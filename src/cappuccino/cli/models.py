"""``cappuccino models ...``: the registered architectures and their parameter counts."""

from __future__ import annotations

import typer

from cappuccino.cli.render import JSON_HELP, emit_json, fail_cleanly, table

app = typer.Typer(no_args_is_help=True, help="Supervised window classifiers.")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Registered models with their descriptions."""
    from cappuccino.models.registry import MODELS

    rows = [{"name": e.name, "description": e.description} for e in MODELS.values()]
    if as_json:
        emit_json({"models": rows})
    else:
        table(rows, "models")


@app.command("describe")
@fail_cleanly
def describe(
    name: str = typer.Argument(..., help="registered model name"),
    overrides: list[str] = typer.Option([], "--set", help="config override, e.g. hidden=[64,32]"),
    n_features: int = typer.Option(14, "--features", help="features per bar"),
    window: int = typer.Option(64, "--window", help="bars per window"),
    n_assets: int = typer.Option(7, "--assets", help="assets (embedding rows)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Resolved config and trainable parameter count for one configuration."""
    from cappuccino.config.loading import apply_overrides
    from cappuccino.models import count_parameters
    from cappuccino.models.registry import build_model, model_config

    extra = apply_overrides({}, overrides)
    cfg = model_config(name, extra)
    model = build_model(
        name, n_features=n_features, window=window, n_assets=n_assets, overrides=extra
    )
    doc = {
        "name": name,
        "config": cfg.model_dump(),
        "input": {"window": window, "features": n_features, "assets": n_assets},
        "parameters": count_parameters(model),
    }
    if as_json:
        emit_json(doc)
    else:
        table([{"name": name, "parameters": doc["parameters"], **cfg.model_dump()}], "model")
