"""FT-Transformer encoder of a trading state (the RL observation), on ``rtdl_revisiting_models``.

Input: the flat observation ``(B, 1 + n + F * n * L)`` of an
:class:`~cappuccino.market.ObservationSpec`: cash weight, ``n`` position weights, and ``L``
bars of ``n x F`` scaled features. Tokens (sequence length ``1 + n * F + 1 + n``):

- ``[CLS]`` first, as published; its final representation is the encoding.
- One token per (asset, feature): the ``L`` lagged values of that feature through its own
  linear map ``R^L -> R^d`` plus bias. NOTE[DIFF]: the published feature tokenizer embeds
  one scalar per token (``LinearEmbeddings``, the ``L = 1`` case of this map); one token
  per scalar here would make ``n * F * L`` tokens (980 at 7 assets, 14 features, 10
  bars; 5,880 at 60 bars) and attention quadratic in them. A per-(asset, feature) temporal
  map keeps the sequence at ``n * F`` tokens whatever the lookback; the lookback costs
  ``n * F * L * d`` embedding parameters and nothing in attention.
- One token per portfolio scalar (cash weight, each position weight), through
  ``rtdl_revisiting_models.LinearEmbeddings`` as published.

The blocks and the output head (LayerNorm, ReLU, Linear to ``d_out``) are
``rtdl_revisiting_models.FTTransformerBackbone`` unchanged: pre-norm blocks (the first
without attention normalisation), ReGLU feed-forward, attention in the last block
computed for ``[CLS]`` only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cappuccino.market.observation import ObservationSpec


class FTStateEncoder(nn.Module):
    """``(B, obs_dim) -> (B, d_out)``; see the module docstring. Keyword-only; invalid
    combinations raise ``ValueError`` naming the values."""

    def __init__(
        self,
        *,
        n_assets: int,
        n_features: int,
        lookback: int,
        d_token: int = 32,
        n_blocks: int = 2,
        n_heads: int = 4,
        attention_dropout: float = 0.1,
        ffn_dropout: float = 0.1,
        residual_dropout: float = 0.0,
        ffn_d_hidden_multiplier: float = 4 / 3,
        d_out: int = 64,
    ) -> None:
        super().__init__()
        for name, v in (("n_assets", n_assets), ("n_features", n_features),
                        ("lookback", lookback), ("d_token", d_token), ("n_blocks", n_blocks),
                        ("n_heads", n_heads), ("d_out", d_out)):  # fmt: skip
            if v < 1:
                raise ValueError(f"{name}: got {v}, expected >= 1")
        if d_token % n_heads:
            raise ValueError(
                f"d_token {d_token} is not divisible by n_heads {n_heads}: each head needs "
                "d_token / n_heads dimensions"
            )
        for name, p in (("attention_dropout", attention_dropout), ("ffn_dropout", ffn_dropout),
                        ("residual_dropout", residual_dropout)):  # fmt: skip
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}: got {p}, expected 0 <= p < 1")
        from rtdl_revisiting_models import FTTransformerBackbone, LinearEmbeddings

        self.n_assets, self.n_features, self.lookback = n_assets, n_features, lookback
        self.spec = ObservationSpec(n_assets=n_assets, n_features=n_features, lookback=lookback)
        self.d_out = d_out
        self._config: dict[str, Any] = {
            "n_assets": n_assets, "n_features": n_features, "lookback": lookback,
            "d_token": d_token, "n_blocks": n_blocks, "n_heads": n_heads,
            "attention_dropout": attention_dropout, "ffn_dropout": ffn_dropout,
            "residual_dropout": residual_dropout,
            "ffn_d_hidden_multiplier": ffn_d_hidden_multiplier, "d_out": d_out,
        }  # fmt: skip
        n_slots = n_assets * n_features
        bound = d_token**-0.5  # rtdl's initialisation of embeddings and [CLS]
        self.cls = nn.Parameter(torch.empty(d_token).uniform_(-bound, bound))
        self.temporal_weight = nn.Parameter(
            torch.empty(n_slots, lookback, d_token).uniform_(-bound, bound)
        )
        self.temporal_bias = nn.Parameter(torch.empty(n_slots, d_token).uniform_(-bound, bound))
        self.portfolio = LinearEmbeddings(1 + n_assets, d_token)
        self.backbone = FTTransformerBackbone(
            d_out=d_out,
            n_blocks=n_blocks,
            d_block=d_token,
            attention_n_heads=n_heads,
            attention_dropout=attention_dropout,
            ffn_d_hidden=None,
            ffn_d_hidden_multiplier=ffn_d_hidden_multiplier,
            ffn_dropout=ffn_dropout,
            residual_dropout=residual_dropout,
        )

    @property
    def obs_dim(self) -> int:
        return self.spec.dim

    @property
    def n_tokens(self) -> int:
        return 1 + self.n_assets * self.n_features + 1 + self.n_assets

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON), to rebuild the module and check compatibility."""
        return dict(self._config)

    def tokens(self, obs: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
               ) -> Tensor:  # fmt: skip
        """``(B, n_tokens, d_token)``: [CLS], feature tokens, portfolio tokens.

        ``mask`` ``(B, n_assets * n_features)`` bool (masked feature modelling): a masked
        slot's token is ``mask_token + temporal_bias[slot]``, so its values are hidden and
        its identity (the slot's bias, as rtdl's per-feature bias) is kept.
        """
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"observation: got shape {tuple(obs.shape)}, expected (batch, {self.obs_dim}) "
                f"for {self.n_assets} assets, {self.n_features} features, lookback {self.lookback}"
            )
        b, k = obs.shape[0], self.spec.head_dim
        # (B, L, n * F) with index 0 the latest bar -> one (L -> d) map per slot
        window = self.spec.slot_window(obs)
        emb = torch.einsum("bls,sld->bsd", window, self.temporal_weight) + self.temporal_bias
        if mask is not None:
            if mask_token is None:
                raise ValueError("tokens: a mask needs a mask_token")
            emb = torch.where(mask.unsqueeze(-1), mask_token + self.temporal_bias, emb)
        port = self.portfolio(obs[:, :k])
        cls = self.cls.expand(b, 1, -1)
        return torch.cat([cls, emb, port], dim=1)

    def slot_values(self, obs: Tensor) -> Tensor:
        """``(B, n_assets * n_features, L)``: each (asset, feature) slot's lagged values,
        index 0 the latest bar (the targets of masked feature modelling)."""
        return self.spec.slot_series(obs)

    def token_states(self, tokens: Tensor) -> Tensor:
        """Every token's final representation ``(B, n_tokens, d_token)``: the backbone's
        blocks as published, except that the last block attends from every token, not from
        [CLS] only (masked feature modelling needs the masked tokens' outputs; the weights
        are the same ones ``forward`` uses)."""
        x = tokens
        for block in self.backbone.blocks:
            x_id = x
            if "attention_normalization" in block:
                x = block["attention_normalization"](x)
            x = x_id + block["attention_residual_dropout"](block["attention"](x, x))
            x_id = x
            x = x_id + block["ffn_residual_dropout"](block["ffn"](block["ffn_normalization"](x)))
        return x

    def forward(self, obs: Tensor) -> Tensor:
        return self.backbone(self.tokens(obs))  # type: ignore[no-any-return]


def count_parameters_formula(
    *, n_assets: int, n_features: int, lookback: int, d_token: int, n_blocks: int,
    d_out: int, ffn_d_hidden_multiplier: float = 4 / 3,
) -> int:  # fmt: skip
    """The encoder's trainable parameters, counted from the architecture (for tests and
    ``models describe``): embeddings, [CLS], blocks as published, output head."""
    d, slots = d_token, n_assets * n_features
    h = int(d * ffn_d_hidden_multiplier)
    embed = slots * (lookback * d + d) + (1 + n_assets) * 2 * d + d
    attention = 4 * (d * d + d)
    ffn = (d * 2 * h + 2 * h) + (h * d + d)
    block = attention + ffn + 2 * d  # + the FFN LayerNorm
    blocks = n_blocks * block + (n_blocks - 1) * 2 * d  # attention LayerNorm from block 2
    head = 2 * d + d * d_out + d_out
    return embed + blocks + head
