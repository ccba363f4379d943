"""Model registry: name -> (config class, builder). Every entry honours the window contract
of :mod:`cappuccino.models.windows`: ``(x (B, T, F), asset (B,)) -> logits (B,)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from cappuccino.models.windows import (
    CNNLSTM,
    CNNLSTMConfig,
    FTTransformerClassifier,
    FTTransformerConfig,
    ModelConfig,
    PriceActionTransformer,
    PriceActionTransformerConfig,
    RecurrentAttention,
    RecurrentAttentionConfig,
    WindowMLP,
    WindowMLPConfig,
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: type[ModelConfig]
    build: Callable[[Any, int, int, int], nn.Module]  # (cfg, n_features, window, n_assets)
    description: str
    defaults: dict[str, Any]


def _entry(name: str, config: type[ModelConfig], build: Callable[[Any, int, int, int], nn.Module],
           description: str, **defaults: Any) -> ModelEntry:  # fmt: skip
    return ModelEntry(name, config, build, description, defaults)


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        _entry(
            "mlp", WindowMLPConfig,
            lambda c, f, w, a: WindowMLP(n_features=f, window=w, n_assets=a, cfg=c),
            "flattened window + asset embedding -> MLP [256, 128, 64] (seed 004)",
        ),
        _entry(
            "lstm_attention", RecurrentAttentionConfig,
            lambda c, f, w, a: RecurrentAttention(n_features=f, n_assets=a, cfg=c, cell="lstm"),
            "LSTM 2x128 + 4-head self-attention + mean pooling + asset embedding (seed 004)",
        ),
        _entry(
            "gru_attention", RecurrentAttentionConfig,
            lambda c, f, w, a: RecurrentAttention(n_features=f, n_assets=a, cfg=c, cell="gru"),
            "GRU 2x64 + 2-head self-attention + mean pooling + asset embedding (seed 004)",
            hidden=64, heads=2,
        ),
        _entry(
            "cnn_lstm", CNNLSTMConfig,
            lambda c, f, w, a: CNNLSTM(n_features=f, n_assets=a, cfg=c),
            "2 x Conv1d(64, k=3) + batch norm + LSTM, last hidden state (seed 004)",
        ),
        _entry(
            "price_action_transformer", PriceActionTransformerConfig,
            lambda c, f, w, a: PriceActionTransformer(n_features=f, window=w, cfg=c),
            "linear -> 128, sinusoidal positions, 2 encoder layers x 4 heads, avg pool (seed 003)",
        ),
        _entry(
            "ft_transformer", FTTransformerConfig,
            lambda c, f, w, a: FTTransformerClassifier(n_features=f, window=w, n_assets=a, cfg=c),
            "FT-Transformer (rtdl_revisiting_models) over the flattened window, [CLS] -> logit",
        ),
    )
}  # fmt: skip


def model_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The validated config of model ``name``: its defaults updated by ``overrides``."""
    entry = get_model(name)
    return entry.config.model_validate({**entry.defaults, **(overrides or {})})


def get_model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model: got {name!r}, expected one of {sorted(MODELS)}") from None


def build_model(
    name: str,
    *,
    n_features: int,
    window: int,
    n_assets: int = 1,
    overrides: dict[str, Any] | None = None,
) -> nn.Module:
    """Build model ``name`` for windows ``(window, n_features)`` of ``n_assets`` assets."""
    for field, value in (("n_features", n_features), ("window", window), ("n_assets", n_assets)):
        if value < 1:
            raise ValueError(f"{field}: got {value}, expected >= 1")
    cfg = model_config(name, overrides)
    return get_model(name).build(cfg, n_features, window, n_assets)
