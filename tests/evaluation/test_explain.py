"""Explanations of a policy's actions: on a synthetic market where one feature of one asset
alone decides the trained policy's action, that token ranks first; integrated gradients
are complete; the [CLS] attention is the attention the encoder computes."""

from __future__ import annotations

import functools

import torch

from cappuccino.evaluation.explain import (
    cls_attention,
    deterministic_action,
    explain,
    integrated_gradients,
    token_attributions,
)
from cappuccino.market import ObservationSpec
from cappuccino.models.actor_critic import ActorCritic

SYMBOLS = ("AAA/USDT", "BBB/USDT", "CCC/USDT")
FEATURES = ("rsi", "ret_1", "macd", "vol")
LOOKBACK = 4
SIGNAL_ASSET, SIGNAL_FEATURE = 1, 2  # BBB/USDT macd
SPEC = ObservationSpec(n_assets=3, n_features=4, lookback=LOOKBACK)


def _market(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations (standard normal features and random portfolio weights) and the action
    that is right on this market: only BBB's latest macd says where BBB goes next, so the
    right action buys BBB on a positive reading and sells it on a negative one."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, SPEC.dim, generator=g)
    head = torch.rand(n, SPEC.head_dim, generator=g)
    obs[:, : SPEC.head_dim] = head / head.sum(dim=1, keepdim=True)
    signal = obs[:, SPEC.head_dim + SIGNAL_ASSET * len(FEATURES) + SIGNAL_FEATURE]  # lag 0
    target = torch.zeros(n, len(SYMBOLS))
    target[:, SIGNAL_ASSET] = torch.tanh(2.0 * signal)
    return obs, target


@functools.cache
def _trained(encoder: bool) -> ActorCritic:
    torch.manual_seed(0)
    ft = {"n_assets": 3, "n_features": 4, "lookback": LOOKBACK, "d_token": 16, "n_blocks": 2,
          "n_heads": 2, "attention_dropout": 0.0, "ffn_dropout": 0.0, "d_out": 16}  # fmt: skip
    net = ActorCritic(obs_dim=SPEC.dim, action_dim=3, hidden_sizes=(32,),
                      encoder=ft if encoder else None)  # fmt: skip
    obs, target = _market(4096, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(300):
        idx = torch.randint(0, obs.shape[0], (128,), generator=torch.Generator().manual_seed(step))
        loss = ((deterministic_action(net, obs[idx]) - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_obs, test_target = _market(512, seed=2)
    with torch.no_grad():
        assert ((net.act(test_obs) - test_target) ** 2).mean() < 0.02  # it learned the market
    return net


def test_the_one_informative_token_ranks_first_for_an_ft_and_an_mlp_policy() -> None:
    obs, _ = _market(256, seed=3)
    for encoder in (True, False):
        net = _trained(encoder)
        e = explain(net, obs, SYMBOLS, FEATURES, LOOKBACK)
        top = e.ranked()[0]
        assert top["token"] == "BBB/USDT macd" and top["rank"] == 1, e.ranked()[:3]
        assert top["gradient_share"] > 0.5
        assert e.gradient_map[SIGNAL_ASSET][SIGNAL_FEATURE] == top["gradient_share"]
        assert e.completeness_error < 0.05
        assert len(e.tokens) == 3 * 4 + 1 + 3
        if encoder:
            assert e.attention_map is not None
            total = sum(t["attention"] for t in e.tokens)
            assert 0.0 < total < 1.0  # the rest is [CLS]'s attention to itself
        else:
            assert e.attention_map is None and all(t["attention"] is None for t in e.tokens)


def test_integrated_gradients_are_complete_and_exact_for_a_linear_policy() -> None:
    w = torch.randn(SPEC.dim, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    obs = torch.randn(5, SPEC.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def act(x: torch.Tensor) -> torch.Tensor:
        return x @ w

    attr, change = integrated_gradients(act, obs, steps=4)
    # linear: the attribution of input i is x_i * sum_a sign(change_a) * w_ia, exactly
    sign = torch.sign(obs @ w)
    assert torch.allclose(attr, obs * (sign @ w.T))
    assert torch.allclose(attr.sum(dim=1), change)
    per_token = token_attributions(attr, SPEC)
    assert per_token.shape == (5, 12 + 4) and torch.allclose(per_token.sum(dim=1), change)


def test_cls_attention_is_the_encoders_own() -> None:
    """Rebuilt from the attention probabilities, the [CLS] output of the first block equals
    what rtdl's attention module computes; every row is a distribution."""
    net = _trained(True)
    enc = net.encoder
    assert enc is not None
    obs, _ = _market(8, seed=4)
    att = cls_attention(enc, obs)
    assert att.shape == (8, enc.n_tokens)
    assert torch.allclose(att.sum(dim=1), torch.ones(8))
    block = enc.backbone.blocks[0]
    x = enc.tokens(obs)
    a = block["attention"]
    with torch.no_grad():
        q, k, v = a.W_q(x[:, :1]), a.W_k(x), a.W_v(x)
        h, d = a._n_heads, k.shape[-1] // a._n_heads
        p = torch.softmax(
            (q.reshape(8, 1, h, d).transpose(1, 2) @ k.reshape(8, -1, h, d).transpose(1, 2)
             .transpose(-1, -2)) / d**0.5, dim=-1)  # fmt: skip
        mine = (p @ v.reshape(8, -1, h, d).transpose(1, 2)).transpose(1, 2).reshape(8, 1, -1)
        theirs = a(x[:, :1], x)
        assert torch.allclose(a.W_out(mine), theirs, atol=1e-6)
