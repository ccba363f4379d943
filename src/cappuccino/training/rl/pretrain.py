"""Masked feature modelling for the FT state encoder, and loading a pretrained encoder into
an RL run with every compatibility field checked.

Pretraining (``cappuccino rl pretrain-encoder``):

- **Inputs are RL observations.** Each window is built by the observation layout the RL
  env uses
  (:class:`~cappuccino.market.ObservationSpec`): features scaled by the scaler fitted on the
  pretraining bars and clipped to ``obs_clip``, latest bar first, with a portfolio drawn
  uniformly from the simplex (cash + assets; Dirichlet(1)), so the portfolio tokens see
  the inputs they will see in PPO. The run that loads the encoder observes through the
  encoder's scaler.
- **Masking.** Exactly ``round(mask_ratio * n_slots)`` (at least one) of the
  ``n_assets * n_features`` feature tokens of each window are masked: the token becomes a
  learned mask vector plus the slot's bias (its identity), so the slot's ``lookback``
  values are hidden. A head (LayerNorm, Linear ``d_token -> lookback``) on each masked
  token's final state predicts those values; the loss is their mean squared error on
  masked slots only. Validation draws its masks and portfolios once (seeded), so its loss
  is comparable between epochs.
- **Split.** Only the training period of the split (``train_start .. train_end``) is
  used, never bars later tested on. Its last ``val_fraction`` is validation; ``embargo``
  bars (at least the lookback) between the two are dropped; every window lies wholly in
  its own part.
- **Baseline.** ``val_baseline_loss`` is the loss of predicting each slot's mean over
  the pretraining bars (a model that learnt nothing about the window);
  ``val_skill = 1 - val_loss / val_baseline_loss``.
- **Outputs** (``output_dir``): ``best_encoder.pt`` (lowest val loss) and
  ``final_encoder.pt`` (``FTStateEncoder`` state dicts), ``history.json`` (per epoch),
  ``encoder.json`` (constructor arguments, observation settings, symbols, feature names,
  timeframe, fitted scaler, periods, the last bar seen, resolved config, versions).

The pretraining head and the mask token are not kept: PPO reads the [CLS] token through
the backbone's output head, which pretraining does not train (it is initialised as
published).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cappuccino.bundles.encoder import FORMAT, META
from cappuccino.bundles.io import write_history, write_state_dict
from cappuccino.bundles.manifest import data_fields, write_manifest
from cappuccino.config.rl import FTEncoderSettings, PretrainConfig
from cappuccino.datasets.market import MarketArrays, observation_rows
from cappuccino.features.scaling import Scaler
from cappuccino.market import ObservationSpec
from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.utils.devices import default_device
from cappuccino.utils.progress import steps
from cappuccino.utils.provenance import git_commit
from cappuccino.utils.seeding import seed_everything

log = logging.getLogger(__name__)


def encoder_args(ft: FTEncoderSettings, spec: ObservationSpec) -> dict[str, Any]:
    """``FTStateEncoder`` constructor arguments for an architecture and an observation."""
    return {
        "n_assets": spec.n_assets, "n_features": spec.n_features, "lookback": spec.lookback,
        "d_token": ft.d_token, "n_blocks": ft.n_blocks, "n_heads": ft.n_heads,
        "attention_dropout": ft.dropout, "ffn_dropout": ft.dropout, "d_out": ft.d_out,
    }  # fmt: skip


class MaskedFeatureModel(nn.Module):
    """The encoder, a learned mask token and the reconstruction head (module docstring)."""

    def __init__(self, encoder: FTStateEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        d = encoder.config()["d_token"]
        self.mask_token = nn.Parameter(torch.empty(d).uniform_(-(d**-0.5), d**-0.5))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, encoder.lookback))

    @property
    def n_slots(self) -> int:
        return self.encoder.n_assets * self.encoder.n_features

    def forward(self, obs: Tensor, mask: Tensor) -> Tensor:
        """Predicted values ``(B, n_slots, lookback)`` of every slot (read at masked ones)."""
        enc = self.encoder
        states = enc.token_states(enc.tokens(obs, mask, self.mask_token))
        return self.head(states[:, 1 : 1 + self.n_slots])  # type: ignore[no-any-return]

    def loss(self, obs: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error over the masked slots' values only."""
        return masked_mse(self(obs, mask), self.encoder.slot_values(obs), mask)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``(pred - target)^2`` over the slots where ``mask`` (``(B, S)``) is true and
    all their lags."""
    err = ((pred - target) ** 2).mean(-1)
    return (err * mask).sum() / mask.sum().clamp(min=1)


def draw_mask(batch: int, n_slots: int, ratio: float, generator: torch.Generator,
              device: torch.device | str = "cpu") -> Tensor:  # fmt: skip
    """``(batch, n_slots)`` bool with exactly ``max(1, round(ratio * n_slots))`` true per row."""
    k = max(1, round(ratio * n_slots))
    u = torch.rand((batch, n_slots), generator=generator, device=device)
    rank = u.argsort(dim=1).argsort(dim=1)
    return rank < k


def pretrain_periods(
    data: MarketArrays, cfg: PretrainConfig
) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Bar ranges ``[a, b)`` of pretrain-train and val inside the split's training period,
    and the embargo between them; each holds at least ``lookback + 1`` bars."""
    lookback = cfg.env.lookback
    embargo = cfg.pretrain.embargo_bars if cfg.pretrain.embargo_bars is not None else lookback
    i0, i1 = data.training_bounds(cfg.split)
    n_val = round((i1 - i0) * cfg.pretrain.val_fraction)
    train, val = (i0, i1 - n_val - embargo), (i1 - n_val, i1)
    for name, (a, b) in (("train", train), ("val", val)):
        if b - a < lookback + 1:
            raise ValueError(
                f"pretraining {name} part: {max(0, b - a)} bars in {data.describe()['start']} .. "
                f"{cfg.split.train_end} (val_fraction {cfg.pretrain.val_fraction}, embargo "
                f"{embargo}), expected >= lookback + 1 = {lookback + 1}"
            )
    return train, val, embargo


def _observations(
    spec: ObservationSpec, rows: Tensor, bars: range, generator: torch.Generator
) -> Tensor:
    """RL observations at ``bars`` (features ``rows``, :func:`observation_rows`) with
    portfolios drawn uniformly from the simplex (cash + assets; Dirichlet(1))."""
    dev = rows.device
    t = torch.tensor(list(bars), dtype=torch.long, device=dev)
    e = -torch.log(torch.rand((len(bars), spec.head_dim), generator=generator, device=dev))
    return spec.build(rows, t, (e / e.sum(dim=1, keepdim=True)).to(torch.float32))


@dataclass(frozen=True)
class PretrainResult:
    path: Path
    summary: dict[str, Any]


def _period(data: MarketArrays, a: int, b: int) -> dict[str, Any]:
    d = data.slice(a, b).describe()
    return {"start": d["start"], "end": d["end"], "n_bars": b - a}


def pretrain_encoder(cfg: PretrainConfig, data: MarketArrays) -> PretrainResult:
    """Pretrain per ``cfg`` on ``data`` (all bars of the store); see the module docstring."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    p = cfg.pretrain
    dev = default_device(None if p.device == "auto" else p.device)
    (a, b), (c, d), embargo = pretrain_periods(data, cfg)
    scaler = Scaler.fit(data.features[a:b], cfg.env.scaler)
    L = cfg.env.lookback
    spec = ObservationSpec(n_assets=data.n_assets, n_features=len(data.feature_names), lookback=L)
    rows = observation_rows(data, scaler, cfg.env.obs_clip, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    train_obs = _observations(spec, rows, range(a + L - 1, b), gen)
    val_obs = _observations(spec, rows, range(c + L - 1, d), gen)
    encoder = FTStateEncoder(**encoder_args(cfg.encoder, spec))
    model = MaskedFeatureModel(encoder).to(dev)
    val_mask = draw_mask(val_obs.shape[0], model.n_slots, p.mask_ratio, gen, dev)
    slot_mean = encoder.slot_values(train_obs).mean(dim=(0, 2))  # (S,)
    val_target = encoder.slot_values(val_obs)
    baseline = float(masked_mse(slot_mean[None, :, None].expand_as(val_target), val_target,
                                val_mask))  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    history: list[dict[str, float]] = []
    best_loss, best_epoch = float("inf"), 0
    best_state = copy.deepcopy(encoder.state_dict())
    n = train_obs.shape[0]
    with steps("encoder pretraining epochs", p.epochs) as bar:
        for epoch in range(1, p.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen, device=dev)
            total, count = torch.zeros((), device=dev), 0
            for i in range(0, n, p.batch_size):
                idx = perm[i : i + p.batch_size]
                mask = draw_mask(idx.numel(), model.n_slots, p.mask_ratio, gen, dev)
                loss = model.loss(train_obs[idx], mask)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.detach() * idx.numel()
                count += idx.numel()
            model.eval()
            with torch.no_grad():
                val_loss = sum(
                    float(model.loss(val_obs[j : j + 1024], val_mask[j : j + 1024]))
                    * val_mask[j : j + 1024].sum().item()
                    for j in range(0, val_obs.shape[0], 1024)
                ) / float(val_mask.sum())
            row = {"epoch": float(epoch), "train_loss": float(total) / count, "val_loss": val_loss,
                   "val_skill": 1.0 - val_loss / baseline if baseline > 0 else float("nan"),
                   "seconds": time.perf_counter() - t0}  # fmt: skip
            history.append(row)
            bar.advance(note=f"val_loss {val_loss:.4f} (baseline {baseline:.4f})")
            log.info("epoch %d: train %.4f, val %.4f (baseline %.4f)", epoch, row["train_loss"],
                     val_loss, baseline)  # fmt: skip
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(encoder.state_dict())
            elif p.patience is not None and epoch - best_epoch >= p.patience:
                break
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    write_state_dict(out / "best_encoder.pt", best_state)
    write_state_dict(out / "final_encoder.pt", encoder)
    write_history(out / "history.json", history)
    periods: dict[str, Any] = {
        "train": _period(data, a, b),
        "val": _period(data, c, d),
        "embargo_bars": embargo,
    }
    meta = {
        "format": FORMAT,
        "created": datetime.now().astimezone().isoformat(),
        "encoder": encoder.config(),
        "env": {k: getattr(cfg.env, k) for k in ("feature_set", "lookback", "scaler", "obs_clip")},
        **data_fields(data, scaler),
        "periods": periods,
        "first_bar": periods["train"]["start"],
        "last_bar": periods["val"]["end"],
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "val_baseline_loss": baseline,
        "epochs_run": len(history),
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(dev),
        "config": cfg.model_dump(mode="json"),
        "git_commit": git_commit(),
    }
    write_manifest(out / META, meta, ["best_encoder.pt", "final_encoder.pt"])
    summary = {
        "output_dir": str(out), "best_epoch": best_epoch, "best_val_loss": best_loss,
        "val_baseline_loss": baseline, "val_skill": 1 - best_loss / baseline if baseline else None,
        "epochs_run": len(history), "train_windows": n, "val_windows": int(val_obs.shape[0]),
        "parameters": sum(q.numel() for q in encoder.parameters()),
        "seconds": meta["seconds"], "device": str(dev),
    }  # fmt: skip
    return PretrainResult(path=out, summary=summary)


__all__ = [
    "MaskedFeatureModel",
    "PretrainResult",
    "draw_mask",
    "encoder_args",
    "masked_mse",
    "pretrain_encoder",
]
