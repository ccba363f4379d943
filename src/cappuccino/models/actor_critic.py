"""Actor-critic policy for continuous actions in [-1, 1]^n.

Two documented action distributions (``PPOSettings.action_dist``):

- ``tanh_gaussian``: ``u ~ N(mu(s), sigma)``, ``a = tanh(u)``. The log-density of ``a``
  carries the change-of-variables term ``log pi(a) = log N(u) - sum log(1 - tanh(u)^2)``
  (computed stably as ``2 (log 2 - u - softplus(-2u))``). Rollouts store ``u`` so no
  ``atanh`` is ever taken. The entropy of the squashed distribution has no closed form;
  it is estimated as ``H[N] + E[sum log(1 - tanh(u')^2)]`` with one reparameterised
  draw ``u'`` per state: an unbiased estimate of the policy's true entropy.
- ``clipped_gaussian``: ``a = clip(u, -1, 1)`` with the Gaussian's exact log-prob and
  entropy (stable-baselines3's convention; the env receives the clipped action).

``sigma`` is a state-independent learned vector (``log_std``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cappuccino.models.ft_transformer import FTStateEncoder
from cappuccino.models.mlp import MLP

_LOG2 = math.log(2.0)
_HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


class PolicyStep(NamedTuple):
    """One sampled step: pre-squash ``u``, env action, ``log pi(a)`` and ``V(s)``."""

    u: Tensor
    action: Tensor
    log_prob: Tensor
    value: Tensor


def gaussian_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Sum over action dims of ``log N(u; mean, exp(log_std)^2)``; shape ``(B,)``."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def tanh_log_det(u: Tensor) -> Tensor:
    """``sum log(1 - tanh(u)^2)`` over action dims, computed stably; shape ``(B,)``."""
    return (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)


class ActorCritic(nn.Module):
    """Separate MLP actor (mean) and critic (value) on the flat observation ``(B, obs_dim)``."""

    def __init__(
        self,
        *,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        action_dist: str = "tanh_gaussian",
        encoder: dict[str, Any] | None = None,
    ) -> None:
        """``encoder``: an :class:`~cappuccino.models.ft_transformer.FTStateEncoder` config
        plus ``share`` (one encoder for both heads) and ``freeze`` (its weights fixed);
        the heads then read its ``d_out``-wide encoding instead of the flat observation."""
        super().__init__()
        if action_dist not in ("tanh_gaussian", "clipped_gaussian"):
            raise ValueError(
                f"action_dist: got {action_dist!r}, expected 'tanh_gaussian' or 'clipped_gaussian'"
            )
        self.obs_dim, self.action_dim, self.action_dist = obs_dim, action_dim, action_dist
        self._config: dict[str, object] = {
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
            "log_std_init": float(log_std_init),
            "action_dist": action_dist,
            "encoder": dict(encoder) if encoder is not None else None,
        }
        self.encoder: nn.Module | None = None
        self.critic_encoder: nn.Module | None = None
        self._frozen = False
        head_in = obs_dim
        if encoder is not None:
            enc = {k: v for k, v in encoder.items() if k not in ("share", "freeze")}
            self.encoder = FTStateEncoder(**enc)
            if self.encoder.obs_dim != obs_dim:
                raise ValueError(
                    f"encoder: built for observations of {self.encoder.obs_dim} floats, "
                    f"the policy gets {obs_dim}"
                )
            self.critic_encoder = (
                self.encoder if encoder.get("share", True) else FTStateEncoder(**enc)
            )
            self._frozen = bool(encoder.get("freeze", False))
            if self._frozen:
                for p in (*self.encoder.parameters(), *self.critic_encoder.parameters()):
                    p.requires_grad_(False)
            head_in = self.encoder.d_out
        self.actor = MLP(
            in_dim=head_in, hidden=hidden_sizes, out_dim=action_dim, activation_name=activation
        )
        self.critic = MLP(
            in_dim=head_in, hidden=hidden_sizes, out_dim=1, activation_name=activation
        )
        self.actor.orthogonal_init(last_gain=0.01)
        self.critic.orthogonal_init(last_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def train(self, mode: bool = True) -> ActorCritic:
        """A frozen encoder stays in eval mode (no dropout on a fixed feature extractor)."""
        super().train(mode)
        if self._frozen:
            for enc in (self.encoder, self.critic_encoder):
                if enc is not None:
                    enc.eval()
        return self

    def load_encoder(self, state: dict[str, Tensor]) -> None:
        """Load pretrained encoder weights (into both encoders when they are separate)."""
        if self.encoder is None or self.critic_encoder is None:
            raise ValueError("load_encoder: this policy has no encoder (ppo.ft is None)")
        for enc in {id(e): e for e in (self.encoder, self.critic_encoder)}.values():
            enc.load_state_dict(state)

    def mean(self, obs: Tensor) -> Tensor:
        """The actor's pre-squash mean action ``(B, action_dim)``."""
        x = obs if self.encoder is None else self.encoder(obs)
        return self.actor(x)  # type: ignore[no-any-return]

    def value(self, obs: Tensor) -> Tensor:
        """``V(s)``, shape ``(B,)``."""
        x = obs if self.critic_encoder is None else self.critic_encoder(obs)
        return self.critic(x).squeeze(-1)  # type: ignore[no-any-return]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoders' parameters (once each, shared or not); empty for the MLP policy."""
        seen: dict[int, nn.Parameter] = {}
        for enc in (self.encoder, self.critic_encoder):
            if enc is not None:
                for p in enc.parameters():
                    seen.setdefault(id(p), p)
        return list(seen.values())

    def squash(self, u: Tensor) -> Tensor:
        return torch.tanh(u) if self.action_dist == "tanh_gaussian" else u.clamp(-1.0, 1.0)

    def log_prob(self, u: Tensor, mean: Tensor) -> Tensor:
        lp = gaussian_log_prob(u, mean, self.log_std)
        return lp - tanh_log_det(u) if self.action_dist == "tanh_gaussian" else lp

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> PolicyStep:
        """Draw an action for each state (use under ``torch.no_grad()`` for rollouts)."""
        mean = self.mean(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + torch.exp(self.log_std) * eps
        return PolicyStep(u, self.squash(u), self.log_prob(u, mean), self.value(obs))

    def evaluate(
        self, obs: Tensor, u: Tensor, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi(a(u) | s), entropy estimate, V(s))`` for stored pre-squash ``u``.

        ``noise`` ``(B, action_dim)`` standard normal draws for the tanh entropy estimate
        (drawn here when None); unused by ``clipped_gaussian``.
        """
        mean = self.mean(obs)
        entropy = (self.log_std + _HALF_LOG_2PI_E).sum().expand(obs.shape[0])
        if self.action_dist == "tanh_gaussian":
            eps = torch.randn_like(mean) if noise is None else noise
            entropy = entropy + tanh_log_det(mean + torch.exp(self.log_std) * eps)
        return self.log_prob(u, mean), entropy, self.value(obs)

    @torch.no_grad()
    def act(self, obs: Tensor, *, deterministic: bool = True) -> Tensor:
        """Env actions ``(B, action_dim)``; the distribution's mode is squashed when deterministic."""
        if deterministic:
            return self.squash(self.mean(obs))
        return self.sample(obs).action

    def config(self) -> dict[str, object]:
        """Constructor arguments, so a bundle can rebuild the module."""
        return dict(self._config)
