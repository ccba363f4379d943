"""The demo job's config (``make demo``): every stage's settings, defaults embedded."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cappuccino.config.models import DataSettings, FeatureSettings, _Model
from cappuccino.config.rl import EnvSettings, MarketSettings, PPOSettings, SplitSettings


def _demo_ppo() -> PPOSettings:
    return PPOSettings(
        total_timesteps=65_536, n_envs=16, n_steps=256, minibatch_size=1024, n_epochs=5
    )


class DemoRLSettings(_Model):
    """PPO on the sample's training period, then an out-of-sample backtest."""

    enabled: bool = Field(True, description="train and backtest a PPO policy")
    split: SplitSettings = Field(default_factory=SplitSettings)
    market: MarketSettings = Field(default_factory=MarketSettings)
    env: EnvSettings = Field(default_factory=EnvSettings)
    ppo: PPOSettings = Field(default_factory=_demo_ppo)
    benchmarks: list[str] | None = Field(
        None,
        description="benchmark specs (None: cash, buy_and_hold, equal_weight:24, single:BTC/USDT)",
    )


class DemoConfig(_Model):
    """The main job on the bundled sample: import -> validate -> features -> labels -> audit ->
    PPO -> out-of-sample backtest against benchmarks -> report."""

    seed: int = Field(0, ge=0, description="the one seed for every random choice in the run")
    output_dir: Path = Field(Path("runs/demo"), description="everything the run writes goes here")
    data: DataSettings = Field(default_factory=DataSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    rl: DemoRLSettings = Field(default_factory=DemoRLSettings)

    @property
    def store_path(self) -> Path:
        return (
            self.data.store if self.data.store.is_absolute() else self.output_dir / self.data.store
        )
