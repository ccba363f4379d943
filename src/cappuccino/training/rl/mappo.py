"""Multi-agent PPO on the batched multi-agent env: MAPPO (centralised critics) or IPPO
(decentralised), in stages.

Two agent groups, each with its own networks, optimiser, learning rate, value normaliser
and GAE (:class:`~cappuccino.models.multiagent.MultiAgentActorCritic`):

- the symbol agents (one per symbol, one shared actor): a PPO ratio, an advantage and a
  value per agent and env step, all agents sharing the portfolio reward;
- the master: one agent per env with the composite reward.

Stages (``MAPPOSettings.stage``), as in the seed design: ``symbols`` trains the symbol
group with the master fixed (multiplier 1, no caps); ``master`` trains the master with the
symbol agents frozen and acting deterministically (as they will in a backtest); ``joint``
trains both, the symbol encoder frozen. A stage after the first starts from its parent's
weights.

The rollout storage discipline is the single-agent trainer's
(:mod:`cappuccino.training.rl.ppo`): buffers allocated once on the env's device, the
policy in eval mode for rollouts and train mode for updates, time-limit endings
bootstrapped with ``gamma * V(final state)`` from final states kept during the rollout and
valued in one batch after it, statistics copied to the host once per update. Values are
predicted in normalised units (running mean/std of the returns, updated once per rollout
before the epochs); GAE runs on denormalised values; the value loss is clipped around the
old values in normalised units (the reference MAPPO implementation's defaults).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from cappuccino.config.rl import MAPPOSettings, PPOSettings
from cappuccino.models.multiagent import (
    MultiAgentActorCritic,
    sample_squashed,
    squashed_entropy,
    squashed_log_prob,
)
from cappuccino.training.rl.gae import compute_gae
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv
from cappuccino.training.rl.rewards import MASTER_TERMS
from cappuccino.utils.progress import steps


@dataclass
class MAPPOResult:
    """The trained policy and one history row per update."""

    policy: MultiAgentActorCritic
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def timesteps(self) -> int:
        return int(self.history[-1]["timesteps"]) if self.history else 0


def build_multiagent(
    env: MultiAgentTradingEnv,
    ppo: PPOSettings,
    mappo: MAPPOSettings,
    encoder: dict[str, Any],
) -> MultiAgentActorCritic:
    """The network ``mappo`` describes for ``env``; ``encoder`` the resolved encoder config
    (``source`` plus what rebuilding it needs)."""
    spec = env.spec.base
    policy = MultiAgentActorCritic(
        n_symbols=spec.n_assets, n_features=spec.n_features, lookback=spec.lookback,
        encoder={**encoder, "freeze": mappo.encoder.freeze},
        actor_hidden=mappo.actor_hidden, critic_hidden=mappo.critic_hidden,
        symbol_embedding=mappo.symbol_embedding, critic=mappo.critic,
        activation=ppo.activation, log_std_init=ppo.log_std_init, value_norm=mappo.value_norm,
        master={"hidden": mappo.master.hidden, "cap_hidden": mappo.master.cap_hidden,
                "symbol_embedding": mappo.master.symbol_embedding},
    )  # fmt: skip
    return policy.to(env.device)


def group_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    adv: Tensor,
    value: Tensor,
    ret: Tensor,
    old_value: Tensor,
    entropy: Tensor,
    ppo: PPOSettings,
    clip_value: float | None,
) -> tuple[Tensor, Tensor]:
    """One agent group's PPO loss and statistics ``[pg, v, entropy, approx_kl, clipfrac, 1]``
    over tensors of one shape (``(B,)`` master, ``(B, A)`` symbol agents): the clipped
    surrogate with advantages normalised over the minibatch (``ppo.norm_adv``), the value
    loss ``0.5 mean((V - R)^2)`` (clipped around ``old_value`` by ``clip_value``; values and
    returns in normalised units) and the entropy bonus."""
    logratio = log_prob - old_log_prob
    ratio = logratio.exp()
    a = (adv - adv.mean()) / (adv.std() + 1e-8) if ppo.norm_adv else adv
    c = ppo.clip_coef
    pg = torch.maximum(-a * ratio, -a * ratio.clamp(1 - c, 1 + c)).mean()
    if clip_value is not None:
        v_clip = old_value + (value - old_value).clamp(-clip_value, clip_value)
        v_loss = 0.5 * torch.maximum((value - ret) ** 2, (v_clip - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((value - ret) ** 2).mean()
    ent = entropy.mean()
    loss = pg - ppo.ent_coef * ent + ppo.vf_coef * v_loss
    with torch.no_grad():
        kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1).abs() > c).float().mean()
        stats = torch.stack([pg, v_loss, ent, kl, clipfrac, torch.ones_like(kl)]).detach()
    return loss, stats


def _explained(ret: Tensor, val: Tensor) -> float:
    var = ret.var()
    return float(1 - (ret - val).var() / var) if float(var) > 0 else 0.0


def train_mappo(
    env: MultiAgentTradingEnv,
    ppo: PPOSettings,
    mappo: MAPPOSettings,
    *,
    seed: int,
    policy: MultiAgentActorCritic,
    on_update: Callable[[dict[str, float], MultiAgentActorCritic], None] | None = None,
) -> MAPPOResult:
    """Train ``policy`` on ``env`` for ``mappo.stage`` (see the module docstring);
    deterministic for a seed on CPU. ``env.n_envs`` must equal ``ppo.n_envs``."""
    if env.n_envs != ppo.n_envs:
        raise ValueError(f"n_envs: PPO settings say {ppo.n_envs}, env has {env.n_envs}")
    t0 = time.perf_counter()
    dev = env.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    stage = mappo.stage
    train_sym, train_master = stage in ("symbols", "joint"), stage in ("master", "joint")
    use_master = stage != "symbols"
    if stage == "master":
        policy.freeze(symbols=True)
    elif stage == "joint":
        policy.freeze(encoder=True)
    else:
        policy.freeze(master=True)
    enc_ids = {id(p) for p in policy.encoder_parameters()}
    heads = [p for p in policy.symbol_parameters() if p.requires_grad and id(p) not in enc_ids]
    enc = [p for p in policy.encoder_parameters() if p.requires_grad]
    opts: list[tuple[torch.optim.Optimizer, float, list[torch.nn.Parameter]]] = []
    if train_sym:
        groups: list[dict[str, Any]] = [
            {"params": ps, "lr_scale": scale}
            for ps, scale in ((heads, 1.0), (enc, mappo.encoder.lr_scale))
            if ps
        ]
        opts.append((torch.optim.Adam(groups, lr=ppo.learning_rate, eps=ppo.adam_eps),
                     ppo.learning_rate, heads + enc))  # fmt: skip
    if train_master:
        m_params = [p for p in policy.master_parameters() if p.requires_grad]
        opt_m = torch.optim.Adam([{"params": m_params, "lr_scale": 1.0}],
                                 lr=mappo.master.learning_rate, eps=ppo.adam_eps)  # fmt: skip
        opts.append((opt_m, mappo.master.learning_rate, m_params))
    n_steps, n_envs, n = ppo.n_steps, ppo.n_envs, env.n_symbols
    d_obs, d_tel = env.spec.base.dim, env.spec.d_telemetry

    def z(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.zeros(shape, dtype=dtype, device=dev)

    obs_buf, tel_buf = z(n_steps + 1, n_envs, d_obs), z(n_steps + 1, n_envs, d_tel)
    us_buf, logp_s, val_s = z(n_steps, n_envs, n), z(n_steps, n_envs, n), z(n_steps, n_envs, n)
    um_buf, logp_m, val_m = z(n_steps, n_envs, 1 + n), z(n_steps, n_envs), z(n_steps, n_envs)
    rew_buf, rew_m, done_buf = z(n_steps, n_envs), z(n_steps, n_envs), z(n_steps, n_envs)
    cut_buf = z(n_steps, n_envs, dtype=torch.bool)
    end_t = z(n_steps, n_envs, dtype=torch.long)
    end_cash, end_eq = (z(n_steps, n_envs, dtype=torch.float64) for _ in range(2))
    end_units = z(n_steps, n_envs, n, dtype=torch.float64)
    batch, mb = ppo.batch_size, ppo.minibatch_size
    n_mb = batch // mb
    result = MAPPOResult(policy=policy)
    obs_buf[0] = env.reset(seed=seed)
    tel_buf[0] = env.telemetry()
    ep_growth = torch.zeros(n_envs, dtype=torch.float64, device=dev)
    vn_s, vn_m = policy.value_norm, policy.master_value_norm
    with steps(f"MAPPO {stage} updates", ppo.n_updates) as bar:
        for update in range(ppo.n_updates):
            frac = 1.0 - update / ppo.n_updates
            lrs = []
            for opt, base_lr, _ in opts:
                lr = base_lr * (frac if ppo.lr_schedule == "linear" else 1.0)
                lrs.append(lr)
                for group in opt.param_groups:
                    group["lr"] = lr * group["lr_scale"]
            done_growth = torch.zeros((), dtype=torch.float64, device=dev)
            done_count = torch.zeros((), dtype=torch.float64, device=dev)
            terms_sum = torch.zeros(len(MASTER_TERMS), dtype=torch.float64, device=dev)
            limits_sum = torch.zeros(2, dtype=torch.float64, device=dev)
            policy.eval()
            with torch.no_grad():
                if update > 0:
                    obs_buf[0], tel_buf[0] = obs_buf[n_steps], tel_buf[n_steps]
                for s in range(n_steps):
                    obs, tel = obs_buf[s], tel_buf[s]
                    feats = policy.symbol_features(obs)
                    mean = policy.symbol_mean(feats)
                    if train_sym:
                        smp = sample_squashed(mean, policy.symbol_log_std(), gen)
                        us_buf[s], scores, logp_s[s] = smp.u, smp.action, smp.log_prob
                        val_s[s] = vn_s.denormalize(policy.symbol_value(obs, tel, feats))
                    else:
                        us_buf[s], scores = mean, torch.tanh(mean)
                    master_a = None
                    if use_master:
                        mm = policy.master_mean(obs, tel, scores)
                        smp_m = sample_squashed(mm, policy.master_log_std_full(), gen)
                        um_buf[s], master_a = smp_m.u, smp_m.action
                        logp_m[s] = smp_m.log_prob.sum(-1)
                        val_m[s] = vn_m.denormalize(policy.master_value(obs, tel, scores))
                        x = (master_a.to(torch.float64) + 1.0) * 0.5
                        limits_sum += torch.stack([x[:, 0].mean(), x[:, 1:].mean()])
                    st = env.step(scores, master_a, obs_out=obs_buf[s + 1])
                    tel_buf[s + 1] = st.telemetry
                    rew_buf[s], rew_m[s] = st.reward, st.master_reward
                    terms_sum += st.master_terms.mean(0)
                    info = st.info
                    cut_buf[s] = st.truncated & ~st.terminated
                    end_t[s], end_eq[s] = info.t_end, info.equity
                    end_cash[s], end_units[s] = info.fill.portfolio.cash, info.fill.portfolio.units
                    done = st.terminated | st.truncated
                    done_buf[s] = done
                    ep_growth += info.log_return
                    done_growth += (ep_growth * done).sum()
                    done_count += done.sum()
                    ep_growth = torch.where(done, torch.zeros_like(ep_growth), ep_growth)
                rew_s = rew_buf.unsqueeze(-1).expand(n_steps, n_envs, n).clone()
                ends = cut_buf.nonzero(as_tuple=True)
                if ends[0].numel():  # time-limit bootstrap (one host sync per rollout)
                    args = (end_t[ends], end_cash[ends], end_units[ends], end_eq[ends])
                    fo, ft = env.base.observe_state(*args), env.telemetry_of(*args)
                    f_feats = policy.symbol_features(fo)
                    if train_sym:
                        v_end = vn_s.denormalize(policy.symbol_value(fo, ft, f_feats))
                        rew_s[ends] += ppo.gamma * v_end
                    if train_master:
                        sc = torch.tanh(policy.symbol_mean(f_feats))
                        rew_m[ends] += ppo.gamma * vn_m.denormalize(policy.master_value(fo, ft, sc))
                last_obs, last_tel = obs_buf[n_steps], tel_buf[n_steps]
                l_feats = policy.symbol_features(last_obs)
                if train_sym:
                    nv = vn_s.denormalize(policy.symbol_value(last_obs, last_tel, l_feats))
                    adv_s, ret_s = compute_gae(
                        rew_s.reshape(n_steps, -1), val_s.reshape(n_steps, -1),
                        done_buf.unsqueeze(-1).expand(n_steps, n_envs, n).reshape(n_steps, -1),
                        nv.reshape(-1), gamma=ppo.gamma, gae_lambda=ppo.gae_lambda,
                    )  # fmt: skip
                    adv_s, ret_s = adv_s.reshape(batch, n), ret_s.reshape(batch, n)
                    vn_s.update(ret_s)
                    ret_sn, old_sn = vn_s.normalize(ret_s), vn_s.normalize(val_s.reshape(batch, n))
                if train_master:
                    sc = torch.tanh(policy.symbol_mean(l_feats))
                    nv_m = vn_m.denormalize(policy.master_value(last_obs, last_tel, sc))
                    adv_m, ret_m = compute_gae(rew_m, val_m, done_buf, nv_m, gamma=ppo.gamma,
                                               gae_lambda=ppo.gae_lambda)  # fmt: skip
                    adv_m, ret_m = adv_m.reshape(batch), ret_m.reshape(batch)
                    vn_m.update(ret_m)
                    ret_mn, old_mn = vn_m.normalize(ret_m), vn_m.normalize(val_m.reshape(batch))
            b_obs, b_tel = (
                obs_buf[:n_steps].reshape(batch, -1),
                tel_buf[:n_steps].reshape(batch, -1),
            )
            b_us, b_um = us_buf.reshape(batch, n), um_buf.reshape(batch, 1 + n)
            b_lps, b_lpm = logp_s.reshape(batch, n), logp_m.reshape(batch)
            policy.train()
            stats_s, stats_m = torch.zeros(6, device=dev), torch.zeros(6, device=dev)
            for _epoch in range(ppo.n_epochs):
                perm = torch.randperm(batch, generator=gen, device=dev)
                epoch_kl = torch.zeros((), device=dev)
                for k in range(n_mb):
                    idx = perm[k * mb : (k + 1) * mb]
                    o, te = b_obs[idx], b_tel[idx]
                    loss = torch.zeros((), device=dev)
                    if train_sym:
                        noise = torch.randn((mb, n), generator=gen, device=dev)
                        feats = policy.symbol_features(o)
                        mean = policy.symbol_mean(feats)
                        ls = policy.symbol_log_std()
                        l_s, st_s = group_loss(
                            squashed_log_prob(b_us[idx], mean, ls), b_lps[idx], adv_s[idx],
                            policy.symbol_value(o, te, feats), ret_sn[idx], old_sn[idx],
                            squashed_entropy(mean, ls, noise), ppo, mappo.clip_value,
                        )  # fmt: skip
                        loss = loss + l_s
                        stats_s += st_s
                        epoch_kl = st_s[3]
                    if train_master:
                        noise_m = torch.randn((mb, 1 + n), generator=gen, device=dev)
                        sc = torch.tanh(b_us[idx])
                        mm = policy.master_mean(o, te, sc)
                        lsf = policy.master_log_std_full()
                        l_m, st_m = group_loss(
                            squashed_log_prob(b_um[idx], mm, lsf).sum(-1), b_lpm[idx],
                            adv_m[idx], policy.master_value(o, te, sc), ret_mn[idx],
                            old_mn[idx], squashed_entropy(mm, lsf, noise_m).sum(-1), ppo,
                            mappo.clip_value,
                        )  # fmt: skip
                        loss = loss + l_m
                        stats_m += st_m
                        if not train_sym:
                            epoch_kl = st_m[3]
                    for opt, _, _ in opts:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    for opt, _, params in opts:
                        torch.nn.utils.clip_grad_norm_(params, ppo.max_grad_norm)
                        opt.step()
                if ppo.target_kl is not None and float(epoch_kl) > ppo.target_kl:
                    break
            n_done = float(done_count)
            row: dict[str, float] = {
                "update": float(update + 1),
                "timesteps": float((update + 1) * batch),
                "learning_rate": lrs[0],
                "mean_reward": float(rew_buf.mean()),
                "mean_master_reward": float(rew_m.mean()),
                "episodes": n_done,
                "mean_episode_log_return": float(done_growth) / n_done if n_done else float("nan"),
            }
            for name, v in zip(MASTER_TERMS, (terms_sum / n_steps).tolist(), strict=True):
                row[f"master_term_{name}"] = v
            if use_master:
                lim = (limits_sum / n_steps).tolist()
                row["mean_gross_multiplier"], row["mean_cap_fraction"] = lim[0], lim[1]
            keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
            for prefix, on, stats in (("symbol", train_sym, stats_s), ("master", train_master,
                                                                       stats_m)):  # fmt: skip
                if on:
                    vals = (stats[:5] / stats[5]).tolist()
                    row.update({f"{prefix}_{k}": v for k, v in zip(keys, vals, strict=True)})
            if train_sym:
                row["symbol_explained_variance"] = _explained(ret_s, val_s.reshape(batch, n))
            if train_master:
                row["master_learning_rate"] = lrs[-1]
                row["master_explained_variance"] = _explained(ret_m, val_m.reshape(batch))
            row["entropy"] = row["symbol_entropy"] if train_sym else row["master_entropy"]
            row["seconds"] = time.perf_counter() - t0
            result.history.append(row)
            bar.advance(note=f"entropy {row['entropy']:.3f}")
            if on_update is not None:
                on_update(row, policy)
    policy.eval()
    result.seconds = time.perf_counter() - t0
    return result
