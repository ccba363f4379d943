"""Multi-agent actor-critic: per-symbol agents sharing one encoder and actor, and a
portfolio master (``cappuccino.training.rl.mappo``).

Symbol agents (one per symbol, parameters shared):

- An encoder maps each symbol's window ``(L, F)`` to an encoding: an MLP from scratch
  (``mlp``); the penultimate layer of a supervised window classifier (``supervised``: the
  input of the model's last linear layer, its time axis flipped to oldest first as it was
  trained); or, with ``ft``, the raw window plus the FT state encoder's encoding of the
  whole observation as context shared by every symbol.
- The actor reads ``[encoding, context, own weight, cash, embedding(symbol id)]`` and
  emits one score's mean; a shared ``log_std``; scores are ``tanh``-squashed Gaussians
  (the log-density carries the tanh correction, as in
  :class:`~cappuccino.models.actor_critic.ActorCritic`).
- The critic gives one value per agent: with ``centralised`` (MAPPO) from the actor's
  input plus an encoding of the global state; with ``decentralised`` (IPPO) from the
  actor's input alone.

The master (its own networks, optimiser and value normaliser): a trunk over the master
observation (telemetry and aggregated intents), a head for the gross-exposure multiplier,
and a cap head shared across symbols that reads the trunk's output, the symbol's intended
and current weight and a symbol embedding. Its output biases start at ``+1.5`` (multiplier
and caps at 0.95), so a master starts close to the fixed master the symbol stage trained
under. Both groups are permutation equivariant: permuting the symbols together with their
ids (``symbol_ids``) permutes the scores and caps the same way (the ``ft`` context encoder
has per-slot weights and is not).

Values are predicted in normalised units (:class:`ValueNorm`) when ``value_norm`` is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cappuccino.market.multiagent import MultiAgentSpec
from cappuccino.market.observation import ObservationSpec
from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.models.mlp import MLP

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)
SUPERVISED_ENCODERS: tuple[str, ...] = ("lstm_attention", "gru_attention", "cnn_lstm", "mlp")


class ValueNorm(nn.Module):
    """Running mean and variance of value targets (the reference MAPPO implementation's
    ``ValueNorm``): debiased exponential averages with ``beta``, variance floored at
    ``1e-2``. ``enabled=False`` makes every map the identity."""

    running_mean: Tensor
    running_mean_sq: Tensor
    debiasing: Tensor

    def __init__(self, *, enabled: bool = True, beta: float = 0.99999, eps: float = 1e-5) -> None:
        super().__init__()
        self.enabled, self.beta, self.eps = enabled, beta, eps
        for name in ("running_mean", "running_mean_sq", "debiasing"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64))

    def update(self, x: Tensor) -> None:
        """Fold a batch of targets into the averages."""
        if not self.enabled:
            return
        x = x.detach().to(torch.float64)
        b = self.beta
        self.running_mean.mul_(b).add_((1 - b) * x.mean())
        self.running_mean_sq.mul_(b).add_((1 - b) * (x * x).mean())
        self.debiasing.mul_(b).add_(1 - b)

    def mean_std(self) -> tuple[Tensor, Tensor]:
        d = self.debiasing.clamp_min(self.eps)
        mean = self.running_mean / d
        var = (self.running_mean_sq / d - mean * mean).clamp_min(1e-2)
        return mean, var.sqrt()

    def normalize(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        mean, std = self.mean_std()
        return ((x - mean) / std).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        mean, std = self.mean_std()
        return (x * std + mean).to(x.dtype)


class SquashedSample(NamedTuple):
    """Pre-squash draws ``u``, actions ``tanh(u)`` and per-dimension log-densities."""

    u: Tensor
    action: Tensor
    log_prob: Tensor


def squashed_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Per-dimension ``log pi(tanh(u))`` of ``N(mean, exp(log_std)^2)`` squashed by tanh."""
    z = (u - mean) * torch.exp(-log_std)
    return -0.5 * z * z - log_std - _HALF_LOG_2PI - 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


def squashed_entropy(mean: Tensor, log_std: Tensor, noise: Tensor) -> Tensor:
    """Per-dimension entropy estimate of the squashed Gaussian: ``H[N] + log(1 - tanh(u')^2)``
    with one reparameterised draw ``u' = mean + sigma * noise``."""
    u = mean + torch.exp(log_std) * noise
    return log_std + _HALF_LOG_2PI_E + 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


def sample_squashed(mean: Tensor, log_std: Tensor, generator: torch.Generator | None
                    ) -> SquashedSample:  # fmt: skip
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    u = mean + torch.exp(log_std) * eps
    return SquashedSample(u, torch.tanh(u), squashed_log_prob(u, mean, log_std))


class _LastLinearInput:
    """Forward pre-hook keeping the input of a model's last linear layer."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self.value = args[0]


class SupervisedWindowEncoder(nn.Module):
    """A supervised window classifier cut below its last linear layer: ``(M, L, F)``
    windows (latest bar first, as the observation lays them out) and asset ids ``(M,)`` ->
    ``(M, d_out)``, the input of that layer."""

    def __init__(self, *, model: str, model_params: dict[str, Any], n_features: int,
                 lookback: int, n_assets: int) -> None:  # fmt: skip
        super().__init__()
        if model not in SUPERVISED_ENCODERS:
            raise ValueError(
                f"encoder model: got {model!r}, expected one of {list(SUPERVISED_ENCODERS)}"
            )
        from cappuccino.models.registry import build_model

        self.model = build_model(model, n_features=n_features, window=lookback,
                                 n_assets=n_assets, overrides=model_params)  # fmt: skip
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]
        self.d_out = int(last.in_features)
        self._cut = _LastLinearInput()
        last.register_forward_pre_hook(self._cut)

    def forward(self, window: Tensor, asset: Tensor) -> Tensor:
        self._cut.value = None
        self.model(window.flip(1), asset)
        out = self._cut.value
        assert out is not None
        self._cut.value = None
        return out


class MultiAgentActorCritic(nn.Module):
    """Symbol agents and a master over :class:`~cappuccino.market.multiagent.MultiAgentSpec`
    views of ``(B, obs_dim)`` observations; see the module docstring. Keyword-only."""

    symbol_ids: Tensor

    def __init__(
        self,
        *,
        n_symbols: int,
        n_features: int,
        lookback: int,
        encoder: dict[str, Any],
        actor_hidden: Sequence[int] = (64, 64),
        critic_hidden: Sequence[int] = (128, 128),
        symbol_embedding: int = 8,
        critic: str = "centralised",
        activation: str = "tanh",
        log_std_init: float = -0.5,
        value_norm: bool = True,
        master: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if critic not in ("centralised", "decentralised"):
            raise ValueError(f"critic: got {critic!r}, expected 'centralised' or 'decentralised'")
        m = {"hidden": [64, 64], "cap_hidden": 32, "symbol_embedding": 4, **(master or {})}
        self._config: dict[str, Any] = {
            "n_symbols": n_symbols, "n_features": n_features, "lookback": lookback,
            "encoder": dict(encoder), "actor_hidden": list(actor_hidden),
            "critic_hidden": list(critic_hidden), "symbol_embedding": symbol_embedding,
            "critic": critic, "activation": activation, "log_std_init": float(log_std_init),
            "value_norm": value_norm, "master": m,
        }  # fmt: skip
        base = ObservationSpec(n_assets=n_symbols, n_features=n_features, lookback=lookback)
        self.spec = MultiAgentSpec(base)
        self.obs_dim = base.dim
        self.n_symbols = n_symbols
        self.centralised = critic == "centralised"
        self.register_buffer("symbol_ids", torch.arange(n_symbols), persistent=False)
        source = encoder.get("source", "mlp")
        self.source = source
        self.encoder: nn.Module | None = None
        self.context: FTStateEncoder | None = None
        d_win = self.spec.d_window
        if source == "mlp":
            self.encoder = MLP(in_dim=d_win, hidden=list(encoder.get("hidden", [64])),
                               activation_name=activation)  # fmt: skip
            d_enc = self.encoder.out_dim
        elif source == "supervised":
            self.encoder = SupervisedWindowEncoder(
                model=encoder["model"], model_params=dict(encoder.get("model_params", {})),
                n_features=n_features, lookback=lookback, n_assets=n_symbols,
            )  # fmt: skip
            d_enc = self.encoder.d_out
        elif source == "ft":
            self.context = FTStateEncoder(**dict(encoder["ft"]))
            if self.context.obs_dim != self.obs_dim:
                raise ValueError(
                    f"encoder.ft: built for observations of {self.context.obs_dim} floats, "
                    f"the agents get {self.obs_dim}"
                )
            d_enc = d_win + self.context.d_out
        else:
            raise ValueError(f"encoder.source: got {source!r}, expected mlp, supervised or ft")
        self._frozen_encoder = bool(encoder.get("freeze", False))
        self.embed = nn.Embedding(n_symbols, symbol_embedding) if symbol_embedding else None
        d_in = d_enc + 2 + symbol_embedding
        self.d_in = d_in
        self.actor = MLP(in_dim=d_in, hidden=list(actor_hidden), out_dim=1,
                         activation_name=activation)  # fmt: skip
        self.actor.orthogonal_init(last_gain=0.01)
        self.log_std = nn.Parameter(torch.full((1,), float(log_std_init)))
        h_state = critic_hidden[0]
        self.state_encoder = (
            MLP(in_dim=self.spec.d_state, hidden=[h_state], activation_name=activation)
            if self.centralised else None
        )  # fmt: skip
        self.critic = MLP(in_dim=d_in + (h_state if self.centralised else 0),
                          hidden=list(critic_hidden), out_dim=1, activation_name=activation)  # fmt: skip
        self.critic.orthogonal_init(last_gain=1.0)
        self.value_norm = ValueNorm(enabled=value_norm)
        # ---------------------------------------------------------------- master
        d_m = self.spec.d_master
        self.master_trunk = MLP(in_dim=d_m, hidden=list(m["hidden"]), activation_name=activation)
        h_m = self.master_trunk.out_dim
        self.master_gross = nn.Linear(h_m, 1)
        self.master_embed = (
            nn.Embedding(n_symbols, int(m["symbol_embedding"])) if m["symbol_embedding"] else None
        )
        self.master_caps = MLP(in_dim=h_m + 2 + int(m["symbol_embedding"]),
                               hidden=[int(m["cap_hidden"])], out_dim=1,
                               activation_name=activation)  # fmt: skip
        self.master_trunk.orthogonal_init()
        self.master_caps.orthogonal_init(last_gain=0.01)
        nn.init.orthogonal_(self.master_gross.weight, 0.01)
        with torch.no_grad():
            self.master_gross.bias.fill_(1.5)
            last = self.master_caps.net[-1]
            assert isinstance(last, nn.Linear)
            last.bias.fill_(1.5)
        self.master_log_std = nn.Parameter(torch.full((2,), float(log_std_init)))
        self.master_critic = MLP(
            in_dim=d_m + (self.spec.d_state if self.centralised else 0),
            hidden=list(critic_hidden), out_dim=1, activation_name=activation,
        )  # fmt: skip
        self.master_critic.orthogonal_init(last_gain=1.0)
        self.master_value_norm = ValueNorm(enabled=value_norm)
        if self._frozen_encoder:
            for p in self.encoder_parameters():
                p.requires_grad_(False)

    # ------------------------------------------------------------------ groups
    def config(self) -> dict[str, Any]:
        """Constructor arguments, so a bundle can rebuild the module."""
        return dict(self._config)

    def encoder_modules(self) -> list[nn.Module]:
        return [m for m in (self.encoder, self.context) if m is not None]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.encoder_modules() for p in m.parameters()]

    def symbol_parameters(self) -> list[nn.Parameter]:
        """The symbol group: encoder, embedding, actor, log_std, state encoder, critic."""
        mods = [*self.encoder_modules(), self.embed, self.actor, self.state_encoder, self.critic]
        params = [p for mod in mods if mod is not None for p in mod.parameters()]
        return [*params, self.log_std]

    def master_parameters(self) -> list[nn.Parameter]:
        mods = [self.master_trunk, self.master_gross, self.master_embed, self.master_caps,
                self.master_critic]  # fmt: skip
        params = [p for mod in mods if mod is not None for p in mod.parameters()]
        return [*params, self.master_log_std]

    def train(self, mode: bool = True) -> MultiAgentActorCritic:
        """A frozen encoder stays in eval mode (no dropout or batch-norm updates)."""
        super().train(mode)
        if self._frozen_encoder:
            for m in self.encoder_modules():
                m.eval()
        return self

    def freeze(self, *, encoder: bool = False, symbols: bool = False, master: bool = False
               ) -> None:  # fmt: skip
        """Fix the encoder's, the whole symbol group's or the master's weights."""
        if encoder or symbols:
            self._frozen_encoder = True
        groups = [self.encoder_parameters()] if encoder else []
        groups += [self.symbol_parameters()] if symbols else []
        groups += [self.master_parameters()] if master else []
        for group in groups:
            for p in group:
                p.requires_grad_(False)

    # ------------------------------------------------------------------ symbols
    def symbol_features(self, obs: Tensor) -> Tensor:
        """``(B, A, d_in)``: each agent's actor input."""
        b, a = obs.shape[0], self.n_symbols
        loc = self.spec.local(obs)
        d_win = self.spec.d_window
        win = loc[..., :d_win]
        if self.context is not None:
            ctx = self.context(obs).unsqueeze(1).expand(b, a, -1)
            parts = [win, ctx]
        else:
            x = win.reshape(b * a, self.spec.base.lookback, self.spec.base.n_features)
            if isinstance(self.encoder, SupervisedWindowEncoder):
                enc = self.encoder(x, self.symbol_ids.repeat(b))
            else:
                assert self.encoder is not None
                enc = self.encoder(x.reshape(b * a, d_win))
            parts = [enc.reshape(b, a, -1)]
        parts.append(loc[..., d_win:])
        if self.embed is not None:
            parts.append(self.embed(self.symbol_ids).unsqueeze(0).expand(b, a, -1))
        return torch.cat(parts, dim=-1)

    def symbol_mean(self, features: Tensor) -> Tensor:
        """``(B, A)`` pre-squash score means."""
        return self.actor(features).squeeze(-1)  # type: ignore[no-any-return]

    def symbol_value(self, obs: Tensor, telemetry: Tensor, features: Tensor) -> Tensor:
        """``(B, A)`` values in normalised units, one per agent.

        The centralised critic's first layer reads ``[features, state encoding]``; its
        state half is the same for every agent of a portfolio, so it is computed once per
        portfolio and broadcast (the same function as the layer on the concatenation,
        without ``A`` copies of the state's product)."""
        if self.state_encoder is None:
            return self.critic(features).squeeze(-1)  # type: ignore[no-any-return]
        s = self.state_encoder(self.spec.state(obs, telemetry))
        first = self.critic.net[0]
        assert isinstance(first, nn.Linear)
        w = first.weight
        h = F.linear(features, w[:, : self.d_in], first.bias) + F.linear(
            s, w[:, self.d_in :]
        ).unsqueeze(1)
        return self.critic.net[1:](h).squeeze(-1)  # type: ignore[no-any-return]

    def symbol_log_std(self) -> Tensor:
        return self.log_std.expand(self.n_symbols)

    # ------------------------------------------------------------------ master
    def master_mean(self, obs: Tensor, telemetry: Tensor, scores: Tensor) -> Tensor:
        """``(B, 1 + A)`` pre-squash means of the multiplier and the caps."""
        b, a = obs.shape[0], self.n_symbols
        h = self.master_trunk(self.spec.master(telemetry, scores))
        parts = [h.unsqueeze(1).expand(b, a, -1), self.spec.master_symbol(obs, scores)]
        if self.master_embed is not None:
            parts.append(self.master_embed(self.symbol_ids).unsqueeze(0).expand(b, a, -1))
        caps = self.master_caps(torch.cat(parts, dim=-1)).squeeze(-1)
        return torch.cat([self.master_gross(h), caps], dim=1)

    def master_log_std_full(self) -> Tensor:
        return torch.cat([self.master_log_std[:1], self.master_log_std[1:].expand(self.n_symbols)])

    def master_value(self, obs: Tensor, telemetry: Tensor, scores: Tensor) -> Tensor:
        """``(B,)`` the master's value in normalised units."""
        x = self.spec.master(telemetry, scores)
        if self.centralised:
            x = torch.cat([x, self.spec.state(obs, telemetry)], dim=1)
        return self.master_critic(x).squeeze(-1)  # type: ignore[no-any-return]

    def forward(self, obs: Tensor, telemetry: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every head at once (for summaries): score means ``(B, A)``, symbol values
        ``(B, A)``, master means ``(B, 1 + A)`` (on the scores' modes) and master values
        ``(B,)``."""
        feats = self.symbol_features(obs)
        mean = self.symbol_mean(feats)
        scores = torch.tanh(mean)
        master = self.master_mean(obs, telemetry, scores)
        value = self.master_value(obs, telemetry, scores)
        return mean, self.symbol_value(obs, telemetry, feats), master, value

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: Tensor, telemetry: Tensor, *, master: bool = True
            ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """Deterministic scores ``(B, A)`` and master action ``(B, 1 + A)`` (None when the
        master is fixed): the squashed modes."""
        scores = torch.tanh(self.symbol_mean(self.symbol_features(obs)))
        if not master:
            return scores, None
        return scores, torch.tanh(self.master_mean(obs, telemetry, scores))
