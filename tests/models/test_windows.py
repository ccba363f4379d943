"""The six window classifiers: shape contract, parameter counts, gradients, validation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from rtdl_revisiting_models import FTTransformer

from cappuccino.models import count_parameters
from cappuccino.models.registry import MODELS, build_model, model_config

WINDOW = {"ft_transformer": 8}


def _build(name: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        name, n_features=14, window=WINDOW.get(name, 32), n_assets=5, overrides=overrides
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_contract_logits_per_window_and_every_parameter_learns(name: str) -> None:
    model = _build(name)
    w = WINDOW.get(name, 32)
    x = torch.randn(6, w, 14)
    asset = torch.tensor([0, 1, 2, 3, 4, 0])
    out = model(x, asset)
    assert out.shape == (6,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    a, b = _build(name).eval(), _build(name).eval()
    assert torch.equal(a(x, asset), b(x, asset))  # same seed, same weights


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"price_action_transformer"}))
def test_asset_ids_reach_the_output(name: str) -> None:
    model = _build(name).eval()
    x = torch.randn(1, WINDOW.get(name, 32), 14).expand(5, -1, -1)
    out = model(x, torch.arange(5))
    assert out.unique().numel() == 5


def test_price_action_transformer_has_the_seed_parameter_count() -> None:
    # linear 14->128: 1,920; 2 encoder layers of 198,272; head 128->64->1: 8,321
    model = build_model("price_action_transformer", n_features=14, window=64)
    assert count_parameters(model) == 406_785


def test_gru_defaults_and_ft_transformer_is_the_published_model() -> None:
    gru = model_config("gru_attention")
    assert (gru.hidden, gru.heads) == (64, 2)  # type: ignore[attr-defined]
    ft = _build("ft_transformer")
    assert any(isinstance(m, FTTransformer) for m in ft.modules())


def test_attention_width_is_its_own_when_set() -> None:
    # the seed's lstm trial 62: 2 x 128, attention 64, 4 heads
    m = _build("lstm_attention", hidden=128, attention_dim=64, heads=4)
    (attn,) = [x for x in m.modules() if isinstance(x, torch.nn.MultiheadAttention)]
    assert (attn.embed_dim, attn.num_heads) == (64, 4)
    assert m.proj is not None and (m.proj.in_features, m.proj.out_features) == (128, 64)
    # by hand: the projection 128*64+64, attention 4*64*64+4*64 and its norms 2*2*64 more,
    # and the head's first layer (64+8)*64+64 instead of (128+8)*64+64
    base = count_parameters(_build("lstm_attention"))
    attn128 = 4 * 128 * 128 + 4 * 128 + 2 * 2 * 128
    attn64 = 4 * 64 * 64 + 4 * 64 + 2 * 2 * 64
    head = ((128 + 8) - (64 + 8)) * 64
    assert count_parameters(m) == base + 128 * 64 + 64 + attn64 - attn128 - head
    x = torch.randn(3, 32, 14)
    assert m(x, torch.arange(3)).shape == (3,)
    with pytest.raises(ValueError, match=r"heads: got 3, expected a divisor of attention_dim=64"):
        _build("lstm_attention", attention_dim=64, heads=3)


def test_bad_configs_are_clear_errors() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        model_config("mlp", {"hiden": [8]})
    with pytest.raises(ValueError, match=r"heads: got 3, expected a divisor of hidden=128"):
        _build("lstm_attention", heads=3)
    with pytest.raises(ValueError, match="expected one of"):
        build_model("xgboost", n_features=1, window=1)
    with pytest.raises(ValueError, match="window: got 0"):
        build_model("mlp", n_features=3, window=0)
