"""Causal features, labels and the lookahead audit.

Features at bar t use bars up to t; labels (the only forward-looking code) live in
:mod:`cappuccino.features.labels`.
"""

from cappuccino.features.pipeline import FeatureReport, compute_features
from cappuccino.features.sets import FEATURE_SETS, FeatureSet, get_feature_set

__all__ = ["FEATURE_SETS", "FeatureReport", "FeatureSet", "compute_features", "get_feature_set"]
