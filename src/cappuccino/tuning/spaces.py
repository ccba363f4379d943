"""Search spaces: typed dimensions per model family, each mapped onto a run-config path.

A :class:`Dim` is one Optuna parameter. Its ``path`` is the dotted key of the run config
it sets (``train.learning_rate``, ``model_params.dropout``, ``ppo.gamma``); a dimension
without a path feeds a family's combiner (the MLP's ``n_layers`` and ``width_i`` become
``model_params.hidden``). ``when`` makes a dimension conditional on earlier ones (the
focal loss's gamma is sampled only with the focal loss). Every sampled value lands in the
config the trial trains with; nothing is sampled that nothing reads, and nothing is
changed after sampling: an invalid combination is not sampled at all (attention heads are
chosen from the divisors of the width).

Ranges are overridable in YAML (``space: {learning_rate: {low: 1e-4, high: 1e-2}}``);
an unknown name is an error that lists the family's dimensions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from cappuccino.bundles.encoder import PretrainedEncoder
from cappuccino.config.rl import FTPolicySettings
from cappuccino.config.tuning import TuneConfig

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Dim:
    name: str
    kind: Literal["float", "int", "categorical"]
    path: str | None = None
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: int = 1
    choices: tuple[Any, ...] = ()
    when: Callable[[dict[str, Any]], bool] | None = None

    def sample(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=1 if self.log else self.step,
                log=self.log,
            )  # fmt: skip
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class Space:
    """A family's dimensions (sampled in order) and the combiner that turns the sampled
    values into config overrides ``{path: value}``."""

    family: str
    dims: tuple[Dim, ...]
    combine: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Space:
        """Ranges/choices replaced from a YAML mapping ``{name: {low, high, log, step, choices}}``."""
        by_name = {d.name: d for d in self.dims}
        allowed = {"low", "high", "log", "step", "choices"}
        for name, fields in overrides.items():
            if name not in by_name:
                near = difflib.get_close_matches(name, list(by_name), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ValueError(
                    f"space.{name}: no such dimension for {self.family}{hint} "
                    f"(dimensions: {', '.join(by_name)})"
                )
            bad = sorted(set(fields) - allowed)
            if bad:
                raise ValueError(f"space.{name}: unknown fields {bad}, expected {sorted(allowed)}")
            upd = dict(fields)
            if "choices" in upd:
                upd["choices"] = tuple(upd["choices"])
            new = replace(by_name[name], **upd)
            if new.kind != "categorical" and not new.low <= new.high:
                raise ValueError(f"space.{name}: low {new.low} > high {new.high}")
            if new.kind == "categorical" and not new.choices:
                raise ValueError(f"space.{name}: empty choices")
            by_name[name] = new
        return replace(self, dims=tuple(by_name[d.name] for d in self.dims))

    def sample(self, trial: optuna.Trial) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(params, overrides)``: the sampled values by name, and the config overrides."""
        params: dict[str, Any] = {}
        overrides: dict[str, Any] = {}
        for d in self.dims:
            if d.when is not None and not d.when(params):
                continue
            params[d.name] = d.sample(trial)
            if d.path is not None:
                overrides[d.path] = params[d.name]
        if self.combine is not None:
            overrides.update(self.combine(params))
        return params, overrides


def _f(name: str, path: str | None, low: float, high: float, log: bool = False, **kw: Any) -> Dim:
    return Dim(name, "float", path, low, high, log, **kw)


def _i(name: str, path: str | None, low: int, high: int, **kw: Any) -> Dim:
    return Dim(name, "int", path, low, high, **kw)


def _c(name: str, path: str | None, choices: tuple[Any, ...], **kw: Any) -> Dim:
    return Dim(name, "categorical", path, choices=choices, **kw)


# the window classifiers without published ranges
_TRAIN = (
    _f("learning_rate", "train.learning_rate", 1e-4, 3e-3, log=True),
    _f("weight_decay", "train.weight_decay", 1e-6, 1e-2, log=True),
    _c("batch_size", "train.batch_size", (128, 256, 512)),
    _c("loss", "train.loss", ("bce", "weighted_bce", "focal")),
    _f("focal_gamma", "train.focal_gamma", 0.5, 4.0, when=lambda p: p["loss"] == "focal"),
    _f("focal_alpha", "train.focal_alpha", 0.1, 0.9, when=lambda p: p["loss"] == "focal"),
)


def _published_train(batches: tuple[int, ...], gamma: tuple[float, float]) -> tuple[Dim, ...]:
    """The trainer's ranges of the system we replace (``shared/SEED_SPECS.md``): the focal
    loss, learning rate 1e-4 - 1e-2 and weight decay 1e-6 - 1e-3 (log), its batch sizes and
    focal gamma range, alpha 0.2 - 0.5."""
    return (
        _f("learning_rate", "train.learning_rate", 1e-4, 1e-2, log=True),
        _f("weight_decay", "train.weight_decay", 1e-6, 1e-3, log=True),
        _c("batch_size", "train.batch_size", batches),
        _c("loss", "train.loss", ("focal",)),
        _f("focal_gamma", "train.focal_gamma", *gamma),
        _f("focal_alpha", "train.focal_alpha", 0.2, 0.5),
    )


# its published MLP layouts: Optuna's categorical choices are primitives, so by name
MLP_LAYOUTS: dict[str, list[int]] = {
    "128-64": [128, 64], "256-128": [256, 128], "256-128-64": [256, 128, 64],
    "512-256-128": [512, 256, 128],
}  # fmt: skip


def _mlp_hidden(p: dict[str, Any]) -> dict[str, Any]:
    return {"model_params.hidden": MLP_LAYOUTS[p["hidden"]]}


def _train_dims(model: str) -> tuple[Dim, ...]:
    if model == "mlp":
        return _published_train((256, 512, 1024), (1.5, 4.0))
    if model in ("lstm_attention", "gru_attention"):
        return _published_train((128, 256, 512), (2.0, 4.0))
    return _TRAIN


def _divisor_dims(name: str, path: str, width: str, widths: tuple[int, ...],
                  heads: tuple[int, ...]) -> tuple[Dim, ...]:  # fmt: skip
    """Heads must divide the width: one categorical per width value (``heads_w64``), so no
    sampled pair is ever invalid (Optuna needs fixed choices per parameter name)."""
    out = []
    for w in widths:
        ok = tuple(h for h in heads if w % h == 0)
        out.append(_c(f"{name}_w{w}", path, ok, when=lambda p, w=w: p[width] == w))
    return tuple(out)


def _model_dims(model: str) -> tuple[Dim, ...]:
    if model == "mlp":  # the published ranges (shared/SEED_SPECS.md)
        return (
            _c("hidden", None, tuple(MLP_LAYOUTS)),
            _f("dropout", "model_params.dropout", 0.2, 0.5),
            _c("activation", "model_params.activation", ("relu", "tanh")),
            _c("batch_norm", "model_params.batch_norm", (True, False)),
        )
    if model in ("lstm_attention", "gru_attention"):  # the published ranges
        return (
            _i("layers", "model_params.layers", 1, 3),
            _c("hidden", "model_params.hidden", (64, 128, 256)),
            _c("attention_dim", "model_params.attention_dim", (32, 64, 128)),
            _c("heads", "model_params.heads", (2, 4, 8)),  # each divides each attention_dim
            _f("dropout", "model_params.dropout", 0.2, 0.5),
        )
    if model == "cnn_lstm":
        return (
            _c("filters", "model_params.filters", (16, 32, 64)),
            _c("kernel", "model_params.kernel", (3, 5)),
            _c("lstm_hidden", "model_params.lstm_hidden", (32, 64, 128)),
            _i("lstm_layers", "model_params.lstm_layers", 1, 2),
            _f("dropout", "model_params.dropout", 0.0, 0.5),
        )
    if model == "price_action_transformer":
        widths: tuple[int, ...] = (64, 128)
        return (
            _c("d_model", "model_params.d_model", widths),
            _i("layers", "model_params.layers", 1, 3),
            *_divisor_dims("heads", "model_params.heads", "d_model", widths, (2, 4, 8)),
            _c("ff", "model_params.ff", (128, 256, 512)),
            _f("dropout", "model_params.dropout", 0.0, 0.3),
        )
    if model == "ft_transformer":
        widths = (32, 64, 96)
        return (
            _i("n_blocks", "model_params.n_blocks", 1, 3),
            _c("d_block", "model_params.d_block", widths),
            *_divisor_dims("heads", "model_params.heads", "d_block", widths, (2, 4, 8)),
            _f("attention_dropout", "model_params.attention_dropout", 0.0, 0.3),
            _f("ffn_dropout", "model_params.ffn_dropout", 0.0, 0.3),
        )
    raise ValueError(
        f"model {model!r}: no search space (mlp, lstm_attention, gru_attention, cnn_lstm, "
        "price_action_transformer, ft_transformer)"
    )


def supervised_space(model: str) -> Space:
    """The trainer's dimensions, the window length and the model's own. ``mlp``,
    ``lstm_attention`` and ``gru_attention`` use the published ranges of the system we
    replace (``shared/SEED_SPECS.md``: MLP layouts [128, 64] to [512, 256, 128], dropout
    0.2 - 0.5, focal alpha 0.2 - 0.5 and gamma 1.5 - 4 (recurrent: 2 - 4), ...); widen them
    with a config's ``space:``. FT-Transformer windows stay short (its attention is
    quadratic in bars x features)."""
    lookbacks = (4, 8) if model == "ft_transformer" else (8, 16, 32)
    dims = (*_train_dims(model), _c("lookback", "windows.lookback", lookbacks),
            *_model_dims(model))  # fmt: skip
    return Space(model, dims, _mlp_hidden if model == "mlp" else None)


_FT_WIDTHS = (16, 32, 64, 96)


def _ft(p: dict[str, Any]) -> bool:
    return bool(p.get("use_ft_encoder"))


def _pretrained(p: dict[str, Any]) -> bool:
    return _ft(p) and bool(p.get("ft_use_pretrained"))


def _scratch(p: dict[str, Any]) -> bool:
    return _ft(p) and not p.get("ft_use_pretrained")


def _ppo_core(clip_high: float) -> tuple[Dim, ...]:
    """Discount, GAE lambda, clip range and entropy weight: PPO's and MAPPO's."""
    return (
        _f("gamma", "ppo.gamma", 0.9, 0.9999),
        _f("gae_lambda", "ppo.gae_lambda", 0.8, 1.0),
        _f("clip_coef", "ppo.clip_coef", 0.1, clip_high),
        _f("ent_coef", "ppo.ent_coef", 1e-6, 1e-2, log=True),
    )


def ppo_space(encoder: PretrainedEncoder | None = None) -> Space:
    """PPO, its network and the env: learning rate, batch, discount, GAE, clip, entropy and
    value weights, epochs, width and depth, lookback, reward, observation scaling; and the
    FT-Transformer arm.

    The FT arm: ``use_ft_encoder``; then ``ft_use_pretrained``. From scratch, the encoder's
    architecture is sampled (``ft_d_token``, ``ft_n_blocks``, heads among the divisors of
    the width). Pretrained, the architecture, lookback and scaler are ``encoder``'s (found
    by the objective: the latest compatible one) and are not sampled at all, so nothing
    sampled is overwritten; ``ft_freeze_encoder`` and, when fine-tuning, ``ft_lr_scale``
    are. ``ft_dropout`` applies to both.
    """
    dims = (
        _f("learning_rate", "ppo.learning_rate", 1e-5, 1e-3, log=True),
        _c("n_steps", "ppo.n_steps", (64, 128, 256, 512)),
        _c("minibatch_size", "ppo.minibatch_size", (256, 512, 1024)),
        _c("n_epochs", "ppo.n_epochs", (3, 5, 10)),
        *_ppo_core(clip_high=0.4),
        _f("vf_coef", "ppo.vf_coef", 0.25, 1.0),
        _c("width", None, (64, 128, 256)),
        _i("depth", None, 1, 3),
        _c("use_ft_encoder", None, (False, True)),
        _c("ft_use_pretrained", None, (False, True), when=_ft),
        _c("ft_d_token", None, _FT_WIDTHS, when=_scratch),
        _i("ft_n_blocks", None, 1, 3, when=_scratch),
        *(
            _c(
                f"ft_n_heads_w{w}",
                None,
                tuple(h for h in (2, 4, 8) if w % h == 0),
                when=lambda p, w=w: _scratch(p) and p["ft_d_token"] == w,
            )
            for w in _FT_WIDTHS
        ),
        _f("ft_dropout", None, 0.0, 0.3, when=_ft),
        _c("ft_freeze_encoder", None, (False, True), when=_pretrained),
        _f(
            "ft_lr_scale",
            None,
            0.05,
            1.0,
            log=True,
            when=lambda p: _pretrained(p) and not p["ft_freeze_encoder"],
        ),
        _c("lookback", "env.lookback", (1, 5, 10, 20), when=lambda p: not _pretrained(p)),
        _c("reward", "env.reward", ("log_return", "excess_log_return", "differential_sharpe")),
        _c("scaler", "env.scaler", ("zscore", "robust"), when=lambda p: not _pretrained(p)),
    )

    def combine(p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"ppo.hidden_sizes": [p["width"]] * p["depth"], "ppo.ft": None}
        if _scratch(p):
            d = p["ft_d_token"]
            out["ppo.ft"] = FTPolicySettings(
                d_token=d,
                n_blocks=p["ft_n_blocks"],
                n_heads=p[f"ft_n_heads_w{d}"],
                dropout=p["ft_dropout"],
            ).model_dump(mode="json")
        elif _pretrained(p):
            if encoder is None:
                raise ValueError("ft_use_pretrained sampled True, but the space has no encoder")
            frozen = p["ft_freeze_encoder"]
            ft = encoder.settings(dropout=p["ft_dropout"], freeze=frozen,
                                  lr_scale=1.0 if frozen else p["ft_lr_scale"],
                                  pretrained_weights=encoder.weights)  # fmt: skip
            out["ppo.ft"] = ft.model_dump(mode="json")
            out["env.lookback"] = encoder.lookback
            out["env.scaler"] = encoder.meta["env"]["scaler"]
        return out

    return Space("ppo", dims, combine)


_MAPPO_FT_WIDTHS = (16, 32)


def _source(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p["encoder_source"] == name


def mappo_space(supervised: bool = False) -> Space:
    """Multi-agent PPO (``rl.mappo``): the shared PPO settings and the symbol group's
    learning rate, the master's, the critic (MAPPO or IPPO), value normalisation, the
    symbol actor's and the critics' widths and depths, the master's reward weights, and the
    shared encoder.

    The encoder: ``encoder_source`` is ``mlp`` (its width sampled) or ``ft`` (the FT state
    encoder from scratch, its width, blocks and heads among the width's divisors sampled),
    and, with ``supervised`` (the base config names a supervised bundle, found and
    checked by the objective), ``supervised``; then ``encoder_freeze`` (a pretrained
    encoder only: freezing one from random weights would freeze noise) and, when trained,
    ``encoder_lr_scale``. A supervised encoder fixes the lookback, which is then not
    sampled. The master's reward weights are sampled as they are used (not normalised).
    """
    sources = ("mlp", "ft", "supervised") if supervised else ("mlp", "ft")
    sup = _source("supervised")
    dims = (
        _f("learning_rate", "ppo.learning_rate", 1e-5, 1e-3, log=True),
        _f("master_learning_rate", "mappo.master.learning_rate", 1e-5, 1e-3, log=True),
        _c("n_steps", "ppo.n_steps", (64, 128, 256)),
        _c("n_epochs", "ppo.n_epochs", (3, 5, 10)),
        *_ppo_core(clip_high=0.3),
        _c("critic", "mappo.critic", ("centralised", "decentralised")),
        _c("value_norm", "mappo.value_norm", (True, False)),
        _c("actor_width", None, (32, 64, 128)),
        _i("actor_depth", None, 1, 3),
        _c("critic_width", None, (64, 128, 256)),
        _i("critic_depth", None, 1, 3),
        _c("symbol_embedding", "mappo.symbol_embedding", (0, 4, 8, 16)),
        _f("reward_sharpe", "mappo.master.reward.sharpe", 0.0, 1.0),
        _f("reward_log_return", "mappo.master.reward.log_return", 0.0, 1.0),
        _f("reward_drawdown", "mappo.master.reward.drawdown", 0.0, 1.0),
        _f("reward_diversification", "mappo.master.reward.diversification", 0.0, 1.0),
        _c("encoder_source", "mappo.encoder.source", sources),
        _c("encoder_width", None, (32, 64, 128), when=_source("mlp")),
        _c("ft_d_token", None, _MAPPO_FT_WIDTHS, when=_source("ft")),
        _i("ft_n_blocks", None, 1, 2, when=_source("ft")),
        *(
            _c(
                f"ft_n_heads_w{w}",
                None,
                tuple(h for h in (2, 4, 8) if w % h == 0),
                when=lambda p, w=w: p["encoder_source"] == "ft" and p["ft_d_token"] == w,
            )
            for w in _MAPPO_FT_WIDTHS
        ),
        _c("encoder_freeze", "mappo.encoder.freeze", (False, True), when=sup),
        _f("encoder_lr_scale", "mappo.encoder.lr_scale", 0.05, 1.0, log=True,
           when=lambda p: not p.get("encoder_freeze", False)),
        _c("lookback", "env.lookback", (5, 10, 20), when=lambda p: not sup(p)),
    )  # fmt: skip

    def combine(p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mappo.actor_hidden": [p["actor_width"]] * p["actor_depth"],
            "mappo.critic_hidden": [p["critic_width"]] * p["critic_depth"],
            "ppo.ft": None,
        }
        if p["encoder_source"] == "mlp":
            out["mappo.encoder.hidden"] = [p["encoder_width"]]
        elif p["encoder_source"] == "ft":
            d = p["ft_d_token"]
            out["mappo.encoder.ft"] = FTPolicySettings(
                d_token=d, n_blocks=p["ft_n_blocks"], n_heads=p[f"ft_n_heads_w{d}"]
            ).model_dump(mode="json")
        return out

    return Space("mappo", dims, combine)


def study_space(cfg: TuneConfig, encoder: PretrainedEncoder | None = None) -> Space:
    """The space a study of ``cfg`` samples, its ``space`` overrides applied: the supervised
    model's, MAPPO's (with an ``rl.mappo`` section; the supervised encoder source when it
    names a bundle) or PPO's (``encoder``: the pretrained FT encoder the arm may use)."""
    if cfg.kind == "supervised":
        space = supervised_space(cfg.supervised.model)
    elif cfg.rl.mappo is not None:
        space = mappo_space(cfg.rl.mappo.encoder.bundle is not None)
    else:
        space = ppo_space(encoder)
    return space.with_overrides(cfg.space)


__all__ = ["Dim", "Space", "mappo_space", "ppo_space", "study_space", "supervised_space"]
