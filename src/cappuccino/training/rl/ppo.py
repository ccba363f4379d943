"""In-house PPO on the batched env, device-resident (CleanRL's ``ppo_continuous_action``, batched).

Per update: collect ``n_steps`` from ``n_envs`` envs into storage allocated once on
the env's device; add ``gamma * V(final obs)`` to the reward of time-limit endings
(episodes here end by truncation, never by termination, so their value is
bootstrapped, not cut to 0). The final states are kept during the rollout (bar,
cash, units, equity: a few floats per env) and the few that ended are observed and
valued in one batch after it, so no step pays for a final observation; compute GAE;
then ``n_epochs`` passes of shuffled minibatches with the clipped surrogate, the
(optionally clipped) value loss, the entropy bonus, global gradient-norm clipping, a
fused Adam step and an optional KL early stop. Rollouts run the policy in eval mode and
updates in train mode (stable-baselines3's convention): with an FT encoder's dropout,
actions are sampled from the deterministic network the backtest will run, and the first
epoch's ratio already reflects dropout noise. Statistics are accumulated as tensors
and copied to the host once per update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cappuccino.config.rl import PPOSettings
from cappuccino.models.actor_critic import ActorCritic
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.gae import compute_gae
from cappuccino.training.rl.pretrain import encoder_args
from cappuccino.utils.progress import steps
from cappuccino.utils.threads import SMALL_OP_THREADS, torch_threads

log = logging.getLogger(__name__)


@dataclass
class PPOResult:
    """The trained policy and one history row per update."""

    policy: ActorCritic
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def timesteps(self) -> int:
        return int(self.history[-1]["timesteps"]) if self.history else 0


def build_policy(
    env: BatchedTradingEnv, settings: PPOSettings, encoder_state: dict[str, Tensor] | None = None
) -> ActorCritic:
    """The policy ``settings`` describe for ``env``; ``encoder_state``: pretrained encoder
    weights loaded into its FT encoder(s)."""
    policy = ActorCritic(
        obs_dim=env.obs_dim,
        action_dim=env.n_assets,
        hidden_sizes=settings.hidden_sizes,
        activation=settings.activation,
        log_std_init=settings.log_std_init,
        action_dist=settings.action_dist,
        encoder=None if settings.ft is None else {
            **encoder_args(settings.ft, env.spec),
            "share": settings.ft.share, "freeze": settings.ft.freeze,
        },
    )  # fmt: skip
    if encoder_state is not None:
        policy.load_encoder(encoder_state)
    return policy.to(env.device)


def train_ppo(
    env: BatchedTradingEnv,
    settings: PPOSettings,
    *,
    seed: int,
    policy: ActorCritic | None = None,
    encoder_state: dict[str, Tensor] | None = None,
    on_update: Callable[[dict[str, float], ActorCritic], None] | None = None,
    compile: bool = False,
) -> PPOResult:
    """Train a policy on ``env`` (``env.n_envs`` must equal ``settings.n_envs``).

    Deterministic for a seed on CPU. ``policy``: start from this one, else one is built
    (with ``encoder_state``, pretrained encoder weights, loaded into its FT encoder).
    ``on_update`` receives each history row and the policy being trained.
    ``compile`` runs the minibatch loss (forward, and through AOTAutograd its backward)
    through ``torch.compile``: fewer, fused kernels; a one-off compilation; results equal
    up to floating-point rounding.
    """
    if env.n_envs != settings.n_envs:
        raise ValueError(f"n_envs: PPO settings say {settings.n_envs}, env has {env.n_envs}")
    t0 = time.perf_counter()
    dev = env.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    policy = policy if policy is not None else build_policy(env, settings, encoder_state)
    # the encoder (if any) in its own group: its learning rate is scaled; frozen: left out
    enc_ids = {id(p) for p in policy.encoder_parameters()}
    scale = settings.ft.lr_scale if settings.ft is not None else 1.0
    groups = [
        {"params": [p for p in policy.parameters() if id(p) not in enc_ids], "lr_scale": 1.0},
        {"params": [p for p in policy.encoder_parameters() if p.requires_grad], "lr_scale": scale},
    ]
    opt = torch.optim.Adam(
        [g for g in groups if g["params"]], lr=settings.learning_rate, eps=settings.adam_eps,
        fused=True
    )  # fmt: skip

    def minibatch_loss(
        obs: Tensor, u: Tensor, old_logp: Tensor, adv: Tensor, ret: Tensor, old_v: Tensor,
        noise: Tensor,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        return ppo_loss(policy, settings, obs, u, old_logp, adv, ret, old_v, noise)

    loss_fn = torch.compile(minibatch_loss, dynamic=False) if compile else minibatch_loss
    rollout_threads, update_threads = ppo_threads(policy, settings.minibatch_size)
    n_steps, n_envs, n_act = settings.n_steps, settings.n_envs, env.n_assets
    # slot s holds the observation step s starts from; slot n_steps the one after the rollout
    obs_buf = torch.zeros((n_steps + 1, n_envs, env.obs_dim), device=dev)
    u_buf = torch.zeros((n_steps, n_envs, n_act), device=dev)
    logp_buf = torch.zeros((n_steps, n_envs), device=dev)
    rew_buf = torch.zeros((n_steps, n_envs), device=dev)
    done_buf = torch.zeros((n_steps, n_envs), device=dev)
    val_buf = torch.zeros((n_steps, n_envs), device=dev)
    cut_buf = torch.zeros((n_steps, n_envs), dtype=torch.bool, device=dev)
    end_t = torch.zeros((n_steps, n_envs), dtype=torch.long, device=dev)
    end_cash = torch.zeros((n_steps, n_envs), dtype=torch.float64, device=dev)
    end_units = torch.zeros((n_steps, n_envs, n_act), dtype=torch.float64, device=dev)
    end_equity = torch.zeros((n_steps, n_envs), dtype=torch.float64, device=dev)
    batch = settings.batch_size
    mb = settings.minibatch_size
    n_mb = batch // mb
    result = PPOResult(policy=policy)
    obs_buf[0] = env.reset(seed=seed)
    ep_growth = torch.zeros(n_envs, dtype=torch.float64, device=dev)
    with steps("PPO updates", settings.n_updates) as bar:
        for update in range(settings.n_updates):
            frac = 1.0 - update / settings.n_updates
            lr = settings.learning_rate * (frac if settings.lr_schedule == "linear" else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            done_growth = torch.zeros((), dtype=torch.float64, device=dev)
            done_count = torch.zeros((), dtype=torch.float64, device=dev)
            policy.eval()  # rollouts act without dropout (SB3's convention); updates train
            with torch.no_grad(), torch_threads(rollout_threads):
                if update > 0:
                    obs_buf[0] = obs_buf[n_steps]  # the rollout goes on where the last one stopped
                for s in range(n_steps):
                    step = policy.sample(obs_buf[s], gen)
                    u_buf[s], logp_buf[s], val_buf[s] = step.u, step.log_prob, step.value
                    _, reward, terminated, truncated, info = env.step(
                        step.action, obs_out=obs_buf[s + 1]
                    )
                    rew_buf[s] = reward
                    cut_buf[s] = truncated & ~terminated
                    end_t[s] = info.t_end
                    end_cash[s] = info.fill.portfolio.cash
                    end_units[s] = info.fill.portfolio.units
                    end_equity[s] = info.equity
                    done = terminated | truncated
                    done_buf[s] = done
                    ep_growth += info.log_return
                    done_growth += (ep_growth * done).sum()
                    done_count += done.sum()
                    ep_growth = torch.where(done, torch.zeros_like(ep_growth), ep_growth)
                # time-limit bootstrap: r += gamma * V(final obs), for the endings only (one
                # host sync per rollout to find them)
                ends = cut_buf.nonzero(as_tuple=True)
                if ends[0].numel():
                    final_obs = env.observe_state(
                        end_t[ends], end_cash[ends], end_units[ends], end_equity[ends]
                    )
                    rew_buf[ends] += settings.gamma * policy.value(final_obs)
                next_value = policy.value(obs_buf[n_steps])
                adv, ret = compute_gae(
                    rew_buf,
                    val_buf,
                    done_buf,
                    next_value,
                    gamma=settings.gamma,
                    gae_lambda=settings.gae_lambda,
                )
            b_obs = obs_buf[:n_steps].reshape(batch, -1)
            b_u = u_buf.reshape(batch, n_act)
            b_logp, b_adv = logp_buf.reshape(batch), adv.reshape(batch)
            b_ret, b_val = ret.reshape(batch), val_buf.reshape(batch)
            policy.train()
            stats = torch.zeros(6, device=dev)  # pg, v, ent, kl, clipfrac, n
            with torch_threads(update_threads):
                for _epoch in range(settings.n_epochs):
                    perm = torch.randperm(batch, generator=gen, device=dev)
                    epoch_kl = torch.zeros((), device=dev)
                    for k in range(n_mb):
                        idx = perm[k * mb : (k + 1) * mb]
                        noise = torch.randn((mb, n_act), generator=gen, device=dev)
                        loss, mb_stats = loss_fn(
                            b_obs[idx],
                            b_u[idx],
                            b_logp[idx],
                            b_adv[idx],
                            b_ret[idx],
                            b_val[idx],
                            noise,
                        )
                        opt.zero_grad(set_to_none=True)
                        loss.backward()  # type: ignore[no-untyped-call]
                        torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.max_grad_norm)
                        opt.step()
                        stats += mb_stats
                        epoch_kl = mb_stats[3]
                    if settings.target_kl is not None and float(epoch_kl) > settings.target_kl:
                        break
            with torch.no_grad():
                var_y = b_ret.var()
                explained = (
                    1 - (b_ret - b_val).var() / var_y if float(var_y) > 0 else torch.zeros(())
                )
            s_host = (stats[:5] / stats[5]).tolist()
            n_done = float(done_count)
            row: dict[str, float] = {
                "update": float(update + 1),
                "timesteps": float((update + 1) * batch),
                "learning_rate": lr,
                "policy_loss": s_host[0],
                "value_loss": s_host[1],
                "entropy": s_host[2],
                "approx_kl": s_host[3],
                "clip_fraction": s_host[4],
                "explained_variance": float(explained),
                "mean_reward": float(rew_buf.mean()),
                "episodes": n_done,
                "mean_episode_log_return": float(done_growth) / n_done if n_done else float("nan"),
                "seconds": time.perf_counter() - t0,
            }
            result.history.append(row)
            bar.advance(note=f"entropy {row['entropy']:.3f}, kl {row['approx_kl']:.4f}")
            if on_update is not None:
                on_update(row, policy)
    policy.eval()
    result.seconds = time.perf_counter() - t0
    return result


SMALL_UPDATE_MACS = 1 << 26
"""Below this many multiply-adds per minibatch forward (parameters x minibatch) an MLP
policy's update is many small ops, and runs on :data:`SMALL_OP_THREADS`."""


def ppo_threads(policy: ActorCritic, minibatch: int) -> tuple[int, int]:
    """Torch threads for the rollouts and for the updates. Rollouts (a batched env step and
    one forward of ``n_envs`` rows per step) are small ops: 1 thread. Updates keep the
    configured count unless the policy is an MLP whose minibatch forward is under
    :data:`SMALL_UPDATE_MACS` (see :class:`~cappuccino.utils.threads.torch_threads` for the
    measurements: a 64x64 net runs 3.3x faster on 1 thread of 2, a 1024-wide one 1.75x
    slower). On CUDA the host threads only launch kernels: 1 for both."""
    configured = torch.get_num_threads()
    if next(policy.parameters()).device.type != "cpu":
        return SMALL_OP_THREADS, SMALL_OP_THREADS
    macs = minibatch * sum(p.numel() for p in policy.parameters())
    small = not list(policy.encoder_parameters()) and macs < SMALL_UPDATE_MACS
    return SMALL_OP_THREADS, SMALL_OP_THREADS if small else configured


def ppo_loss(
    policy: ActorCritic,
    settings: PPOSettings,
    obs: Tensor,
    u: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    ret: Tensor,
    old_v: Tensor,
    noise: Tensor,
) -> tuple[Tensor, Tensor]:
    """The PPO minibatch loss and its statistics ``[pg, v, entropy, approx_kl, clipfrac, 1]``.

    ``loss = pg_loss - ent_coef * entropy + vf_coef * v_loss`` with the clipped surrogate
    ``pg_loss = mean(max(-A r, -A clip(r, 1 - c, 1 + c)))``, ``r = pi / pi_old``; advantages
    normalised per minibatch when ``norm_adv``; ``v_loss = 0.5 mean((V - R)^2)``, or with
    ``clip_value`` the max of that and the loss of ``V_old + clip(V - V_old, +-clip_value)``.
    ``approx_kl = mean((r - 1) - log r)`` (Schulman's k3 estimator).
    """
    new_logp, entropy, new_v = policy.evaluate(obs, u, noise)
    logratio = new_logp - old_logp
    ratio = logratio.exp()
    a = adv
    if settings.norm_adv:
        a = (a - a.mean()) / (a.std() + 1e-8)
    c = settings.clip_coef
    pg = torch.maximum(-a * ratio, -a * ratio.clamp(1 - c, 1 + c)).mean()
    if settings.clip_value is not None:
        v_clip = old_v + (new_v - old_v).clamp(-settings.clip_value, settings.clip_value)
        v_loss = 0.5 * torch.maximum((new_v - ret) ** 2, (v_clip - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_v - ret) ** 2).mean()
    ent = entropy.mean()
    loss = pg - settings.ent_coef * ent + settings.vf_coef * v_loss
    with torch.no_grad():
        kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1).abs() > c).float().mean()
        stats = torch.stack([pg, v_loss, ent, kl, clipfrac, torch.ones_like(kl)]).detach()
    return loss, stats
