"""Window classifiers: the shape contract shared by every supervised architecture.

Every model maps a window ``x`` ``(batch, time, features)`` (float32, scaled) and asset
ids ``asset`` ``(batch,)`` (int64, ``0 <= id < n_assets``) to **logits** ``(batch,)`` for
the positive class. Probabilities (``sigmoid``) are taken only at the edge. Configs are
frozen pydantic models with documented fields; unknown keys are rejected.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from cappuccino.models.mlp import MLP, activation


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowMLPConfig(ModelConfig):
    """``mlp`` (seed 004): flattened window + asset embedding -> hidden layers -> logit."""

    hidden: list[int] = Field([256, 128, 64], min_length=1, description="hidden widths")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each hidden layer")
    activation: str = Field("relu", description="relu or tanh")
    batch_norm: bool = Field(True, description="BatchNorm1d after each hidden linear layer")
    asset_embedding: int = Field(8, ge=0, description="asset embedding width (0: none)")


class WindowMLP(nn.Module):
    """``(B, T, F)`` flattened, concatenated with an asset embedding, through an MLP."""

    def __init__(
        self, *, n_features: int, window: int, n_assets: int, cfg: WindowMLPConfig
    ) -> None:
        super().__init__()
        activation(cfg.activation)  # validates the name
        self.embed = nn.Embedding(n_assets, cfg.asset_embedding) if cfg.asset_embedding else None
        self.net = MLP(
            in_dim=window * n_features + cfg.asset_embedding,
            hidden=cfg.hidden,
            out_dim=1,
            activation_name=cfg.activation,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

    def forward(self, x: Tensor, asset: Tensor) -> Tensor:
        h = x.flatten(1)
        if self.embed is not None:
            h = torch.cat([h, self.embed(asset)], dim=1)
        return self.net(h).squeeze(-1)  # type: ignore[no-any-return]


class RecurrentAttentionConfig(ModelConfig):
    """``lstm_attention`` / ``gru_attention`` (seed 004): recurrent encoder, multi-head
    self-attention with residual + layer norm, mean pooling over time, asset embedding, head."""

    hidden: int = Field(128, ge=1, description="recurrent hidden size")
    layers: int = Field(2, ge=1, description="stacked recurrent layers")
    heads: int = Field(4, ge=1, description="attention heads (must divide the attention width)")
    attention_dim: int | None = Field(
        None, ge=1, description="attention width: the recurrent states are projected to it "
        "before self-attention (None: the hidden size, no projection)",
    )  # fmt: skip
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout between layers and in the head")
    asset_embedding: int = Field(8, ge=0, description="asset embedding width (0: none)")
    head_hidden: int = Field(64, ge=1, description="width of the head's hidden layer")


class RecurrentAttention(nn.Module):
    """``(B, T, F)`` -> LSTM/GRU -> [Linear to the attention width] -> LayerNorm(h + MHA(h))
    -> mean over T -> [emb] -> head."""

    def __init__(
        self, *, n_features: int, n_assets: int, cfg: RecurrentAttentionConfig, cell: str
    ) -> None:
        super().__init__()
        width = cfg.attention_dim or cfg.hidden
        if width % cfg.heads:
            what = "attention_dim" if cfg.attention_dim else "hidden"
            raise ValueError(f"heads: got {cfg.heads}, expected a divisor of {what}={width}")
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(
            n_features,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.proj = nn.Linear(cfg.hidden, width) if cfg.attention_dim else None
        self.norm_in = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm_out = nn.LayerNorm(width)
        self.embed = nn.Embedding(n_assets, cfg.asset_embedding) if cfg.asset_embedding else None
        self.head = nn.Sequential(
            nn.Linear(width + cfg.asset_embedding, cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )

    def forward(self, x: Tensor, asset: Tensor) -> Tensor:
        h, _ = self.rnn(x)
        if self.proj is not None:
            h = self.proj(h)
        h = self.norm_in(h)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm_out(h + a).mean(dim=1)
        if self.embed is not None:
            h = torch.cat([h, self.embed(asset)], dim=1)
        return self.head(h).squeeze(-1)  # type: ignore[no-any-return]


class CNNLSTMConfig(ModelConfig):
    """``cnn_lstm`` (seed 004): two Conv1d + batch norm over time, an LSTM, its last hidden state."""

    filters: int = Field(64, ge=1, description="Conv1d output channels (both layers)")
    kernel: int = Field(3, ge=1, description="Conv1d kernel size (odd keeps the length)")
    lstm_hidden: int = Field(64, ge=1, description="LSTM hidden size")
    lstm_layers: int = Field(1, ge=1, description="LSTM layers")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the head")
    asset_embedding: int = Field(8, ge=0, description="asset embedding width (0: none)")


class CNNLSTM(nn.Module):
    """``(B, T, F)`` -> [Conv1d -> BN -> ReLU] x 2 -> LSTM -> last hidden -> [emb] -> logit."""

    def __init__(self, *, n_features: int, n_assets: int, cfg: CNNLSTMConfig) -> None:
        super().__init__()
        pad = cfg.kernel // 2
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, cfg.filters, cfg.kernel, padding=pad),
            nn.BatchNorm1d(cfg.filters),
            nn.ReLU(),
            nn.Conv1d(cfg.filters, cfg.filters, cfg.kernel, padding=pad),
            nn.BatchNorm1d(cfg.filters),
            nn.ReLU(),
        )
        self.lstm = nn.LSTM(
            cfg.filters, cfg.lstm_hidden, num_layers=cfg.lstm_layers, batch_first=True
        )
        self.embed = nn.Embedding(n_assets, cfg.asset_embedding) if cfg.asset_embedding else None
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.lstm_hidden + cfg.asset_embedding, 1)

    def forward(self, x: Tensor, asset: Tensor) -> Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T', filters)
        _, state = self.lstm(h)
        last = state[0][-1]  # final hidden state of the top layer
        if self.embed is not None:
            last = torch.cat([last, self.embed(asset)], dim=1)
        return self.out(self.drop(last)).squeeze(-1)  # type: ignore[no-any-return]


class PriceActionTransformerConfig(ModelConfig):
    """``price_action_transformer`` (seed 003): linear F -> d_model, sinusoidal positions,
    post-norm encoder layers, global average pooling, head d_model -> head_hidden -> 1,
    Xavier-uniform weights. No asset embedding (the seed model has none)."""

    d_model: int = Field(128, ge=1, description="token width")
    layers: int = Field(2, ge=1, description="encoder layers")
    heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    ff: int = Field(512, ge=1, description="feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the encoder and head")
    head_hidden: int = Field(64, ge=1, description="width of the head's hidden layer")


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """``(length, d_model)`` sine/cosine position table (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model)
    )
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe


class PriceActionTransformer(nn.Module):
    """Seed 003's model. With 14 features and window 64: 406,785 trainable parameters."""

    def __init__(self, *, n_features: int, window: int, cfg: PriceActionTransformerConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.heads:
            raise ValueError(f"heads: got {cfg.heads}, expected a divisor of d_model={cfg.d_model}")
        self.proj = nn.Linear(n_features, cfg.d_model)
        self.register_buffer(
            "positions", sinusoidal_positions(window, cfg.d_model), persistent=False
        )
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.heads, dim_feedforward=cfg.ff, dropout=cfg.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    positions: Tensor

    def forward(self, x: Tensor, asset: Tensor) -> Tensor:
        h = self.proj(x) + self.positions[: x.shape[1]]
        h = self.encoder(h).mean(dim=1)
        return self.head(h).squeeze(-1)  # type: ignore[no-any-return]


class FTTransformerConfig(ModelConfig):
    """``ft_transformer``: the published FT-Transformer (``rtdl_revisiting_models``) over the
    flattened window (one token per (bar, feature) value) plus the asset id as a
    categorical token; the [CLS] token's output is the logit. Attention is quadratic in
    ``window * features`` tokens, so keep windows short (default config: window 16 x 14
    features = 224 tokens)."""

    n_blocks: int = Field(2, ge=1, description="transformer blocks")
    d_block: int = Field(64, ge=1, description="token width (must be divisible by heads)")
    heads: int = Field(8, ge=1, description="attention heads")
    attention_dropout: float = Field(0.2, ge=0, lt=1, description="dropout on attention maps")
    ffn_dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the feed-forward block")
    residual_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on residual branches")
    ffn_d_hidden_multiplier: float = Field(4 / 3, gt=0, description="FFN width / d_block (ReGLU)")


class FTTransformerClassifier(nn.Module):
    """Window classifier on ``rtdl_revisiting_models.FTTransformer`` (d_out=1)."""

    def __init__(
        self, *, n_features: int, window: int, n_assets: int, cfg: FTTransformerConfig
    ) -> None:
        super().__init__()
        if cfg.d_block % cfg.heads:
            raise ValueError(f"heads: got {cfg.heads}, expected a divisor of d_block={cfg.d_block}")
        from rtdl_revisiting_models import FTTransformer

        self.net = FTTransformer(
            n_cont_features=window * n_features,
            cat_cardinalities=[n_assets],
            d_out=1,
            n_blocks=cfg.n_blocks,
            d_block=cfg.d_block,
            attention_n_heads=cfg.heads,
            attention_dropout=cfg.attention_dropout,
            ffn_d_hidden=None,
            ffn_d_hidden_multiplier=cfg.ffn_d_hidden_multiplier,
            ffn_dropout=cfg.ffn_dropout,
            residual_dropout=cfg.residual_dropout,
        )

    def forward(self, x: Tensor, asset: Tensor) -> Tensor:
        return self.net(x.flatten(1), asset.unsqueeze(1)).squeeze(-1)  # type: ignore[no-any-return]
