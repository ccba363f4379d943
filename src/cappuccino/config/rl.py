"""Typed configs for trading: market rules, the RL environment, PPO and the train/backtest runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from cappuccino.config.models import DataSettings, FeatureSetName, _Model
from cappuccino.market.rules import MarketRules
from cappuccino.market.timeframe import Timeframe


class EnvSettings(_Model):
    """The batched trading environment (see ``cappuccino.training.rl.env``)."""

    feature_set: FeatureSetName = Field("cappuccino14", description="registered feature set name")
    lookback: int = Field(10, ge=1, description="bars of features in each observation")
    episode_bars: int | None = Field(
        720, ge=1, description="steps per episode (None: run to the segment end)"
    )
    action_mode: Literal["target_weights", "trade"] = Field(
        "target_weights",
        description="target_weights: actions map to a simplex over assets + cash; "
        "trade: action i buys/sells action_i * trade_fraction of equity in asset i",
    )
    trade_fraction: float | None = Field(
        None, gt=0, le=1, description="trade mode order size at |action| = 1 (None: 1/n_assets)"
    )
    reward: Literal["log_return", "excess_log_return", "differential_sharpe"] = Field(
        "log_return", description="reward function name (cappuccino.training.rl.rewards)"
    )
    reward_scale: float = Field(100.0, gt=0, description="reward multiplier (100: percent units)")
    dsr_eta: float = Field(0.01, gt=0, lt=1, description="differential Sharpe adaptation rate")
    scaler: Literal["zscore", "robust", "minmax"] = Field(
        "zscore", description="feature scaler, fitted on the training segment only"
    )
    obs_clip: float = Field(10.0, gt=0, description="scaled features are clipped to +-obs_clip")


class FTEncoderSettings(_Model):
    """The architecture of an FT-Transformer state encoder
    (``models.ft_transformer.FTStateEncoder``)."""

    d_token: int = Field(32, ge=1, description="token width (divisible by n_heads)")
    n_blocks: int = Field(2, ge=1, description="transformer blocks")
    n_heads: int = Field(4, ge=1, description="attention heads")
    dropout: float = Field(0.1, ge=0, lt=1, description="attention and feed-forward dropout")
    d_out: int = Field(64, ge=1, description="encoding width fed to the heads")

    @model_validator(mode="after")
    def _heads(self) -> FTEncoderSettings:
        if self.d_token % self.n_heads:
            raise ValueError(
                f"d_token {self.d_token} is not divisible by n_heads {self.n_heads}: each head "
                "needs d_token / n_heads dimensions"
            )
        return self


class FTPolicySettings(FTEncoderSettings):
    """An FT-Transformer state encoder under PPO's actor and critic heads, from scratch or
    from a pretrained encoder (``cappuccino rl pretrain-encoder``)."""

    share: bool = Field(True, description="one encoder for actor and critic (else one each)")
    freeze: bool = Field(False, description="keep the encoder's weights fixed")
    lr_scale: float = Field(1.0, gt=0, description="encoder learning rate / PPO learning rate")
    pretrained: str | None = Field(
        None,
        description="a pretrained encoder directory, 'auto' (the latest compatible one under "
        "pretrained_root) or None (from scratch); its architecture, lookback and scaler must "
        "match the run, which observes through the encoder's scaler",
    )
    pretrained_root: Path = Field(
        Path("runs/pretrain"), description="where 'auto' looks for encoders (recursively)"
    )
    pretrained_weights: Literal["best", "final"] = Field(
        "best", description="best (lowest val loss) or final encoder of the pretraining run"
    )
    allow_timeframe_transfer: bool = Field(
        False,
        description="accept a pretrained encoder of another timeframe (pretrained on 1h, "
        "fine-tuned on 4h); the run then fits its own observation scaler on its training "
        "period, and the bundle records the transfer",
    )


class PPOSettings(_Model):
    """In-house PPO (CleanRL-style). Every field is read by ``cappuccino.training.rl.ppo``."""

    total_timesteps: int = Field(100_000, ge=1, description="env steps summed over all envs")
    n_envs: int = Field(16, ge=1, description="environments stepped as one batch")
    n_steps: int = Field(128, ge=1, description="rollout length per env and update")
    n_epochs: int = Field(10, ge=1, description="passes over each rollout")
    minibatch_size: int = Field(512, ge=1, description="samples per gradient step")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate")
    lr_schedule: Literal["constant", "linear"] = Field(
        "linear", description="linear: anneal to 0 over total_timesteps"
    )
    adam_eps: float = Field(1e-5, gt=0, description="Adam epsilon")
    gamma: float = Field(0.99, gt=0, le=1, description="discount per bar")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip_coef: float = Field(0.2, gt=0, description="policy ratio clip")
    clip_value: float | None = Field(
        None, gt=0, description="value-loss clip around old values (None: unclipped)"
    )
    vf_coef: float = Field(0.5, ge=0, description="value loss weight")
    ent_coef: float = Field(0.0, ge=0, description="entropy bonus weight")
    max_grad_norm: float = Field(0.5, gt=0, description="global gradient norm clip")
    norm_adv: bool = Field(True, description="normalise advantages per minibatch")
    target_kl: float | None = Field(
        None, gt=0, description="stop an update's epochs once approx KL exceeds this"
    )
    hidden_sizes: list[int] = Field(
        [64, 64], min_length=1, description="MLP widths (actor, critic)"
    )
    activation: Literal["tanh", "relu"] = Field("tanh", description="MLP activation")
    log_std_init: float = Field(-0.5, description="initial log std of the Gaussian")
    ft: FTPolicySettings | None = Field(
        None, description="FT-Transformer encoder under the heads (None: MLP on the flat obs)"
    )
    action_dist: Literal["tanh_gaussian", "clipped_gaussian"] = Field(
        "tanh_gaussian",
        description="tanh_gaussian: a = tanh(u), log-prob with the tanh correction; "
        "clipped_gaussian: a = clip(u, -1, 1), exact Gaussian log-prob and entropy (SB3's choice)",
    )
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N")

    @model_validator(mode="after")
    def _batch(self) -> PPOSettings:
        batch = self.n_envs * self.n_steps
        if self.minibatch_size > batch:
            raise ValueError(
                f"minibatch_size: got {self.minibatch_size}, expected <= n_envs * n_steps = {batch}"
            )
        return self

    @property
    def batch_size(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def n_updates(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)


class MasterRewardSettings(_Model):
    """Weights of the portfolio master's composite reward
    (``cappuccino.training.rl.rewards.master_reward_terms``; the seed design's 0.4 Sharpe +
    0.3 return + 0.2 drawdown + 0.1 diversification)."""

    sharpe: float = Field(0.4, description="differential Sharpe ratio of the bar (unitless)")
    sharpe_clip: float = Field(3.0, gt=0, description="the Sharpe term is clipped to +-this")
    log_return: float = Field(0.3, description="bar log return x env.reward_scale")
    drawdown: float = Field(
        0.2, description="minus the bar's change in log drawdown from the episode peak x "
        "env.reward_scale",
    )  # fmt: skip
    diversification: float = Field(
        0.1, description="invested share x (1 - Herfindahl index of the invested weights)"
    )


class MasterSettings(_Model):
    """The portfolio master: a gross-exposure multiplier and per-symbol caps from the
    portfolio telemetry and the symbol agents' intents (``models.multiagent``)."""

    hidden: list[int] = Field([64, 64], min_length=1, description="trunk MLP widths")
    cap_hidden: int = Field(32, ge=1, description="width of the shared per-symbol cap head")
    symbol_embedding: int = Field(4, ge=0, description="symbol id embedding of the cap head")
    learning_rate: float = Field(1e-4, gt=0, description="Adam learning rate of the master")
    reward: MasterRewardSettings = Field(default_factory=MasterRewardSettings)


class SymbolEncoderSettings(_Model):
    """The encoder every symbol agent shares: one symbol's window -> an encoding."""

    source: Literal["mlp", "supervised", "ft"] = Field(
        "mlp",
        description="mlp: an MLP over the window from scratch; supervised: the penultimate "
        "layer of a `cappuccino train` bundle (lstm_attention, gru_attention, cnn_lstm, mlp; "
        "its feature set, lookback, scaler and symbols must match the run); ft: the FT state "
        "encoder over the whole observation as shared context (scratch or pretrained)",
    )
    hidden: list[int] = Field([64], min_length=1, description="mlp source: MLP widths")
    bundle: Path | None = Field(None, description="supervised source: the model bundle")
    ft: FTPolicySettings | None = Field(
        None, description="ft source: its architecture and pretrained weights"
    )
    freeze: bool = Field(False, description="keep the encoder's weights fixed")
    lr_scale: float = Field(1.0, gt=0, description="encoder learning rate / symbol learning rate")

    @model_validator(mode="after")
    def _source(self) -> SymbolEncoderSettings:
        if self.source == "supervised" and self.bundle is None:
            raise ValueError("bundle: the supervised source needs a model bundle directory")
        if self.source == "ft" and self.ft is None:
            raise ValueError("ft: the ft source needs its settings (ft: {d_token: 32, ...})")
        return self


class MAPPOSettings(_Model):
    """Multi-agent PPO (``cappuccino.training.rl.mappo``): per-symbol agents sharing one
    actor (with a learned symbol embedding) and a portfolio master. The PPO settings
    (rollout sizes, gamma, GAE lambda, clip, coefficients, the symbol learning rate) come
    from ``ppo``."""

    critic: Literal["centralised", "decentralised"] = Field(
        "centralised",
        description="centralised: MAPPO (critics see the global state plus the agent's own "
        "features); decentralised: IPPO (each critic sees what its actor sees)",
    )
    stage: Literal["symbols", "master", "joint"] = Field(
        "symbols",
        description="symbols: train the symbol agents, master fixed at multiplier 1 and no "
        "caps; master: train the master, symbol agents frozen (deterministic); joint: both, "
        "the symbol encoder frozen",
    )
    parent: Path | None = Field(
        None, description="the previous stage's bundle (required by master and joint)"
    )
    encoder: SymbolEncoderSettings = Field(default_factory=SymbolEncoderSettings)
    actor_hidden: list[int] = Field([64, 64], min_length=1, description="symbol actor widths")
    critic_hidden: list[int] = Field([128, 128], min_length=1, description="critic widths")
    symbol_embedding: int = Field(8, ge=0, description="learned symbol id embedding width")
    value_norm: bool = Field(True, description="normalise value targets (running mean/std)")
    clip_value: float | None = Field(
        0.2, gt=0, description="clipped value loss around the old values, in normalised "
        "units (None: unclipped)",
    )  # fmt: skip
    master: MasterSettings = Field(default_factory=MasterSettings)

    @model_validator(mode="after")
    def _stage(self) -> MAPPOSettings:
        if self.stage != "symbols" and self.parent is None:
            raise ValueError(
                f"parent: stage {self.stage!r} starts from the previous stage's bundle"
            )
        return self


class SplitSettings(_Model):
    """Chronological periods; bounds are inclusive UTC times (ISO 8601)."""

    train_start: datetime | None = Field(None, description="first training bar (None: data start)")
    train_end: datetime = Field(
        datetime.fromisoformat("2021-03-31T23:00:00+00:00"), description="last training bar"
    )
    test_start: datetime | None = Field(
        None, description="first out-of-sample bar (None: the bar after train_end + embargo)"
    )
    test_end: datetime | None = Field(None, description="last out-of-sample bar (None: data end)")
    embargo_bars: int = Field(24, ge=0, description="bars skipped between train and test")


class PretrainSettings(_Model):
    """Masked feature modelling (``cappuccino rl pretrain-encoder``)."""

    mask_ratio: float = Field(0.15, gt=0, lt=1, description="share of feature tokens masked")
    epochs: int = Field(20, ge=1, description="passes over the pretraining windows")
    batch_size: int = Field(256, ge=1, description="windows per step")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="last share of the training period used for validation"
    )
    embargo_bars: int | None = Field(
        None,
        ge=0,
        description="bars dropped between pretrain-train and val (None: lookback; "
        "must be >= lookback)",
    )
    patience: int | None = Field(5, ge=1, description="stop after this many epochs without a "
                                 "better val loss (None: run every epoch)")  # fmt: skip
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N")


class PretrainConfig(_Model):
    """``cappuccino rl pretrain-encoder``: an FT encoder pretrained by masked feature
    modelling on the training period of a split (never on bars later used for testing)."""

    seed: int = Field(0, ge=0, description="the one seed for every random choice in the run")
    output_dir: Path = Field(
        Path("runs/pretrain/encoder"), description="encoder files are written here"
    )
    data: DataSettings = Field(default_factory=DataSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    env: EnvSettings = Field(
        default_factory=EnvSettings,
        description="observation settings (feature_set, lookback, scaler, obs_clip) of the "
        "RL runs that will load the encoder",
    )
    encoder: FTEncoderSettings = Field(default_factory=FTEncoderSettings)
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)

    @model_validator(mode="after")
    def _embargo(self) -> PretrainConfig:
        e = self.pretrain.embargo_bars
        if e is not None and e < self.env.lookback:
            raise ValueError(
                f"pretrain.embargo_bars: got {e}, expected >= env.lookback ({self.env.lookback})"
            )
        return self


class RLTrainConfig(_Model):
    """``cappuccino rl train``: PPO on the training period of a store's symbols."""

    seed: int = Field(0, ge=0, description="the one seed for every random choice in the run")
    output_dir: Path = Field(Path("runs/rl"), description="the bundle is written here")
    data: DataSettings = Field(default_factory=DataSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    market: MarketRules = Field(default_factory=MarketRules)
    env: EnvSettings = Field(default_factory=EnvSettings)
    ppo: PPOSettings = Field(default_factory=PPOSettings)
    mappo: MAPPOSettings | None = Field(
        None, description="multi-agent PPO (None: single-agent PPO on the flat observation)"
    )
    compile: bool = Field(
        False,
        description="torch.compile the env transition and the PPO loss (speed only: a one-off "
        "compilation, same results up to floating-point rounding; needs a C++ compiler on CPU)",
    )

    @model_validator(mode="after")
    def _multiagent(self) -> RLTrainConfig:
        if self.mappo is None:
            return self
        if self.ppo.ft is not None:
            raise ValueError(
                "ppo.ft: multi-agent runs take their encoder from mappo.encoder "
                "(source: ft, ft: {...}); leave ppo.ft unset"
            )
        if self.env.action_mode != "target_weights":
            raise ValueError(
                f"env.action_mode: got {self.env.action_mode!r}, multi-agent scores are "
                "target weights (expected 'target_weights')"
            )
        return self


ArmName = Literal["mlp", "ft_scratch", "ft_frozen", "ft_finetuned", "ft_transfer", "mappo", "ippo"]
StageName = Literal["symbols", "master", "joint"]


def _symbols_first(stages: list[str]) -> list[str]:
    if not stages or stages[0] != "symbols":
        raise ValueError(f"got {stages}, expected the symbols stage first")
    return stages


# multi-agent stages run in turn, each from the previous one's weights (rl compare, tune)
StageList = Annotated[list[StageName], AfterValidator(_symbols_first)]
ALL_STAGES: list[StageName] = ["symbols", "master", "joint"]


class CompareConfig(_Model):
    """``cappuccino rl compare``: PPO arms on identical data, budget and seeds, judged out of
    sample on the split's test period.

    Arms: ``mlp`` (the MLP baseline), ``ft_scratch`` (the FT encoder from random weights),
    ``ft_frozen`` and ``ft_finetuned`` (from the pretrained encoder, frozen, or trained
    at ``finetune_lr_scale`` times the PPO learning rate), ``ft_transfer`` (fine-tuned like
    ``ft_finetuned`` from an encoder pretrained on ``transfer_timeframe``: pretrained on 1h,
    fine-tuned on the run's 4h). Every FT arm has the ``encoder`` architecture; the
    pretrained encoder is ``pretrained`` (``transfer_pretrained``) or, when None, one
    pretrained by this comparison on the training period (its time is reported apart).
    ``mappo`` and ``ippo`` are multi-agent arms (``mappo`` settings, with a centralised or
    decentralised critic) that run ``mappo_stages`` in turn, each stage starting from the
    previous one's bundle; the PPO budget is split between the stages in whole rollouts,
    so every arm trains on the same number of timesteps.
    """

    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=2, description="one run per arm and seed")
    output_dir: Path = Field(Path("runs/compare"), description="runs, encoder and report")
    rl: RLTrainConfig = Field(
        default_factory=RLTrainConfig,
        description="the run every arm starts from (data, split, market, env, ppo); its "
        "ppo.ft is replaced by the arm's",
    )
    arms: list[ArmName] = Field(
        ["mlp", "ft_scratch", "ft_frozen", "ft_finetuned"],
        min_length=2,
        description="arms compared; the first is the baseline",
    )
    encoder: FTEncoderSettings = Field(default_factory=FTEncoderSettings)
    finetune_lr_scale: float = Field(0.1, gt=0, description="ft_finetuned encoder lr / PPO lr")
    pretrained: Path | None = Field(
        None, description="an existing pretrained encoder (None: pretrain one now)"
    )
    transfer_timeframe: str | None = Field(
        None,
        description="the timeframe the ft_transfer arm's encoder is pretrained on (same store, "
        "symbols, feature set and training period as the run, another timeframe)",
    )
    transfer_pretrained: Path | None = Field(
        None, description="an existing encoder of transfer_timeframe (None: pretrain one now)"
    )
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)
    mappo: MAPPOSettings = Field(
        default_factory=MAPPOSettings,
        description="the multi-agent arms' settings (their critic, stage and parent are set "
        "by the arm)",
    )
    mappo_stages: StageList = Field(
        ALL_STAGES, description="the stages a multi-agent arm runs, in order (the first: symbols)"
    )
    benchmarks: list[str] = Field(
        ["equal_weight:24", "buy_and_hold", "cash"],
        description="benchmarks backtested on the test period (degenerate-policy check)",
    )
    eval_points: int = Field(4, ge=0, description="out-of-sample checkpoints during training")
    smooth_updates: int = Field(5, ge=1, description="updates in the learning curve's mean")
    efficiency_level: float | None = Field(
        None,
        description="training episode log return whose first reach is the sample "
        "efficiency (None: the median over runs of the final smoothed value)",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level (Holm-adjusted)")
    bootstrap_block: int = Field(24, ge=1, description="bars per bootstrap block")
    processes: bool = Field(
        True, description="each run in its own process (peak memory per run is measurable)"
    )

    @model_validator(mode="after")
    def _arms(self) -> CompareConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms: got {self.arms}, expected each arm once")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: got {self.seeds}, expected distinct seeds")
        if "ft_transfer" in self.arms:
            if self.transfer_timeframe is None:
                raise ValueError("transfer_timeframe: the ft_transfer arm needs the timeframe "
                                 "its encoder is pretrained on (such as 1h)")  # fmt: skip
            try:
                tf = Timeframe.parse(self.transfer_timeframe)
            except ValueError as exc:
                raise ValueError(f"transfer_timeframe: {exc}") from None
            if tf == self.rl.data.tf:
                raise ValueError(
                    f"transfer_timeframe: got {self.transfer_timeframe}, the run's own "
                    f"timeframe; expected another one (the transfer arm's point)"
                )
        multi = {"mappo", "ippo"} & set(self.arms)
        if multi and self.rl.ppo.n_updates < len(self.mappo_stages):
            raise ValueError(
                f"rl.ppo.total_timesteps: got {self.rl.ppo.total_timesteps} "
                f"({self.rl.ppo.n_updates} updates), expected at least one update per stage "
                f"of {self.mappo_stages}"
            )
        if multi and self.rl.env.action_mode != "target_weights":
            raise ValueError(
                f"rl.env.action_mode: got {self.rl.env.action_mode!r}, expected "
                "target_weights (the multi-agent arms emit scores)"
            )
        return self
