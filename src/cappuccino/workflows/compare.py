"""``cappuccino rl compare``: an honest A/B of PPO (with and without the FT encoder) and
multi-agent PPO.

Every arm (:class:`~cappuccino.config.rl.CompareConfig`) trains on the same training
period, with the same PPO settings, timesteps and seeds; only ``ppo.ft`` differs, or, for
the multi-agent arms (``mappo``: centralised critic, ``ippo``: decentralised), the policy:
their stages (symbol agents, then the master, then both) share the budget. The
pretrained arms start from one encoder, pretrained on the training period only (or given).
Each run is then backtested, deterministically, on the split's test period beside the
benchmarks on the same bars, and gets the degenerate-policy verdict.

Per run: out-of-sample Sharpe (annualised from per-bar simple returns, risk-free 0) and
total return (fraction), the training learning curve (mean log return of the training
episodes that ended in each update), out-of-sample checkpoints during training, training
wall time, peak resident memory of its process (and peak CUDA memory on a GPU) and
parameter counts. Per arm: the mean and 95 % t interval over seeds. Per comparison (each
arm against the baseline, and the pretrained arms against ``ft_scratch``): a paired t test
over seeds of the Sharpe difference, a Welch test, and a circular block bootstrap over
test bars of the seed-averaged return difference; p-values are Holm-adjusted over the
comparisons, and the verdict says "significantly better/worse" only when both adjusted
p-values are below ``alpha``, else "no significant difference".

Files (``output_dir``): ``encoder/`` (when pretrained here; ``encoder_<tf>/`` for the
``ft_transfer`` arm's, pretrained on ``transfer_timeframe``), ``runs/<arm>/seed<k>/bundle``
(a multi-agent arm: ``runs/<arm>/seed<k>/<i>_<stage>/bundle``),
``compare.json``, ``compare.md``, ``report.html``.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cappuccino.bundles.load import load_policy
from cappuccino.config.loading import apply_values
from cappuccino.config.rl import CompareConfig, PretrainConfig, RLTrainConfig
from cappuccino.datasets.market import load_market
from cappuccino.evaluation import compare as stats
from cappuccino.evaluation.backtest import run_backtest
from cappuccino.models.multiagent import MultiAgentActorCritic
from cappuccino.policies import NetPolicy, Policy
from cappuccino.policies.multiagent import MultiAgentPolicy
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.training.rl.multiagent_run import stage_configs
from cappuccino.training.rl.pretrain import pretrain_encoder
from cappuccino.training.rl.train import holdout_start, train_rl
from cappuccino.utils.io import atomic_write_bytes, atomic_write_json
from cappuccino.utils.progress import steps
from cappuccino.workflows.backtest import evaluate, period_window

log = logging.getLogger(__name__)

PRETRAINED_ARMS = ("ft_frozen", "ft_finetuned", "ft_transfer")
TRANSFER_ARM = "ft_transfer"  # its encoder is pretrained on CompareConfig.transfer_timeframe
UNITS = {
    "sharpe": "annualised Sharpe ratio of per-bar simple returns on the test period "
    "(x sqrt(bars per year), risk-free 0)",
    "total_return": "simple return over the test period, fraction",
    "train_return": "mean log return per training episode (natural log, per episode)",
    "seconds": "wall-clock seconds of PPO training",
    "peak_rss_mb": "peak resident set size of the run's process from the start of training "
    "(peak reset after the data was loaded) to the end of its evaluation, MiB; in brackets, "
    "the peak minus the resident size with the data loaded",
}


MULTIAGENT_ARMS = ("mappo", "ippo")


def arm_config(cfg: CompareConfig, arm: str, seed: int, encoder: Path | None) -> RLTrainConfig:
    """The run of ``arm`` with ``seed``: the base run with the arm's ``ppo.ft`` (a
    multi-agent arm: its first stage, :func:`arm_stages`)."""
    if arm in MULTIAGENT_ARMS:
        return arm_stages(cfg, arm, seed, encoder)[0]
    ft: dict[str, Any] | None = None
    if arm != "mlp":
        ft = cfg.encoder.model_dump(mode="json")
    if arm in PRETRAINED_ARMS:
        if encoder is None:
            raise ValueError(f"arm {arm}: needs a pretrained encoder")
        assert ft is not None
        frozen = arm == "ft_frozen"
        ft |= {"pretrained": str(encoder), "freeze": frozen,
               "lr_scale": 1.0 if frozen else cfg.finetune_lr_scale,
               "allow_timeframe_transfer": arm == TRANSFER_ARM}  # fmt: skip
    data = apply_values(cfg.rl.model_dump(mode="json"), {
        "seed": seed, "ppo.ft": ft,
        "output_dir": str(cfg.output_dir / "runs" / arm / f"seed{seed}"),
    })  # fmt: skip
    return RLTrainConfig.model_validate(data)


def arm_stages(
    cfg: CompareConfig, arm: str, seed: int, encoder: Path | None = None
) -> list[RLTrainConfig]:
    """The runs of ``arm`` with ``seed`` in order: one for a PPO arm; for a multi-agent
    arm, one per stage of ``mappo_stages``, each the parent of the next, together
    ``rl.ppo.n_updates`` updates of ``rl.ppo.batch_size`` timesteps."""
    if arm not in MULTIAGENT_ARMS:
        return [arm_config(cfg, arm, seed, encoder)]
    mappo = cfg.mappo.model_dump(mode="json") | {
        "critic": "centralised" if arm == "mappo" else "decentralised",
        "stage": "symbols", "parent": None,
    }  # fmt: skip
    base = RLTrainConfig.model_validate(apply_values(cfg.rl.model_dump(mode="json"), {
        "seed": seed, "ppo.ft": None, "mappo": mappo,
        "output_dir": str(cfg.output_dir / "runs" / arm / f"seed{seed}"),
    }))  # fmt: skip
    return stage_configs(base, cfg.mappo_stages)


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux: ``5`` to ``/proc/self/clear_refs``
    resets ``VmHWM``); False where the platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        log.warning("peak memory cannot be reset here (%s): it is reported as unavailable", exc)
        return False
    return True


def rss_mb(field: str = "VmHWM") -> float | None:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident set size of this process, MiB;
    None off Linux."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0  # kB
    return None


def _eval_policy(run: RLTrainConfig, policy: Any, scaler: Any) -> Policy:
    """The policy a training hook holds, as the backtest runs it."""
    if isinstance(policy, MultiAgentActorCritic):
        assert run.mappo is not None
        return MultiAgentPolicy(policy, settings=run.env, scaler=scaler, rules=run.market,
                                use_master=run.mappo.stage != "symbols")  # fmt: skip
    return NetPolicy(policy, settings=run.env, scaler=scaler)


def run_one(cfg_json: dict[str, Any], arm: str, seed: int, encoder: str | None) -> dict[str, Any]:
    """Train and judge one (arm, seed); module-level so a fresh process can run it. A
    multi-agent arm trains its stages in turn; its curve and timesteps run across them."""
    cfg = CompareConfig.model_validate(cfg_json)
    stages = arm_stages(cfg, arm, seed, Path(encoder) if encoder else None)
    run = stages[0]
    data = load_market(run.data.store, run.data.timeframe, run.data.symbols, run.env.feature_set)
    start, end = holdout_start(data, run.split), run.split.test_end
    window, first, _ = period_window(data, start, end, run.env.lookback)
    n_updates = sum(r.ppo.n_updates for r in stages)
    points = {round(n_updates * (k + 1) / (cfg.eval_points + 1)) for k in range(cfg.eval_points)}
    curve: list[dict[str, float]] = []
    history: list[dict[str, float]] = []
    rules = run.market
    cuda = torch.cuda.is_available() and run.ppo.device in ("auto", "cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss0 = rss_mb("VmRSS")  # data loaded, before the policy exists
    can_reset = reset_peak_rss()
    offset = {"updates": 0, "timesteps": 0.0}
    trained: dict[str, Any] = {}

    def checkpoint(row: dict[str, float], policy: Any, scaler: Any) -> None:
        trained["policy"] = policy
        steps_done = offset["timesteps"] + row["timesteps"]
        history.append({"timesteps": steps_done,
                        "train_return": row["mean_episode_log_return"]})  # fmt: skip
        if offset["updates"] + int(row["update"]) not in points:
            return
        was = policy.training
        policy.eval()
        bt = run_backtest(window, _eval_policy(current, policy, scaler), rules=rules,
                          first=first, device=next(policy.parameters()).device)  # fmt: skip
        policy.train(was)
        curve.append({"timesteps": steps_done, "sharpe": bt.metrics["sharpe"],
                      "total_return": bt.metrics["total_return"]})  # fmt: skip

    seconds = train_seconds = 0.0
    for current in stages:
        t0 = time.perf_counter()
        result = train_rl(current, data, on_update=checkpoint)
        seconds += time.perf_counter() - t0
        train_seconds += result.summary["seconds"]
        offset["updates"] += current.ppo.n_updates
        offset["timesteps"] += float(result.summary["timesteps"])
    peak = rss_mb("VmHWM") if can_reset else None
    bundle = load_policy(result.bundle)
    ev = evaluate(data, bundle, start=start, end=end, rules=rules, benchmarks=cfg.benchmarks)
    m = ev.policy.metrics
    net = trained["policy"]
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    curve.append({"timesteps": offset["timesteps"], "sharpe": m["sharpe"],
                  "total_return": m["total_return"]})  # fmt: skip
    return {
        "arm": arm, "seed": seed, "bundle": str(result.bundle),
        "stages": [r.mappo.stage for r in stages if r.mappo is not None],
        "sharpe": m["sharpe"], "total_return": m["total_return"],
        "max_drawdown": m["max_drawdown"], "exposure": m["exposure"], "turnover": m["turnover"],
        "returns": ev.policy.returns.tolist(),
        "benchmarks": {b.name: {"sharpe": b.metrics["sharpe"],
                                "total_return": b.metrics["total_return"]}
                       for b in ev.benchmarks},
        "degenerate": ev.verdict,
        "period": ev.context["period"],
        "seconds": seconds, "train_seconds": train_seconds,
        "peak_rss_mb": peak, "rss_before_training_mb": rss0,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "parameters": params, "trainable_parameters": trainable,
        "history": history, "oos_curve": curve, "device": result.summary["device"],
    }  # fmt: skip


def _pretrain(
    cfg: CompareConfig, transfer: bool = False
) -> tuple[Path | None, dict[str, Any] | None]:
    """The encoder of the pretrained arms (``transfer``: of the ``ft_transfer`` arm, on
    ``transfer_timeframe``), given or pretrained now on the training period; None when no
    arm needs it."""
    arms = set(cfg.arms) & set(PRETRAINED_ARMS)
    if not (arms & {TRANSFER_ARM} if transfer else arms - {TRANSFER_ARM}):
        return None, None
    given = cfg.transfer_pretrained if transfer else cfg.pretrained
    if given is not None:
        return given, None
    r = cfg.rl
    d = r.data
    if transfer:
        assert cfg.transfer_timeframe is not None
        d = d.model_copy(update={"timeframe": cfg.transfer_timeframe})
    out = cfg.output_dir / (f"encoder_{d.timeframe}" if transfer else "encoder")
    pcfg = PretrainConfig(seed=cfg.seeds[0], output_dir=out, data=d, split=r.split, env=r.env,
                          encoder=cfg.encoder, pretrain=cfg.pretrain)  # fmt: skip
    data = load_market(d.store, d.timeframe, d.symbols, r.env.feature_set)
    log.info("pretraining the encoder for the %s arms on %s bars",
             TRANSFER_ARM if transfer else "pretrained", d.timeframe)  # fmt: skip
    res = pretrain_encoder(pcfg, data)
    return res.path, res.summary


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Run every (arm, seed), then the statistics and the report (module docstring)."""
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.output_dir / "config.json", cfg.model_dump(mode="json"))
    encoder, pre = _pretrain(cfg)
    transfer, pre_transfer = _pretrain(cfg, transfer=True)
    enc = str(encoder) if encoder else None
    encoders = {arm: str(transfer) if arm == TRANSFER_ARM and transfer else enc
                for arm in cfg.arms}  # fmt: skip
    jobs = [(arm, seed) for arm in cfg.arms for seed in cfg.seeds]
    runs: list[dict[str, Any]] = []
    payload = cfg.model_dump(mode="json")
    with steps("A/B runs", len(jobs)) as bar:
        if cfg.processes:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                     max_tasks_per_child=1) as ex:  # fmt: skip
                for arm, seed in jobs:
                    log.info("arm %s, seed %d", arm, seed)
                    runs.append(ex.submit(run_one, payload, arm, seed, encoders[arm]).result())
                    bar.advance(note=f"{arm} seed {seed}")
        else:
            for arm, seed in jobs:
                log.info("arm %s, seed %d", arm, seed)
                runs.append(run_one(payload, arm, seed, encoders[arm]))
                bar.advance(note=f"{arm} seed {seed}")
    report = analyse(cfg, runs)
    report["pretraining"] = pre
    report["encoder"] = enc
    if TRANSFER_ARM in cfg.arms:
        report["transfer"] = {"from": cfg.transfer_timeframe, "to": cfg.rl.data.timeframe,
                              "encoder": str(transfer), "pretraining": pre_transfer}  # fmt: skip
    report["explanation"] = _explain_best_ft(cfg, report, runs)
    write_compare(cfg.output_dir, report)
    return report


EXPLAIN_BARS, EXPLAIN_STEPS = 512, 16


def _explain_best_ft(
    cfg: CompareConfig, report: dict[str, Any], runs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Which tokens drive the best FT arm (by mean Sharpe), seed ``seeds[0]``, over the
    comparison period (:mod:`cappuccino.workflows.explain`; 512 bars evenly spaced, 16
    integrated-gradients steps); None without an FT arm."""
    from cappuccino.workflows.explain import explain_bundle

    ft = [a for a in cfg.arms if a.startswith("ft")]
    if not ft:
        return None
    best = max(ft, key=lambda a: report["arms"][a]["sharpe"]["mean"])
    run = next(r for r in runs if r["arm"] == best and r["seed"] == cfg.seeds[0])
    p = report["period"]
    doc = explain_bundle(Path(run["bundle"]), cfg.rl.data.store, cfg.output_dir / "explain",
                         start=datetime.fromisoformat(p["start"]),
                         end=datetime.fromisoformat(p["end"]), max_bars=EXPLAIN_BARS,
                         steps=EXPLAIN_STEPS)  # fmt: skip
    return {"arm": best, "seed": cfg.seeds[0], "bars": doc["bars"], "tokens": doc["tokens"][:10],
            "outputs": doc["outputs"], "units": doc["units"]}  # fmt: skip


def _per_seed(runs: list[dict[str, Any]], arm: str, key: str, seeds: list[int]) -> list[Any]:
    """``run[key]`` of ``arm``'s runs in seed order."""
    got = {r["seed"]: r[key] for r in runs if r["arm"] == arm}
    return [got[s] for s in seeds]


def _by_arm(runs: list[dict[str, Any]], arm: str, key: str, seeds: list[int]) -> list[float]:
    return [float(v) for v in _per_seed(runs, arm, key, seeds)]


def analyse(cfg: CompareConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-arm intervals, sample efficiency, comparisons with Holm-adjusted p-values and the
    verdicts, from the per-run results of :func:`run_one`."""
    seeds, arms = cfg.seeds, cfg.arms
    finals = {(r["arm"], r["seed"]): stats.trailing_mean(
        [h["train_return"] for h in r["history"]], cfg.smooth_updates) for r in runs}  # fmt: skip
    known = [v for v in finals.values() if v is not None]
    level = cfg.efficiency_level
    if level is None:
        level = statistics.median(known) if known else 0.0
    per_arm: dict[str, Any] = {}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        reach = [stats.steps_to_reach([h["timesteps"] for h in r["history"]],
                                      [h["train_return"] for h in r["history"]], level,
                                      cfg.smooth_updates) for r in mine]  # fmt: skip
        reached = [x for x in reach if x is not None]
        fin = [v for s in seeds if (v := finals[(arm, s)]) is not None]
        degenerate = [r for r in mine if r["degenerate"] and r["degenerate"]["degenerate"]]
        per_arm[arm] = {
            "sharpe": stats.mean_ci(_by_arm(runs, arm, "sharpe", seeds)),
            "total_return": stats.mean_ci(_by_arm(runs, arm, "total_return", seeds)),
            "max_drawdown": stats.mean_ci(_by_arm(runs, arm, "max_drawdown", seeds)),
            "exposure": statistics.mean(_by_arm(runs, arm, "exposure", seeds)),
            "train_return_final": stats.mean_ci(fin) if len(fin) >= 2 else None,
            "steps_to_level": {"level": level, "reached": len(reached), "runs": len(mine),
                               "median_steps": statistics.median(reached) if reached else None},
            "seconds": statistics.mean(_by_arm(runs, arm, "seconds", seeds)),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in mine if r["peak_rss_mb"] is not None),
                               default=None),
            "rss_before_training_mb": max((r["rss_before_training_mb"] or 0.0) for r in mine),
            "peak_cuda_mb": max((r["peak_cuda_mb"] or 0.0) for r in mine) or None,
            "parameters": mine[0]["parameters"],
            "trainable_parameters": mine[0]["trainable_parameters"],
            "degenerate_runs": len(degenerate),
            "degenerate_matches": sorted({r["degenerate"]["matches"] for r in degenerate}),
        }  # fmt: skip
    pairs: list[tuple[str, str]] = [(a, arms[0]) for a in arms[1:]]
    if "ft_scratch" in arms and arms[0] != "ft_scratch":
        pairs += [(a, "ft_scratch") for a in arms if a in PRETRAINED_ARMS]
    tests: list[dict[str, Any]] = []
    pair: tuple[str, str]
    for pair in pairs:
        a, b = pair
        sa, sb = _by_arm(runs, a, "sharpe", seeds), _by_arm(runs, b, "sharpe", seeds)
        ra = np.mean(_per_seed(runs, a, "returns", seeds), axis=0)
        rb = np.mean(_per_seed(runs, b, "returns", seeds), axis=0)
        paired = stats.paired_t_test(sa, sb)
        boot = stats.block_bootstrap_p(ra - rb, block=cfg.bootstrap_block, seed=seeds[0])
        tests.append({"arm": a, "baseline": b, **paired, "welch_p": stats.welch_t_test(sa, sb)["p"],
                      "bootstrap_mean_return_diff": boot["mean"], "bootstrap_p": boot["p"]})  # fmt: skip
    for t, p in zip(tests, stats.holm([t["p"] for t in tests]), strict=True):
        t["p_adjusted"] = p
    for t, p in zip(tests, stats.holm([t["bootstrap_p"] for t in tests]), strict=True):
        t["bootstrap_p_adjusted"] = p
    verdicts = [stats.verdict(t["arm"], t["baseline"], t, cfg.alpha) for t in tests]
    for arm in arms:
        if per_arm[arm]["degenerate_runs"]:
            verdicts.append(
                f"{arm}: {per_arm[arm]['degenerate_runs']} of {len(seeds)} runs are degenerate "
                f"(they match {', '.join(per_arm[arm]['degenerate_matches'])})"
            )
    warnings = []
    if len(seeds) < 5:
        warnings.append(f"{len(seeds)} seeds per arm: fewer than 5, the tests have little power")
    first = runs[0]
    units = dict(UNITS)
    if not cfg.processes:
        units["peak_rss_mb"] += (" (runs shared one process: memory the allocator kept from "
                                 "earlier runs counts; set processes: true to isolate them)")  # fmt: skip
    return {
        "units": units, "arms": per_arm, "comparisons": tests, "verdicts": verdicts,
        "warnings": warnings, "seeds": seeds, "period": first["period"],
        "benchmarks": first["benchmarks"], "timesteps": cfg.rl.ppo.total_timesteps,
        "alpha": cfg.alpha, "runs": runs,
    }  # fmt: skip


def _ci(c: dict[str, float] | None, fmt: str = "{:.3f}") -> str:
    if c is None:
        return "n/a"
    return f"{fmt.format(c['mean'])} [{fmt.format(c['low'])}, {fmt.format(c['high'])}]"


def _tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables, rendered as Markdown and as HTML."""
    arms = []
    for arm, a in report["arms"].items():
        st = a["steps_to_level"]
        steps = f"{st['reached']}/{st['runs']}" + (
            f" ({st['median_steps']:,.0f})" if st["median_steps"] is not None else ""
        )
        arms.append([
            arm, _ci(a["sharpe"]), _ci(a["total_return"], "{:.2%}"),
            _ci(a["max_drawdown"], "{:.2%}"), f"{a['exposure']:.0%}",
            _ci(a["train_return_final"], "{:.4f}"), steps, f"{a['seconds']:.0f}",
            "n/a" if a["peak_rss_mb"] is None else
            f"{a['peak_rss_mb']:.0f} ({a['peak_rss_mb'] - a['rss_before_training_mb']:+.0f})",
            f"{a['parameters']:,} ({a['trainable_parameters']:,})",
            str(a["degenerate_runs"]),
        ])  # fmt: skip
    level = next(iter(report["arms"].values()))["steps_to_level"]["level"]
    head = ["arm", "Sharpe, mean [95 % CI]", "total return", "max drawdown", "exposure",
            "final train return", f"runs reaching {level:.4f} (median steps)", "train s",
            "peak RSS MiB (over data loaded)", "params (trainable)", "degenerate runs"]  # fmt: skip
    bench = [[k, f"{v['sharpe']:.3f}", f"{v['total_return']:.2%}"]
             for k, v in report["benchmarks"].items()]  # fmt: skip
    tests = [[t["arm"], t["baseline"], f"{t['diff']:+.3f}", f"{t['p']:.3g}",
              f"{t['p_adjusted']:.3g}", f"{t['welch_p']:.3g}", f"{t['bootstrap_p']:.3g}",
              f"{t['bootstrap_p_adjusted']:.3g}"] for t in report["comparisons"]]  # fmt: skip
    out = [
        Table.from_cells(head, arms),
        Table.from_cells(["benchmark", "Sharpe", "total return"], bench),
        Table.from_cells(["arm", "vs", "Sharpe diff", "paired t p", "Holm", "Welch p",
                          "bar bootstrap p", "Holm"], tests),
    ]  # fmt: skip
    e = report.get("explanation")
    if e:
        out.append(Table(
            title=f"Which tokens drive {e['arm']} (seed {e['seed']}, {e['bars']} bars): the "
                  "top 10 by integrated gradients",
            header=("rank", "token", "share of |IG|", "[CLS] attention"),
            rows=tuple((str(t["rank"]), t["token"], f"{t['gradient_share']:.1%}",
                        "n/a" if t["attention"] is None else f"{t['attention']:.4f}")
                       for t in e["tokens"]),
            numeric=(True, False, True, True),
            notes=(f"Heat maps: {e['outputs']['html']}. {e['units']}.",),
        ))  # fmt: skip
    return out


def _title(report: dict[str, Any]) -> list[str]:
    return [
        f"A/B: {', '.join(report['arms'])} ({len(report['seeds'])} seeds, "
        f"{report['timesteps']:,} timesteps each)",
        f"Test period {report['period']['start']} .. {report['period']['end']}.",
        *([f"{TRANSFER_ARM}: encoder pretrained on {t['from']} bars, fine-tuned on {t['to']} "
           f"(observation scaler fitted on the {t['to']} training period); compared with "
           f"ft_scratch on {t['to']}."] if (t := report.get("transfer")) else []),
        *(f"Warning: {w}" for w in report["warnings"]),
    ]  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    title, *intro = _title(report)
    lines = [f"# {title}", "", *intro, ""]
    for t in _tables(report):
        lines += [t.markdown(), ""]
    lines += ["## Verdict", "", *(f"- {v}" for v in report["verdicts"]), "", "## Units", ""]
    lines += [f"- {k}: {v}" for k, v in report["units"].items()]
    return "\n".join(lines) + "\n"


def html(report: dict[str, Any]) -> str:
    import plotly.graph_objects as go
    from plotly.io import to_html
    from plotly.subplots import make_subplots

    titles = ("training: mean episode log return (seeds averaged)",
              "out of sample: Sharpe at checkpoints (seeds averaged)",
              "out of sample: Sharpe per seed")  # fmt: skip
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles)
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    for k, arm in enumerate(report["arms"]):
        color = palette[k % len(palette)]
        mine = [r for r in report["runs"] if r["arm"] == arm]
        steps = [h["timesteps"] for h in mine[0]["history"]]
        grid = np.array([[np.nan if h["train_return"] is None else h["train_return"]
                          for h in r["history"]] for r in mine], dtype=np.float64)  # fmt: skip
        n_ok = np.isfinite(grid).sum(axis=0)
        vals = np.where(n_ok > 0, np.nansum(grid, axis=0) / np.maximum(n_ok, 1), np.nan)
        fig.add_trace(go.Scatter(x=steps, y=vals, name=arm, legendgroup=arm, mode="lines+markers",
                                 line={"color": color}), 1, 1)  # fmt: skip
        cx = [c["timesteps"] for c in mine[0]["oos_curve"]]
        cy = np.mean([[c["sharpe"] for c in r["oos_curve"]] for r in mine], axis=0)
        fig.add_trace(go.Scatter(x=cx, y=cy, name=arm, legendgroup=arm, showlegend=False,
                                 mode="lines+markers", line={"color": color}), 1, 2)  # fmt: skip
        fig.add_trace(go.Box(y=[r["sharpe"] for r in mine], name=arm, boxpoints="all",
                             legendgroup=arm, showlegend=False, marker={"color": color}), 1, 3)  # fmt: skip
    fig.update_layout(height=450, width=1400)
    fig.update_xaxes(title_text="timesteps", row=1, col=1)
    fig.update_xaxes(title_text="timesteps", row=1, col=2)
    title, *intro = _title(report)
    return render_page(
        "compare.html.j2", title=title, intro=intro,
        sections=[Section(t, t.title) for t in _tables(report)], verdicts=report["verdicts"],
        figures=[to_html(fig, include_plotlyjs=True, full_html=False)],
        units=[f"{k}: {v}" for k, v in report["units"].items()],
    )  # fmt: skip


def write_compare(out: Path, report: dict[str, Any]) -> None:
    atomic_write_json(out / "compare.json", report)
    atomic_write_bytes(out / "compare.md", markdown(report).encode())
    atomic_write_bytes(out / "report.html", html(report).encode())
