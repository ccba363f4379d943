"""Config loading: defaults, YAML, overrides, validation errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cappuccino.config import DemoConfig, apply_overrides, load_config
from cappuccino.config.secrets import exchange_credentials
from cappuccino.features.labels import ForwardReturnLabel


def test_defaults_yaml_and_overrides(tmp_path: Path) -> None:
    assert load_config(DemoConfig).features.feature_set == "cappuccino14"
    p = tmp_path / "c.yaml"
    p.write_text(
        "seed: 7\nfeatures:\n  feature_set: nn23\n  labels:\n    - kind: forward_return\n"
        "      horizon: 6\n"
    )
    cfg = load_config(DemoConfig, p, ["data.timeframe=60m", "features.drop_warmup=false"])
    assert cfg.seed == 7 and cfg.features.feature_set == "nn23"
    assert cfg.features.labels == [ForwardReturnLabel(horizon=6)]
    assert cfg.data.timeframe == "1h" and cfg.features.drop_warmup is False
    assert cfg.store_path == Path("runs/demo/store")


def test_invalid_values_name_the_field() -> None:
    # one line: the dotted field, the value, what was expected (pydantic's block condensed)
    with pytest.raises(
        ValueError, match=r"^data.on_gap: got 'sometimes', input should be 'fill', 'keep' or"
    ):
        load_config(DemoConfig, None, ["data.on_gap=sometimes"])
    with pytest.raises(ValueError, match=r"^seed: got -1, input should be greater than or equal"):
        load_config(DemoConfig, None, ["seed=-1"])
    with pytest.raises(ValueError, match="unknown key 'unknown_field'"):
        load_config(DemoConfig, None, ["unknown_field=1"])
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ValueError, match=r"compare.transfer_timeframe: got 4h, expected one of "
                       r"the resampled timeframes \['1d'\]"):  # fmt: skip
        load_config(DemoConfig, None, ["resample=[1d]"])
    assert load_config(DemoConfig, None, ["resample=[1d]", "compare.arms=[mlp,ft_scratch]"])


def test_credentials_only_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPPUCCINO_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("CAPPUCCINO_BINANCE_SECRET", raising=False)
    assert exchange_credentials("binance") == {}
    monkeypatch.setenv("CAPPUCCINO_BINANCE_API_KEY", "k")
    with pytest.raises(ValueError, match="set together"):
        exchange_credentials("binance")
    monkeypatch.setenv("CAPPUCCINO_BINANCE_SECRET", "s")
    assert exchange_credentials("binance") == {"apiKey": "k", "secret": "s"}


def test_shipped_demo_config_equals_the_embedded_defaults() -> None:
    shipped = load_config(DemoConfig, Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert shipped == DemoConfig()


def test_shipped_rl_config_equals_the_embedded_defaults_but_the_store() -> None:
    from cappuccino.config.rl import RLTrainConfig

    shipped = load_config(RLTrainConfig, Path(__file__).parents[1] / "configs" / "rl.yaml")
    assert shipped == RLTrainConfig.model_validate({"data": {"store": "runs/demo/store"}})


def test_rl_config_rejects_bad_values_naming_the_field() -> None:

    from cappuccino.config.rl import RLTrainConfig

    with pytest.raises(ValueError, match=r"^ppo: minibatch_size: got 100000, expected <= n_envs"):
        load_config(RLTrainConfig, None, ["ppo.minibatch_size=100000"])
    with pytest.raises(ValueError, match=r"^env.reward: got 'sharpe', input should be"):
        load_config(RLTrainConfig, None, ["env.reward=sharpe"])
    with pytest.raises(
        ValueError, match=r"unknown key 'ppo.learning_rat' \(did you mean 'learning_rate'\?\)"
    ):
        load_config(RLTrainConfig, None, ["ppo.learning_rat=0.1"])
    with pytest.raises(ValueError, match=r"unknown key 'zzz'$"):
        load_config(RLTrainConfig, None, ["zzz=1"])


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs" / "train").glob("*.yaml"))
)
def test_shipped_train_configs_validate_and_build_their_model(path: Path) -> None:
    from cappuccino.config.supervised import SupervisedConfig
    from cappuccino.features.sets import get_feature_set
    from cappuccino.models.registry import build_model

    cfg = load_config(SupervisedConfig, path)
    assert cfg.model == path.stem
    n_features = len(get_feature_set(cfg.feature_set).columns)
    build_model(cfg.model, n_features=n_features, window=cfg.windows.lookback, n_assets=7,
                overrides=cfg.model_config_)  # fmt: skip


def test_shipped_campaign_and_tune_configs_validate() -> None:
    from cappuccino.config.supervised import SupervisedConfig
    from cappuccino.config.tuning import TuneConfig
    from cappuccino.tuning.spaces import supervised_space

    root = Path(__file__).parents[1] / "configs"
    campaign = load_config(SupervisedConfig, root / "campaign.yaml")
    assert campaign.backtest.enabled and campaign.train.keep_top_k == 3
    tune = load_config(TuneConfig, root / "tune.yaml")
    space = supervised_space(tune.supervised.model).with_overrides(tune.space)
    (lr,) = [d for d in space.dims if d.name == "learning_rate"]
    assert (lr.low, lr.high, lr.log) == (0.0001, 0.003, True)
    assert tune.storage.url.startswith("sqlite:///")


def test_shipped_compare_configs_validate() -> None:
    from cappuccino.config.rl import CompareConfig

    root = Path(__file__).parents[1] / "configs"
    arms = {p.stem: load_config(CompareConfig, p).arms for p in root.glob("compare*.yaml")}
    assert arms["compare_transfer"] == ["ft_scratch", "ft_transfer"]
    assert arms["compare_mappo"][0] == arms["compare"][0] == "mlp"
    transfer = load_config(CompareConfig, root / "compare_transfer.yaml")
    assert (transfer.transfer_timeframe, transfer.rl.data.timeframe) == ("1h", "4h")


def test_unknown_yaml_key_names_the_file_and_the_nearest_key(tmp_path: Path) -> None:
    from cappuccino.config.rl import RLTrainConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo:\n  lerning_rate: 0.1\n")
    with pytest.raises(
        ValueError,
        match=r"bad.yaml: unknown key 'ppo.lerning_rate' \(did you mean 'learning_rate'\?\)",
    ):
        load_config(RLTrainConfig, bad)
