"""Bundles: self-describing directories of trained artefacts (RL policies, supervised
models, pretrained encoders, ensembles), their manifests, integrity checks and
:func:`load_policy`, the one way every command turns a path into a policy."""

from cappuccino.bundles.load import PolicyBundle, load_policy

__all__ = ["PolicyBundle", "load_policy"]
