"""Generalised advantage estimation (Schulman et al. 2016), a pure function."""

from __future__ import annotations

import torch
from torch import Tensor


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns for a rollout of ``S`` steps of ``E`` envs.

    Args:
        rewards: ``(S, E)`` reward of step ``s`` (time-limit bootstraps already added).
        values: ``(S, E)`` ``V(s_s)`` of the state each step started from.
        dones: ``(S, E)`` 1 where the episode ended with step ``s`` (the next state is a
            fresh episode's first state).
        next_value: ``(E,)`` value of the state after the last step.

    ``delta_s = r_s + gamma V(s_{s+1}) (1 - d_s) - V(s_s)`` and
    ``A_s = delta_s + gamma lambda (1 - d_s) A_{s+1}``; returns ``A + V``.
    """
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    not_done = 1.0 - dones.to(rewards.dtype)
    for s in range(steps - 1, -1, -1):
        nxt = next_value if s == steps - 1 else values[s + 1]
        delta = rewards[s] + gamma * nxt * not_done[s] - values[s]
        last = delta + gamma * gae_lambda * not_done[s] * last
        adv[s] = last
    return adv, adv + values
