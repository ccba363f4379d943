"""The RL objective: PPO trained and judged over combinatorial purged CV folds.

For each fold, PPO trains on the fold's train segments only (episodes never cross a
segment boundary; the observation scaler is fitted on those bars, or is the pretrained
encoder's for a trial of the FT arm that uses one), then its deterministic
policy is backtested on each test segment through the same market core, beside the
benchmark policy on the very same bars. The fold's score is the annualised Sharpe of the
policy's per-bar returns over its test segments minus the benchmark's. The trial's value
is the mean over folds; the running mean is reported after each fold, so the pruner can
stop a trial early. Each trial keeps, as files: ``folds.json`` (per-fold metrics),
``oos_returns.parquet`` (every test bar: fold, bar open time (the return is realised at
its close), bar index, policy and benchmark return) and the bundle of its best fold's
policy (nothing is retrained).

With an ``rl.mappo`` section the trials are multi-agent PPO over the MAPPO space
(:func:`~cappuccino.tuning.spaces.mappo_space`): each fold trains ``mappo_stages`` in
turn on its train segments (the budget split between them, each stage starting from the
previous one's weights), and the last stage is judged; the best fold's stages are kept as
bundles, each recording its parents. A supervised encoder (``rl.mappo.encoder.bundle``)
is checked once as ``rl train`` checks it, and must have been trained and validated on
bars before the first bar any fold tests.

When the space can choose a pretrained encoder (``ft_use_pretrained``), the newest
compatible one under ``rl.ppo.ft.pretrained_root`` is found once per worker: it must fit
the data and env and must not have seen any bar a fold tests on (pretrain it on bars
before ``cv.start``); its architecture, lookback and scaler are then the arm's.
"""

from __future__ import annotations

import statistics
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from cappuccino.bundles.encoder import (
    PretrainedEncoder,
    find_encoder,
    load_encoder,
    segment_times,
)
from cappuccino.bundles.manifest import TrainPeriod
from cappuccino.bundles.mappo import load_bundle as load_mappo_bundle
from cappuccino.bundles.mappo import save_bundle as save_mappo_bundle
from cappuccino.bundles.rl import save_bundle
from cappuccino.config.loading import apply_values
from cappuccino.config.rl import FTPolicySettings, RLTrainConfig
from cappuccino.config.tuning import TuneConfig
from cappuccino.datasets.market import MarketArrays
from cappuccino.datasets.splits import Fold, combinatorial_purged, segments_index
from cappuccino.evaluation.backtest import BacktestResult, run_backtests
from cappuccino.features.scaling import Scaler
from cappuccino.market import ObservationSpec
from cappuccino.metrics.returns import sharpe_ratio
from cappuccino.models.summary import write_model_summary
from cappuccino.policies import NetPolicy, Policy, benchmark_policy
from cappuccino.policies.multiagent import MultiAgentPolicy
from cappuccino.tracking import Tracker, run_name
from cappuccino.training.rl.env import BatchedTradingEnv
from cappuccino.training.rl.mappo import train_mappo
from cappuccino.training.rl.multiagent import MultiAgentTradingEnv
from cappuccino.training.rl.multiagent_run import (
    new_policy,
    next_stage_policy,
    resolve_supervised,
    stage_configs,
)
from cappuccino.training.rl.ppo import train_ppo
from cappuccino.training.rl.pretrain import encoder_args
from cappuccino.tuning.spaces import Space, study_space
from cappuccino.tuning.study import _Pruned, record_run
from cappuccino.utils.io import atomic_write_json, atomic_write_parquet
from cappuccino.utils.seeding import seed_everything

if TYPE_CHECKING:
    import optuna


def cv_folds(cfg: TuneConfig, n_bars: int) -> list[Fold]:
    folds = combinatorial_purged(
        n_bars, cfg.cv.n_groups, cfg.cv.n_test_groups,
        purge=cfg.cv.purge_bars, embargo=cfg.cv.embargo_bars,
    )  # fmt: skip
    return folds[: cfg.cv.max_folds] if cfg.cv.max_folds else folds


class RLObjective:
    """See the module docstring. ``data``: the market arrays, loaded once per worker."""

    def __init__(
        self,
        cfg: TuneConfig,
        data: MarketArrays,
        tracker: Tracker | None = None,
        parent_run: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.tracker = tracker
        self.parent_run = parent_run
        self.folds = cv_folds(cfg, data.n_bars)
        self.multiagent = cfg.rl.mappo is not None
        self.space: Space
        self.supervised: tuple[dict[str, Any], dict[str, torch.Tensor], Scaler,
                               dict[str, Any]] | None = None  # fmt: skip
        if self.multiagent:
            self.encoder = None
            self.supervised = self._check_supervised()
        else:
            self.encoder = self._find_encoder()
        self.space = study_space(cfg, self.encoder)

    def _check_supervised(
        self,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], Scaler, dict[str, Any]] | None:
        """The supervised encoder the base config names, checked against the data and env
        and against the first tested bar (module docstring); None when it names none."""
        m = self.cfg.rl.mappo
        assert m is not None
        if m.encoder.bundle is None:
            return None
        tested = segment_times(self.data, [s for f in self.folds for s in f.test])
        first = min(a for a, _ in tested)
        before = self.cfg.rl.model_copy(update={"split": self.cfg.rl.split.model_copy(
            update={"train_end": first - timedelta(microseconds=1)})})  # fmt: skip
        try:
            return resolve_supervised(m.encoder.bundle, train=self.data, cfg=before)
        except ValueError as exc:
            raise ValueError(f"{exc} (the first bar a fold tests opens at {first.isoformat()}; "
                             "train the supervised model on bars before cv.start)") from exc  # fmt: skip

    def _find_encoder(self) -> PretrainedEncoder | None:
        """The latest compatible pretrained encoder when the space can choose one: it must
        fit the data and env (its architecture and lookback are the arm's) and must not
        have seen any bar a fold tests on."""
        dims = {d.name: d for d in study_space(self.cfg).dims}
        if (
            True not in dims["use_ft_encoder"].choices
            or True not in dims["ft_use_pretrained"].choices
        ):
            return None
        ft = self.cfg.rl.ppo.ft
        root = ft.pretrained_root if ft is not None else FTPolicySettings().pretrained_root
        tested = segment_times(self.data, [s for f in self.folds for s in f.test])
        try:
            path = find_encoder(root, data=self.data, env=self.cfg.rl.env, ft=None,
                                check_lookback=False, tested=tested)  # fmt: skip
        except ValueError as exc:
            raise ValueError(
                f"{exc}\n(the space can choose a pretrained encoder; pretrain one on bars "
                "before cv.start, or set space.ft_use_pretrained.choices: [false])"
            ) from exc
        return load_encoder(path, ft.pretrained_weights if ft is not None else "best")

    def encoder_for(self, cfg: RLTrainConfig) -> PretrainedEncoder | None:
        """The pretrained encoder a trial's config starts from (None: none)."""
        if cfg.ppo.ft is None or cfg.ppo.ft.pretrained is None:
            return None
        if self.encoder is None:
            raise ValueError("ppo.ft.pretrained is set in the base config; the RL study finds its "
                             "encoder itself (set it to null)")  # fmt: skip
        return self.encoder

    def config_for(self, overrides: dict[str, Any], number: int) -> RLTrainConfig:
        base = self.cfg.rl.model_dump(mode="json")
        data = apply_values(base, overrides)
        data["output_dir"] = str(self.cfg.output_dir / self.cfg.study_name / f"trial_{number:04d}")
        return RLTrainConfig.model_validate(data)

    def _backtest(self, policies: list[Policy], cfg: RLTrainConfig, seg: tuple[int, int]
                  ) -> list[BacktestResult]:  # fmt: skip
        """The policies over one test segment, as one batch."""
        a, b = seg
        history = cfg.env.lookback - 1
        start = max(0, a - history)  # the observation's history may reach before the block
        window = self.data.slice(start, b)
        return run_backtests(window, policies, rules=cfg.market, first=max(a, history) - start)

    @staticmethod
    def _train_segments(cfg: RLTrainConfig, fold: Fold) -> list[tuple[int, int]]:
        need = cfg.env.lookback + (cfg.env.episode_bars or 1)
        train_segments = [s for s in fold.train if s[1] - s[0] >= need]
        if not train_segments:
            raise ValueError(
                f"fold {list(fold.test_groups)}: no train segment holds lookback + episode "
                f"({need} bars); use fewer groups or shorter episodes"
            )
        return train_segments

    def run_fold(self, cfg: RLTrainConfig, fold: Fold) -> dict[str, Any]:
        """Train on the fold's train segments, backtest on its test segments."""
        if cfg.mappo is not None:
            return self._run_fold_multiagent(cfg, fold)
        enc = self.encoder_for(cfg)
        scaler = (enc.scaler if enc is not None
                  else Scaler.fit(self.data.features[fold.train_index()], cfg.env.scaler))  # fmt: skip
        train_segments = self._train_segments(cfg, fold)
        env = BatchedTradingEnv(
            self.data, settings=cfg.env, rules=cfg.market, n_envs=cfg.ppo.n_envs,
            scaler=scaler, segments=train_segments, seed=cfg.seed,
        )  # fmt: skip
        result = train_ppo(env, cfg.ppo, seed=cfg.seed,
                           encoder_state=enc.state_dict if enc is not None else None)  # fmt: skip
        net = NetPolicy(result.policy, settings=cfg.env, scaler=scaler)
        out = self._judge(cfg, fold, net)
        return {"policy": result.policy, "scaler": scaler, "history": result.history,
                "train_segments": train_segments, **out}  # fmt: skip

    def _run_fold_multiagent(self, cfg: RLTrainConfig, fold: Fold) -> dict[str, Any]:
        """Every stage of ``mappo_stages`` in turn on the fold's train segments; the last
        stage's policy is judged."""
        m = cfg.mappo
        assert m is not None
        stages = stage_configs(cfg, self.cfg.mappo_stages)
        state: dict[str, torch.Tensor] | None = None
        provenance: dict[str, Any] | None = None
        if m.encoder.source == "supervised":
            if self.supervised is None:
                raise ValueError("mappo.encoder.source: supervised needs mappo.encoder.bundle "
                                 "in the study's base config")  # fmt: skip
            encoder, state, scaler, provenance = self.supervised
        else:
            scaler = Scaler.fit(self.data.features[fold.train_index()], cfg.env.scaler)
            if m.encoder.source == "mlp":
                encoder = {"source": "mlp", "hidden": m.encoder.hidden}
            else:
                assert m.encoder.ft is not None
                if m.encoder.ft.pretrained is not None:
                    raise ValueError("mappo.encoder.ft.pretrained: an RL study trains the FT "
                                     "encoder from scratch (set it to null)")  # fmt: skip
                spec = ObservationSpec(n_assets=self.data.n_assets, lookback=cfg.env.lookback,
                                       n_features=len(self.data.feature_names))  # fmt: skip
                encoder = {"source": "ft", "ft": encoder_args(m.encoder.ft, spec)}
        train_segments = self._train_segments(cfg, fold)
        base = BatchedTradingEnv(
            self.data, settings=cfg.env, rules=cfg.market, n_envs=cfg.ppo.n_envs,
            scaler=scaler, segments=train_segments, seed=cfg.seed,
        )  # fmt: skip
        env = MultiAgentTradingEnv(base, master_reward=m.master.reward)
        seed_everything(cfg.seed)  # the network's initial weights
        policy = new_policy(env, stages[0], encoder, state)
        done = []
        for k, stage in enumerate(stages):
            if k:
                policy = next_stage_policy(policy)
            assert stage.mappo is not None
            res = train_mappo(env, stage.ppo, stage.mappo, seed=stage.seed, policy=policy)
            done.append((stage, res))
            policy = res.policy
        last = stages[-1].mappo
        assert last is not None
        net = MultiAgentPolicy(policy, settings=cfg.env, scaler=scaler, rules=cfg.market,
                               use_master=last.stage != "symbols")  # fmt: skip
        out = self._judge(cfg, fold, net)
        return {"policy": policy, "scaler": scaler, "history": done[-1][1].history,
                "stages": done, "encoder": provenance, "train_segments": train_segments,
                **out}  # fmt: skip

    def _judge(self, cfg: RLTrainConfig, fold: Fold, net: Policy) -> dict[str, Any]:
        """``net`` and the benchmark on the fold's test segments: Sharpes and returns."""
        bench = benchmark_policy(self.cfg.cv.benchmark, self.data.symbols)
        pol, ben, ts = [], [], []
        for seg in fold.test:
            p, q = self._backtest([net, bench], cfg, seg)
            pol.append(p.returns)
            ben.append(q.returns)
            ts.append(p.timestamps[1:])
        r_p, r_b = np.concatenate(pol), np.concatenate(ben)
        ppy = self.data.timeframe.periods_per_year
        sr_p, sr_b = sharpe_ratio(r_p, ppy), sharpe_ratio(r_b, ppy)
        return {
            "sharpe": sr_p, "benchmark_sharpe": sr_b, "score": sr_p - sr_b, "returns": r_p,
            "benchmark_returns": r_b, "timestamps": np.concatenate(ts),
        }  # fmt: skip

    def __call__(self, trial: optuna.Trial) -> float:
        _, overrides = self.space.sample(trial)
        cfg = self.config_for(overrides, trial.number)
        if self.tracker is None:
            return self._run(trial, cfg, None)
        family = "mappo" if self.multiagent else "ppo"
        name = run_name(self.cfg.rl.output_dir.name or "rl", "rl_cpcv", family,
                        f"{self.cfg.study_name}_t{trial.number}")  # fmt: skip
        tags = {"phase": "tuning", "experiment_type": "rl_cpcv", "model_type": family,
                "dataset_version": f"{self.data.feature_set}:{self.data.describe()['start']}..."
                f"{self.data.describe()['end']}"}  # fmt: skip
        with self.tracker.start_run(name, tags, parent=self.parent_run) as run_id:
            record_run(trial, self.tracker, run_id)
            self.tracker.log_params(cfg.model_dump(mode="json"))
            return self._run(trial, cfg, self.tracker)

    def _run(self, trial: optuna.Trial, cfg: RLTrainConfig, tracker: Tracker | None) -> float:
        out = cfg.output_dir
        rows, frames, best = [], [], None
        for i, fold in enumerate(self.folds):
            r = self.run_fold(cfg, fold)
            if i == 0 and tracker is not None:  # the architecture is the same in every fold
                net = r["policy"]
                args = [torch.zeros(2, net.obs_dim)]
                if cfg.mappo is not None:
                    args.append(torch.zeros(2, net.spec.d_telemetry))
                tracker.log_artifact(write_model_summary(net, args, out / "model_summary.txt"),
                                     "model")  # fmt: skip
            rows.append({"fold": i, "test_groups": list(fold.test_groups),
                         "test_bars": fold.n_test, "train_bars": fold.n_train,
                         **{k: r[k] for k in ("sharpe", "benchmark_sharpe", "score")}})  # fmt: skip
            frames.append(pl.DataFrame({
                "fold": np.full(r["returns"].size, i), "timestamp": r["timestamps"],
                "bar": np.searchsorted(self.data.timestamps, r["timestamps"]),
                "return": r["returns"], "benchmark_return": r["benchmark_returns"],
            }))  # fmt: skip
            if best is None or r["score"] > best[1]["score"]:
                best = (i, r)
            running = statistics.mean(x["score"] for x in rows)
            if tracker is not None:
                tracker.log_metrics({k: float(rows[-1][k]) for k in ("sharpe", "benchmark_sharpe",
                                     "score")} | {"mean_score": running}, step=i)  # fmt: skip
            trial.report(running, i)
            if trial.should_prune():
                raise _Pruned(f"pruned after fold {i}: mean score {running:.4g}")
        assert best is not None
        i, r = best
        train_bars = segments_index(r["train_segments"])
        period = TrainPeriod(
            start=self.data.datetime_at(min(a for a, _ in r["train_segments"])).isoformat(),
            end=self.data.datetime_at(max(b for _, b in r["train_segments"]) - 1).isoformat(),
            n_bars=int(train_bars.size), segments=r["train_segments"], fold=i,
        )  # fmt: skip
        if cfg.mappo is not None:
            bundle = self._save_stages(r, period)
        else:
            bundle = save_bundle(
                out / "bundle", r["policy"], data=self.data, env_settings=cfg.env,
                rules=cfg.market, scaler=r["scaler"], config=cfg.model_dump(mode="json"),
                history=r["history"],
                pretrained_encoder=(enc.provenance() if (enc := self.encoder_for(cfg)) else None),
                train_period=period,
            )  # fmt: skip
        atomic_write_json(out / "folds.json", {"units": _UNITS, "folds": rows})
        atomic_write_parquet(
            out / "oos_returns.parquet",
            pl.concat(frames).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))),
        )
        value = float(statistics.mean(x["score"] for x in rows))
        trial.set_user_attr("bundle", str(bundle))
        trial.set_user_attr("folds", str(out / "folds.json"))
        trial.set_user_attr("oos_returns", str(out / "oos_returns.parquet"))
        trial.set_user_attr("mean_oos_sharpe", statistics.mean(x["sharpe"] for x in rows))
        trial.set_user_attr("n_bars", self.data.n_bars)
        trial.set_user_attr("periods_per_year", self.data.timeframe.periods_per_year)
        return value

    def _save_stages(self, r: dict[str, Any], period: TrainPeriod) -> Path:
        """The best fold's stages as bundles (``<trial>/<k>_<stage>/bundle``), each
        recording its parents; returns the last one."""
        lineage: list[dict[str, Any]] = []
        path: Path | None = None
        for stage, res in r["stages"]:
            assert stage.mappo is not None
            path = save_mappo_bundle(
                stage.output_dir / "bundle", res.policy, data=self.data, mappo=stage.mappo,
                env_settings=stage.env, rules=stage.market, scaler=r["scaler"],
                config=stage.model_dump(mode="json"), history=res.history, train_period=period,
                encoder=r["encoder"], parents=lineage,
            )  # fmt: skip
            lineage = load_mappo_bundle(path).lineage()
        assert path is not None
        return path


_UNITS = (
    "sharpe: annualised (x sqrt(bars per year)) mean/std (ddof 1) of per-bar simple returns "
    "over the fold's test segments, risk-free 0; score: sharpe - benchmark_sharpe"
)
