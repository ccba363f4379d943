"""Which inputs drive a trained policy's actions: per (asset, feature) token and per
portfolio token (cash weight, each position weight), over the observations of a period.

Two measures, each averaged over the period's bars:

- **[CLS] attention** (FT-Transformer policies only): the attention probability from the
  [CLS] query to each token, averaged over heads and blocks. It says where the encoder
  looks, not what changes the action; it is computed from the same weights ``forward``
  uses, block by block (eval mode, no dropout).
- **Integrated gradients** (Sundararajan et al. 2017; any network policy) of the action
  change: the target is ``sum_a s_a * act_a(obs)`` with ``s_a`` the sign of the action's
  change from the baseline, so a token's attributions over the path add up to its share
  of ``sum_a |act_a(obs) - act_a(baseline)|`` (completeness; checked to ``steps``'
  Riemann accuracy). Baseline: the zero observation (every scaled feature at its scaler's
  centre, no cash and no position). A token's attribution is the sum over its inputs (a
  feature token's ``L`` lagged values); the measure is its mean absolute value over bars,
  and its share of the total.

Tokens are ordered as the encoder orders them: (asset, feature) slots asset-major
(``asset * n_features + feature``), then cash, then each asset's position weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cappuccino.market import ObservationSpec
from cappuccino.models.ft_transformer import FTStateEncoder

IG_STEPS = 32


def cls_attention(encoder: FTStateEncoder, obs: Tensor) -> Tensor:
    """``(B, n_tokens)``: the [CLS] query's attention over every token (itself included),
    averaged over heads and blocks; each row sums to 1."""
    was = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            x = encoder.tokens(obs)
            b, t, _ = x.shape
            acc = torch.zeros(b, t, dtype=x.dtype, device=x.device)
            blocks = encoder.backbone.blocks
            for block in blocks:
                x_id = x
                xn = (
                    block["attention_normalization"](x) if "attention_normalization" in block else x
                )
                att = block["attention"]
                h = att._n_heads
                q, k = att.W_q(xn[:, :1]), att.W_k(xn)
                dh = k.shape[-1] // h
                q = q.reshape(b, 1, h, dh).transpose(1, 2)
                k = k.reshape(b, t, h, dh).transpose(1, 2)
                p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # (B,h,1,T)
                acc += p.mean(dim=1)[:, 0]
                x = x_id + block["attention_residual_dropout"](att(xn, xn))
                x = x + block["ffn_residual_dropout"](block["ffn"](block["ffn_normalization"](x)))
            return acc / len(blocks)
    finally:
        encoder.train(was)


def integrated_gradients(
    act: Any, obs: Tensor, baseline: Tensor | None = None, steps: int = IG_STEPS,
    chunk: int = 128,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Attributions ``(B, D)`` of each input to the action change, and the change itself
    ``(B,)`` (``sum_a |act_a(obs) - act_a(baseline)|``); midpoint Riemann sum over
    ``steps`` points of the straight path from ``baseline`` (zeros) to ``obs``."""
    if baseline is None:
        baseline = torch.zeros_like(obs)
    alphas = (torch.arange(steps, dtype=obs.dtype, device=obs.device) + 0.5) / steps
    out, change = [], []
    for i in range(0, obs.shape[0], chunk):
        x, x0 = obs[i : i + chunk], baseline[i : i + chunk]
        with torch.no_grad():
            d = act(x) - act(x0)
        sign = torch.sign(d)
        path = (x0.unsqueeze(1) + alphas.view(1, -1, 1) * (x - x0).unsqueeze(1)).reshape(
            -1, x.shape[1]
        )
        path.requires_grad_(True)
        target = (act(path).reshape(x.shape[0], steps, -1) * sign.unsqueeze(1)).sum()
        (grad,) = torch.autograd.grad(target, path)
        avg = grad.reshape(x.shape[0], steps, -1).mean(dim=1)
        out.append(avg * (x - x0))
        change.append(d.abs().sum(dim=1))
    return torch.cat(out), torch.cat(change)


def deterministic_action(net: nn.Module, obs: Tensor) -> Tensor:
    """The actor's deterministic action (the squashed mean), differentiable (``act`` runs
    under ``no_grad``)."""
    return net.squash(net.mean(obs))  # type: ignore[operator, no-any-return]


def token_attributions(attr: Tensor, spec: ObservationSpec) -> Tensor:
    """``(B, D)`` input attributions -> ``(B, n_slots + 1 + n_assets)`` per token: each
    (asset, feature) slot summed over its lags, then the portfolio scalars."""
    head, _ = spec.split(attr)
    slots = spec.slot_series(attr).sum(dim=-1)
    return torch.cat([slots, head], dim=1)


@dataclass
class Explanation:
    """Per token: its kind, asset and feature, the [CLS] attention (None for a non-FT
    policy) and the integrated-gradients measure; the heat maps as asset x feature."""

    symbols: tuple[str, ...]
    features: tuple[str, ...]
    tokens: list[dict[str, Any]]
    attention_map: list[list[float]] | None
    gradient_map: list[list[float]]
    bars: int
    completeness_error: float
    units: str

    def ranked(self, by: str = "gradient_share") -> list[dict[str, Any]]:
        return sorted(self.tokens, key=lambda t: -(t[by] if t[by] is not None else -1.0))

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "features": list(self.features),
                "bars": self.bars, "tokens": self.ranked(), "attention_map": self.attention_map,
                "gradient_map": self.gradient_map,
                "completeness_error": self.completeness_error, "units": self.units}  # fmt: skip


def explain(
    net: nn.Module, obs: Tensor, symbols: tuple[str, ...], features: tuple[str, ...],
    lookback: int, *, steps: int = IG_STEPS,
) -> Explanation:  # fmt: skip
    """Both measures of the module docstring for the actor ``net`` (an
    :class:`~cappuccino.models.actor_critic.ActorCritic`) over observations ``obs``."""
    spec = ObservationSpec(n_assets=len(symbols), n_features=len(features), lookback=lookback)
    if obs.ndim != 2 or obs.shape[1] != spec.dim:
        raise ValueError(f"observations: got shape {tuple(obs.shape)}, expected (bars, {spec.dim})")
    if obs.shape[0] == 0:
        raise ValueError("observations: none in the period, expected at least one bar")
    was = net.training
    net.eval()
    try:
        attr, change = integrated_gradients(lambda x: deterministic_action(net, x), obs,
                                            steps=steps)  # fmt: skip
    finally:
        net.train(was)
    per_token = token_attributions(attr, spec)  # (B, n_slots + 1 + A)
    err = float((per_token.sum(dim=1) - change).abs().max() / change.abs().max().clamp_min(1e-12))
    grad = per_token.abs().mean(dim=0).double().cpu().numpy()
    share = grad / grad.sum() if grad.sum() > 0 else np.zeros_like(grad)
    enc = getattr(net, "encoder", None)
    att: np.ndarray | None = None
    if isinstance(enc, FTStateEncoder):
        a = cls_attention(enc, obs).double().mean(dim=0).cpu().numpy()  # [CLS], slots, portfolio
        att = a[1:]
    n, f = len(symbols), len(features)
    tokens: list[dict[str, Any]] = []
    for s in range(n * f):
        tokens.append({"token": f"{symbols[s // f]} {features[s % f]}", "kind": "feature",
                       "asset": symbols[s // f], "feature": features[s % f]})  # fmt: skip
    tokens.append({"token": "cash weight", "kind": "portfolio", "asset": None, "feature": "cash"})
    for sym in symbols:
        tokens.append({"token": f"{sym} position weight", "kind": "portfolio", "asset": sym,
                       "feature": "position"})  # fmt: skip
    for i, t in enumerate(tokens):
        t["gradient"] = float(grad[i])
        t["gradient_share"] = float(share[i])
        t["attention"] = None if att is None else float(att[i])
    rank = {id(t): r for r, t in enumerate(sorted(tokens, key=lambda t: -t["gradient"]), 1)}
    for t in tokens:
        t["rank"] = rank[id(t)]
    return Explanation(
        symbols=tuple(symbols), features=tuple(features), tokens=tokens,
        attention_map=None if att is None else att[: n * f].reshape(n, f).tolist(),
        gradient_map=share[: n * f].reshape(n, f).tolist(), bars=int(obs.shape[0]),
        completeness_error=err,
        units="attention: mean [CLS] attention probability over heads, blocks and bars (all "
        "tokens, [CLS] included, sum to 1); gradient: mean over bars of |integrated-gradients "
        "attribution| of the token to the action change from the zero observation, in action "
        "units; gradient_share: its share of the sum over tokens",
    )  # fmt: skip
