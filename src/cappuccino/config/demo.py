"""The demo job's config (``make demo``): every stage's settings, defaults embedded."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from cappuccino.config.models import DataSettings, FeatureSetName, FeatureSettings, _Model
from cappuccino.config.rl import (
    ArmName,
    EnvSettings,
    FTEncoderSettings,
    MAPPOSettings,
    PPOSettings,
    PretrainSettings,
    SplitSettings,
)
from cappuccino.config.supervised import SignalBacktestSettings, TrainSettings, WindowSettings
from cappuccino.market.rules import MarketRules


def _demo_ppo() -> PPOSettings:
    return PPOSettings(
        total_timesteps=65_536, n_envs=16, n_steps=256, minibatch_size=1024, n_epochs=5
    )


def _demo_train() -> TrainSettings:
    return TrainSettings(epochs=3, batch_size=512)


class DemoSupervisedSettings(_Model):
    """One window classifier trained for a few epochs, tracked in a local MLflow store."""

    enabled: bool = Field(True, description="train and score one supervised model")
    model: str = Field("mlp", description="registered model name")
    feature_set: FeatureSetName = Field("nn23", description="registered feature set")
    windows: WindowSettings = Field(default_factory=WindowSettings)
    train: TrainSettings = Field(default_factory=_demo_train)
    backtest: SignalBacktestSettings = Field(default_factory=SignalBacktestSettings)
    tracking_uri: str | None = Field(
        None, description="MLflow URI (None: sqlite:///<output_dir>/mlflow.db)"
    )


class DemoRLSettings(_Model):
    """PPO on the sample's training period, then an out-of-sample backtest."""

    enabled: bool = Field(True, description="train and backtest a PPO policy")
    split: SplitSettings = Field(default_factory=SplitSettings)
    market: MarketRules = Field(default_factory=MarketRules)
    env: EnvSettings = Field(default_factory=EnvSettings)
    ppo: PPOSettings = Field(default_factory=_demo_ppo)
    benchmarks: list[str] | None = Field(
        None,
        description="benchmark specs (None: cash, buy_and_hold, equal_weight:24, single:BTC/USDT)",
    )
    paper_days: int = Field(
        21, ge=0, description="replay the PPO bundle as a paper session (simulated broker) over "
        "the sample's last N days and check it equals the backtest (0: off)",
    )  # fmt: skip


def _compare_ppo() -> PPOSettings:
    return PPOSettings(total_timesteps=4096, n_envs=8, n_steps=128, minibatch_size=256, n_epochs=2)


class DemoCompareSettings(_Model):
    """A miniature A/B (``rl compare``): MLP vs the FT encoder from scratch and pretrained
    (frozen, fine-tuned, and fine-tuned from an encoder pretrained on 4h bars) and MAPPO in
    its three stages, two seeds, a tiny budget; the report flags its low power."""

    enabled: bool = Field(True, description="pretrain an encoder and run the A/B")
    seeds: list[int] = Field([0, 1], min_length=2, description="seeds per arm")
    arms: list[ArmName] = Field(
        ["mlp", "ft_scratch", "ft_frozen", "ft_finetuned", "ft_transfer", "mappo"], min_length=2
    )
    transfer_timeframe: str | None = Field(
        "4h",
        description="the ft_transfer arm's encoder is pretrained on these bars (resampled by the "
        "demo; the A/B itself runs on the hourly bars)",
    )
    env: EnvSettings = Field(default_factory=lambda: EnvSettings(lookback=5, episode_bars=256))
    ppo: PPOSettings = Field(default_factory=_compare_ppo)
    encoder: FTEncoderSettings = Field(
        default_factory=lambda: FTEncoderSettings(d_token=16, n_blocks=1, n_heads=2, d_out=32)
    )
    pretrain: PretrainSettings = Field(default_factory=lambda: PretrainSettings(epochs=2))
    eval_points: int = Field(2, ge=0, description="out-of-sample checkpoints during training")
    mappo: MAPPOSettings = Field(
        default_factory=lambda: MAPPOSettings(actor_hidden=[32], critic_hidden=[64]),
        description="the multi-agent arm (its stages: symbols, master, joint)",
    )


class DemoTuneSettings(_Model):
    """A short Optuna study of the supervised model (a few trials, pruned by the median)."""

    enabled: bool = Field(True, description="run the study")
    n_trials: int = Field(4, ge=1, description="finished trials")
    epochs: int = Field(3, ge=1, description="epochs per trial")
    metric: str = Field("val_pr_auc", description="history metric maximised")
    n_startup_trials: int = Field(1, ge=0, description="trials run in full before pruning")
    warm_trials: int = Field(
        2, ge=0, description="then a second study of this many trials, warm-started from the "
        "first's top trials and narrowed to their ranges (0: off)",
    )  # fmt: skip


class DemoConfig(_Model):
    """The main job on the bundled sample: import -> validate -> features -> labels -> audit ->
    PPO -> out-of-sample backtest against benchmarks -> report."""

    seed: int = Field(0, ge=0, description="the one seed for every random choice in the run")
    output_dir: Path = Field(Path("runs/demo"), description="everything the run writes goes here")
    data: DataSettings = Field(default_factory=DataSettings)
    resample: list[str] = Field(
        ["4h", "1d"],
        description="longer timeframes built from the imported bars into the store "
        "(`data resample`: complete buckets only)",
    )
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    audit_also: list[FeatureSetName] = Field(
        ["cappuccino14+4h+1d"],
        description="further feature sets the lookahead audit checks (multi-timeframe sets: "
        "the last closed 4h and 1d bars on each hourly row)",
    )
    supervised: DemoSupervisedSettings = Field(default_factory=DemoSupervisedSettings)
    rl: DemoRLSettings = Field(default_factory=DemoRLSettings)
    tune: DemoTuneSettings = Field(default_factory=DemoTuneSettings)
    compare: DemoCompareSettings = Field(default_factory=DemoCompareSettings)

    @model_validator(mode="after")
    def _transfer_bars(self) -> DemoConfig:
        c = self.compare
        if c.enabled and "ft_transfer" in c.arms and c.transfer_timeframe not in self.resample:
            raise ValueError(
                f"compare.transfer_timeframe: got {c.transfer_timeframe}, expected one of the "
                f"resampled timeframes {self.resample} (the ft_transfer arm pretrains on them)"
            )
        return self

    @property
    def store_path(self) -> Path:
        return (
            self.data.store if self.data.store.is_absolute() else self.output_dir / self.data.store
        )
