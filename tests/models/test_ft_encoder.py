"""The FT-Transformer state encoder: parameter count from the architecture, token layout,
every observation entry used, clear errors."""

from __future__ import annotations

import pytest
import torch

from cappuccino.market import ObservationSpec
from cappuccino.models.ft_transformer import FTStateEncoder, count_parameters_formula


def split_observation(obs: torch.Tensor, n: int, f: int, lag: int) -> tuple[torch.Tensor, ...]:
    return ObservationSpec(n_assets=n, n_features=f, lookback=lag).split(obs)


@pytest.mark.parametrize(
    ("lookback", "d_token", "n_blocks", "n_heads", "d_out"),
    [(1, 16, 1, 2, 8), (10, 32, 2, 4, 64), (60, 64, 3, 8, 32), (5, 96, 2, 4, 16)],
)
def test_parameter_count_matches_the_architecture(
    lookback: int, d_token: int, n_blocks: int, n_heads: int, d_out: int
) -> None:
    enc = FTStateEncoder(n_assets=7, n_features=14, lookback=lookback, d_token=d_token,
                         n_blocks=n_blocks, n_heads=n_heads, d_out=d_out)  # fmt: skip
    got = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert got == count_parameters_formula(
        n_assets=7, n_features=14, lookback=lookback, d_token=d_token, n_blocks=n_blocks,
        d_out=d_out,
    )  # fmt: skip
    assert enc.obs_dim == 1 + 7 + 14 * 7 * lookback  # cash, 7 weights, the window
    assert enc.n_tokens == 1 + 7 * 14 + 8  # [CLS], one per (asset, feature), portfolio


def test_each_feature_token_reads_exactly_its_asset_and_feature_over_all_lags() -> None:
    torch.manual_seed(0)
    n, f, lag = 3, 4, 5
    enc = FTStateEncoder(n_assets=n, n_features=f, lookback=lag, d_token=8, n_heads=2).eval()
    obs = torch.randn(1, enc.obs_dim)
    base = enc.tokens(obs)
    for lag_i, a, j in [(0, 0, 0), (4, 2, 3), (2, 1, 2)]:
        moved = obs.clone()
        port, window = split_observation(moved, n, f, lag)
        window[0, lag_i, a, j] += 1.0
        moved = torch.cat([port, window.reshape(1, -1)], dim=1)
        changed = (enc.tokens(moved) - base).abs().sum(-1)[0] > 0
        assert changed.nonzero().flatten().tolist() == [1 + a * f + j]
    # portfolio scalars: their own tokens at the end
    moved = obs.clone()
    moved[0, 2] += 1.0  # the second asset's position weight
    changed = (enc.tokens(moved) - base).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [1 + n * f + 2]


def test_every_observation_entry_reaches_the_encoding() -> None:
    torch.manual_seed(1)
    enc = FTStateEncoder(n_assets=2, n_features=3, lookback=4, d_token=8, n_heads=2, d_out=5)
    enc.eval()
    obs = torch.randn(2, enc.obs_dim, requires_grad=True)
    enc(obs).sum().backward()
    assert obs.grad is not None and (obs.grad.abs() > 0).all()
    # lag order matters: reversing the window changes the encoding
    port, window = split_observation(obs.detach(), 2, 3, 4)
    flipped = torch.cat([port, window.flip(1).reshape(2, -1)], dim=1)
    assert not torch.allclose(enc(flipped), enc(obs.detach()))


def test_bad_configs_and_observations_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="d_token 30 is not divisible by n_heads 4"):
        FTStateEncoder(n_assets=2, n_features=3, lookback=4, d_token=30, n_heads=4)
    with pytest.raises(ValueError, match="lookback: got 0"):
        FTStateEncoder(n_assets=2, n_features=3, lookback=0)
    with pytest.raises(ValueError, match="ffn_dropout: got 1.0"):
        FTStateEncoder(n_assets=2, n_features=3, lookback=4, ffn_dropout=1.0)
    enc = FTStateEncoder(n_assets=2, n_features=3, lookback=4)
    with pytest.raises(
        ValueError, match=r"expected \(batch, 27\) for 2 assets, 3 features, lookback 4"
    ):
        enc(torch.randn(1, 30))
    rebuilt = FTStateEncoder(**enc.config())
    assert rebuilt.config() == enc.config()
