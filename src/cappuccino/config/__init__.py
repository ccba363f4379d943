"""Typed, validated run configs, YAML loading with ``key.path=value`` overrides, secrets from env."""

from cappuccino.config.demo import DemoConfig
from cappuccino.config.loading import apply_overrides, load_config
from cappuccino.config.models import DataSettings, FeatureSettings

__all__ = ["DataSettings", "DemoConfig", "FeatureSettings", "apply_overrides", "load_config"]
