"""Masked feature modelling for the FT state encoder, and loading a pretrained encoder into
an RL run with every compatibility field checked.

Pretraining (``cappuccino rl pretrain-encoder``):

- **Inputs are RL observations.** Each window is built by the RL env itself
  (:meth:`BatchedTradingEnv.observe_weights`): features scaled by the scaler fitted on the
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cappuccino.config.rl import (
    EnvSettings,
    FTEncoderSettings,
    FTPolicySettings,
    PretrainConfig,
)
from cappuccino.datasets.market import MarketArrays
from cappuccino.features.scaling import Scaler
from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.training.bundle_io import (
    read_meta,
    read_state_dict,
    write_history,
    write_state_dict,
)
from cappuccino.utils.io import atomic_write_json
from cappuccino.utils.provenance import git_commit, library_versions

log = logging.getLogger(__name__)

FORMAT = "cappuccino.ft-encoder/1"
META = "encoder.json"


def encoder_args(ft: FTEncoderSettings, n_assets: int, n_features: int, lookback: int
                 ) -> dict[str, Any]:  # fmt: skip
    """``FTStateEncoder`` constructor arguments for an architecture and a state shape."""
    return {
        "n_assets": n_assets, "n_features": n_features, "lookback": lookback,
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
    i0 = data.index_of(cfg.split.train_start, default=0)
    i1 = data.index_of(cfg.split.train_end, default=data.n_bars, side="right")
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


def _observations(env: Any, bars: range, generator: torch.Generator) -> Tensor:
    """The env's observations at ``bars`` with random simplex portfolios."""
    t = torch.tensor(list(bars), dtype=torch.long, device=env.device)
    e = -torch.log(
        torch.rand((len(bars), 1 + env.n_assets), generator=generator, device=env.device)
    )
    obs: Tensor = env.observe_weights(t, e / e.sum(dim=1, keepdim=True))
    return obs


@dataclass(frozen=True)
class PretrainResult:
    path: Path
    summary: dict[str, Any]


def _period(data: MarketArrays, a: int, b: int) -> dict[str, Any]:
    d = data.slice(a, b).describe()
    return {"start": d["start"], "end": d["end"], "n_bars": b - a}


def pretrain_encoder(cfg: PretrainConfig, data: MarketArrays) -> PretrainResult:
    """Pretrain per ``cfg`` on ``data`` (all bars of the store); see the module docstring."""
    from cappuccino.market import MarketRules
    from cappuccino.training.rl.env import BatchedTradingEnv
    from cappuccino.utils.devices import default_device
    from cappuccino.utils.seeding import seed_everything

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    p = cfg.pretrain
    dev = default_device(None if p.device == "auto" else p.device)
    (a, b), (c, d), embargo = pretrain_periods(data, cfg)
    scaler = Scaler.fit(data.features[a:b], cfg.env.scaler)
    env_settings = cfg.env.model_copy(update={"episode_bars": None})
    env = BatchedTradingEnv(data, settings=env_settings, rules=MarketRules(), n_envs=1,
                            scaler=scaler, seed=cfg.seed, device=dev)  # fmt: skip
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    L = cfg.env.lookback
    train_obs = _observations(env, range(a + L - 1, b), gen)
    val_obs = _observations(env, range(c + L - 1, d), gen)
    encoder = FTStateEncoder(**encoder_args(cfg.encoder, env.n_assets, env.n_features, L))
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
        "symbols": list(data.symbols),
        "feature_names": list(data.feature_names),
        "timeframe": data.timeframe.label,
        "scaler": scaler.to_dict(),
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
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    atomic_write_json(out / META, meta)
    summary = {
        "output_dir": str(out), "best_epoch": best_epoch, "best_val_loss": best_loss,
        "val_baseline_loss": baseline, "val_skill": 1 - best_loss / baseline if baseline else None,
        "epochs_run": len(history), "train_windows": n, "val_windows": int(val_obs.shape[0]),
        "parameters": sum(q.numel() for q in encoder.parameters()),
        "seconds": meta["seconds"], "device": str(dev),
    }  # fmt: skip
    return PretrainResult(path=out, summary=summary)


# ------------------------------------------------------------------ loading and checks
@dataclass(frozen=True)
class PretrainedEncoder:
    """A pretraining run's encoder: its weights, the scaler its inputs were scaled with,
    and its ``encoder.json``."""

    path: Path
    meta: dict[str, Any]
    state_dict: dict[str, Tensor]
    scaler: Scaler
    weights: str

    @property
    def lookback(self) -> int:
        return int(self.meta["env"]["lookback"])

    def provenance(self) -> dict[str, Any]:
        """What a policy bundle records about the encoder it started from."""
        keys = ("created", "best_epoch", "best_val_loss", "first_bar", "last_bar", "git_commit")
        return {"path": str(self.path), "weights": self.weights,
                **{k: self.meta.get(k) for k in keys}}  # fmt: skip

    def settings(self, **policy: Any) -> FTPolicySettings:
        """``FTPolicySettings`` with this encoder's architecture (the tuning arm uses it so
        nothing sampled is overwritten: the architecture is simply not sampled)."""
        e = self.meta["encoder"]
        return FTPolicySettings(d_token=e["d_token"], n_blocks=e["n_blocks"],
                                n_heads=e["n_heads"], d_out=e["d_out"],
                                pretrained=str(self.path), **policy)  # fmt: skip


def read_encoder_meta(path: Path) -> dict[str, Any]:
    return read_meta(path, FORMAT, "pretrained encoder", META)


def load_encoder(path: Path, weights: str = "best") -> PretrainedEncoder:
    meta = read_encoder_meta(path)
    state = read_state_dict(Path(path) / f"{weights}_encoder.pt")
    return PretrainedEncoder(path=Path(path), meta=meta, state_dict=state,
                             scaler=Scaler.from_dict(meta["scaler"]), weights=weights)  # fmt: skip


def compatibility_errors(
    meta: dict[str, Any],
    *,
    data: MarketArrays,
    env: EnvSettings,
    ft: FTEncoderSettings | None,
    check_lookback: bool = True,
    not_after: datetime | None = None,
    tested: Sequence[tuple[datetime, datetime]] = (),
) -> list[str]:
    """Every way the encoder of ``meta`` does not fit a run, as ``"<field> <value> in
    encoder, <value> in <where>"`` (empty: compatible).

    ``ft`` None (or ``check_lookback`` False) leaves the architecture (the lookback) to the
    encoder, as the tuning arm does. ``not_after``: the last bar the run may have seen
    (its training end); ``tested``: time ranges the run tests on, which the encoder must
    not have seen.
    """
    e, m = meta["encoder"], meta["env"]
    pairs: list[tuple[str, Any, Any, str]] = [
        ("symbols", meta["symbols"], list(data.symbols), "data"),
        ("feature_set", m["feature_set"], data.feature_set, "data"),
        ("feature_names", meta["feature_names"], list(data.feature_names), "data"),
        ("timeframe", meta["timeframe"], data.timeframe.label, "data"),
        ("feature_set", m["feature_set"], env.feature_set, "env"),
        ("scaler", m["scaler"], env.scaler, "env"),
        ("obs_clip", m["obs_clip"], env.obs_clip, "env"),
    ]
    if check_lookback:
        pairs.append(("lookback", m["lookback"], env.lookback, "env"))
    if ft is not None:
        pairs += [(k, e[k], getattr(ft, k), "ppo.ft") for k in ("d_token", "n_blocks",
                                                                 "n_heads", "d_out")]  # fmt: skip
    errors = [f"{name} {want!r} in encoder, {got!r} in {where}"
              for name, want, got, where in pairs if want != got]  # fmt: skip
    first, last = _utc(meta["first_bar"]), _utc(meta["last_bar"])
    if not_after is not None and last > _utc(not_after):
        errors.append(
            f"pretrained on bars up to {meta['last_bar']}, after this run's training period "
            f"ends ({_utc(not_after).isoformat()}): it has seen bars the run is tested on"
        )
    for lo, hi in tested:
        if first <= _utc(hi) and _utc(lo) <= last:
            errors.append(
                f"pretrained on {meta['first_bar']} .. {meta['last_bar']}, which overlaps bars "
                f"this run tests on ({_utc(lo).isoformat()} .. {_utc(hi).isoformat()})"
            )
            break
    return errors


def _utc(x: datetime | str) -> datetime:
    d = datetime.fromisoformat(x) if isinstance(x, str) else x
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def find_encoder(root: Path, **checks: Any) -> Path:
    """The most recently created encoder under ``root`` (recursively) that passes
    :func:`compatibility_errors` with ``checks``; ``ValueError`` listing why each
    candidate was rejected when none does."""
    found: list[tuple[str, Path]] = []
    rejected: list[str] = []
    for f in sorted(Path(root).rglob(META)):
        try:
            meta = read_encoder_meta(f.parent)
        except ValueError as exc:  # an unrelated encoder.json is a rejection with a reason
            rejected.append(f"{f.parent}: {exc}")
            continue
        errs = compatibility_errors(meta, **checks)
        if errs:
            rejected.append(f"{f.parent}: {'; '.join(errs)}")
        else:
            found.append((meta["created"], f.parent))
    if rejected:
        log.info("pretrained encoders under %s rejected:\n  %s", root, "\n  ".join(rejected))
    if not found:
        why = "\n  ".join(rejected) if rejected else "no encoder.json found"
        raise ValueError(
            f"no compatible pretrained encoder under {root} (run `cappuccino rl "
            f"pretrain-encoder` with this run's data, env and split):\n  {why}"
        )
    return max(found, key=lambda x: _utc(x[0]))[1]


def resolve_encoder(ft: FTPolicySettings, **checks: Any) -> PretrainedEncoder:
    """The encoder ``ft.pretrained`` names (``'auto'``: :func:`find_encoder` under
    ``ft.pretrained_root``), after every compatibility check; the error names each
    mismatch."""
    if ft.pretrained is None:
        raise ValueError("ppo.ft.pretrained is None: nothing to load")
    path = (find_encoder(ft.pretrained_root, ft=ft, **checks) if ft.pretrained == "auto"
            else Path(ft.pretrained))  # fmt: skip
    enc = load_encoder(path, ft.pretrained_weights)
    errs = compatibility_errors(enc.meta, ft=ft, **checks)
    if errs:
        raise ValueError(f"pretrained encoder {path}: " + "; ".join(errs))
    return enc


def segment_times(
    data: MarketArrays, segments: list[tuple[int, int]]
) -> list[tuple[datetime, datetime]]:
    """Open times of the first and last bar of each ``[a, b)`` segment."""
    out = []
    for a, b in segments:
        d = data.slice(a, b).describe()
        out.append((_utc(d["start"]), _utc(d["end"])))
    return out


__all__ = [
    "MaskedFeatureModel",
    "PretrainResult",
    "PretrainedEncoder",
    "compatibility_errors",
    "draw_mask",
    "find_encoder",
    "load_encoder",
    "masked_mse",
    "pretrain_encoder",
    "resolve_encoder",
]
