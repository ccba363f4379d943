"""``rl compare``: arm configs, the statistics on known runs, and a tiny end-to-end A/B."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from cappuccino.config.rl import CompareConfig
from cappuccino.workflows.compare import analyse, arm_config, markdown


def _cfg(tmp_path: Path, **kw: object) -> CompareConfig:
    return CompareConfig.model_validate({"output_dir": str(tmp_path), "seeds": [0, 1, 2, 3, 4],
                                         "arms": ["mlp", "ft_scratch"], **kw})  # fmt: skip


def test_arms_differ_only_in_their_encoder(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, arms=["mlp", "ft_scratch", "ft_frozen", "ft_finetuned"],
               finetune_lr_scale=0.2)  # fmt: skip
    enc = tmp_path / "enc"
    runs = {a: arm_config(cfg, a, 3, enc) for a in cfg.arms}
    dumps = {a: r.model_dump(mode="json") for a, r in runs.items()}
    for a, d in dumps.items():
        d["ppo"].pop("ft")
        d.pop("output_dir")
        assert d == dumps["mlp"], a  # same data, split, market, env, PPO budget and seed
        assert runs[a].seed == 3
    assert runs["mlp"].ppo.ft is None
    scratch, frozen, fine = (runs[a].ppo.ft for a in ("ft_scratch", "ft_frozen", "ft_finetuned"))
    assert scratch is not None and frozen is not None and fine is not None
    assert scratch.pretrained is None and not scratch.freeze
    assert frozen.pretrained == str(enc) and frozen.freeze
    assert fine.pretrained == str(enc) and not fine.freeze and fine.lr_scale == 0.2
    arch = ("d_token", "n_blocks", "n_heads", "d_out", "dropout")
    assert {tuple(getattr(f, k) for k in arch) for f in (scratch, frozen, fine)} == {
        tuple(getattr(cfg.encoder, k) for k in arch)
    }
    with pytest.raises(ValueError, match="needs a pretrained encoder"):
        arm_config(cfg, "ft_frozen", 0, None)


def test_multiagent_arms_share_the_budget_between_their_stages(tmp_path: Path) -> None:
    from cappuccino.training.rl.multiagent_run import stage_updates
    from cappuccino.workflows.compare import arm_stages

    assert stage_updates(10, 3) == [4, 3, 3] and stage_updates(3, 3) == [1, 1, 1]
    cfg = _cfg(tmp_path, arms=["mlp", "mappo", "ippo"],
               rl={"ppo": {"n_envs": 4, "n_steps": 32, "minibatch_size": 64,
                       "total_timesteps": 1280}})  # fmt: skip
    (mlp,) = arm_stages(cfg, "mlp", 2)
    assert mlp.mappo is None and mlp.ppo.n_updates == 10
    for arm, critic in (("mappo", "centralised"), ("ippo", "decentralised")):
        runs = arm_stages(cfg, arm, 2)
        assert [r.mappo.stage for r in runs if r.mappo] == ["symbols", "master", "joint"]
        assert [r.ppo.total_timesteps for r in runs] == [512, 384, 384]  # 4 + 3 + 3 updates
        assert sum(r.ppo.n_updates * r.ppo.batch_size for r in runs) == 1280
        assert {r.mappo.critic for r in runs if r.mappo} == {critic}
        assert runs[0].mappo is not None and runs[0].mappo.parent is None
        for parent, child in itertools.pairwise(runs):
            assert child.mappo is not None and child.mappo.parent == parent.output_dir / "bundle"
        assert all(r.seed == 2 for r in runs)
        assert arm_config(cfg, arm, 2, None) == runs[0]
    with pytest.raises(ValueError, match="mappo_stages"):
        _cfg(tmp_path, arms=["mlp", "mappo"], mappo_stages=["master"])
    with pytest.raises(ValueError, match="one update per stage"):
        _cfg(tmp_path, arms=["mlp", "mappo"],
             rl={"ppo": {"n_envs": 4, "n_steps": 32, "minibatch_size": 64,
                      "total_timesteps": 256}})  # fmt: skip


def _run(arm: str, seed: int, sharpe: float, returns: np.ndarray, degenerate: bool = False
         ) -> dict[str, object]:  # fmt: skip
    curve = [float("nan"), 0.01 * seed, 0.02, 0.03 + 0.01 * (arm != "mlp")]
    hist = [{"timesteps": 100.0 * (i + 1), "train_return": v} for i, v in enumerate(curve)]
    return {
        "arm": arm, "seed": seed, "sharpe": sharpe, "total_return": sharpe / 10,
        "max_drawdown": -0.1, "exposure": 0.5, "returns": returns.tolist(),
        "degenerate": {"degenerate": degenerate, "matches": "buy_and_hold" if degenerate else None},
        "seconds": 2.0, "peak_rss_mb": 300.0, "rss_before_training_mb": 250.0,
        "peak_cuda_mb": None, "parameters": 10,
        "trainable_parameters": 10, "history": hist, "oos_curve": [], "period":
        {"start": "a", "end": "b"}, "benchmarks": {"cash": {"sharpe": 0.0, "total_return": 0.0}},
    }  # fmt: skip


def test_analysis_matches_scipy_and_states_the_verdict(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    rng = np.random.default_rng(0)
    base = [0.1, 0.3, -0.2, 0.0, 0.2]
    better = [b + 1.0 + 0.05 * i for i, b in enumerate(base)]
    runs = []
    for s in range(5):
        r = rng.normal(0, 0.01, 400)
        runs.append(_run("mlp", s, base[s], r, degenerate=s < 2))
        runs.append(_run("ft_scratch", s, better[s], r + 0.002))
    rep = analyse(cfg, runs)
    ci = rep["arms"]["mlp"]["sharpe"]
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(base), scale=sps.sem(base))
    assert (ci["mean"], ci["low"], ci["high"]) == pytest.approx((np.mean(base), lo, hi))
    (t,) = rep["comparisons"]
    assert t["p"] == pytest.approx(sps.ttest_rel(better, base).pvalue)
    assert t["p_adjusted"] == t["p"]  # one comparison: Holm changes nothing
    assert t["bootstrap_p"] < 0.01  # a constant +0.2 % per bar
    assert rep["verdicts"][0].startswith("ft_scratch is significantly better than mlp")
    assert "mlp: 2 of 5 runs are degenerate (they match buy_and_hold)" in rep["verdicts"]
    # sample efficiency: the level is the median final trailing mean over runs
    eff = rep["arms"]["ft_scratch"]["steps_to_level"]
    assert eff["runs"] == 5 and eff["reached"] >= 1
    md = markdown(rep)
    assert "| ft_scratch | mlp |" in md and "no significant" not in md
    # the same Sharpes with noise instead of an edge: no significant difference
    runs2 = [r | {"sharpe": r["sharpe"] + (0.0 if r["arm"] == "mlp" else rng.normal(0, 0.5) - 1.0),
                  "returns": (rng.normal(0, 0.01, 400)).tolist()} for r in runs]  # fmt: skip
    assert "no significant difference" in analyse(cfg, runs2)["verdicts"][0]


def test_few_seeds_are_flagged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, seeds=[0, 1])
    r = np.zeros(10)
    rep = analyse(cfg, [_run(a, s, 0.1 * s + (a == "mlp"), r + s * 1e-3)
                        for a in cfg.arms for s in cfg.seeds])  # fmt: skip
    assert rep["warnings"] == ["2 seeds per arm: fewer than 5, the tests have little power"]


def _tiny(tmp_path: Path, symbols: list[str], timesteps: int, **kw: object) -> CompareConfig:
    """Two seeds on the bundled sample (imported here), three weeks of training, two of
    test, tiny PPO rollouts, every run in this process."""
    from typer.testing import CliRunner

    from cappuccino.cli.main import app

    store = tmp_path / "store"
    res = CliRunner().invoke(app, ["data", "sample", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    return CompareConfig.model_validate({
        "output_dir": str(tmp_path / "ab"), "seeds": [0, 1], "processes": False,
        "rl": {"data": {"store": str(store), "symbols": symbols},
               "split": {"train_start": "2021-02-01T00:00:00Z", "train_end": "2021-02-20T23:00:00Z",
                         "test_end": "2021-03-05T23:00:00Z"},
               "env": {"lookback": 2, "episode_bars": 48},
               "ppo": {"n_envs": 4, "n_steps": 32, "minibatch_size": 64, "n_epochs": 1,
                       "total_timesteps": timesteps}},
        **kw,
    })  # fmt: skip


def test_a_tiny_ab_end_to_end(tmp_path: Path) -> None:
    """Two arms (MLP, pretrained frozen FT) x two seeds on the bundled sample, in this
    process: the encoder is pretrained on the training period only and every file is
    written."""
    from cappuccino.workflows.compare import compare

    cfg = _tiny(tmp_path, ["BTC/USDT", "ETH/USDT"], 256, arms=["mlp", "ft_frozen"],
                eval_points=1, encoder={"d_token": 8, "n_blocks": 1, "n_heads": 2, "d_out": 8},
                pretrain={"epochs": 1, "batch_size": 128})  # fmt: skip
    rep = compare(cfg)
    out = tmp_path / "ab"
    enc = json.loads((out / "encoder" / "encoder.json").read_text())
    assert enc["last_bar"] <= "2021-02-20T23:00:00+00:00" and enc["env"]["lookback"] == 2
    assert rep["encoder"] == str(out / "encoder")
    assert {(r["arm"], r["seed"]) for r in rep["runs"]} == {
        ("mlp", 0),
        ("mlp", 1),
        ("ft_frozen", 0),
        ("ft_frozen", 1),
    }
    assert rep["period"]["start"].startswith("2021-02-22")  # train_end + 24 bars embargo
    n = len(rep["runs"][0]["returns"])
    assert all(len(r["returns"]) == n for r in rep["runs"])  # the same test bars for all
    assert all(len(r["oos_curve"]) == 2 for r in rep["runs"])  # 1 checkpoint + the end
    assert rep["arms"]["ft_frozen"]["trainable_parameters"] < rep["arms"]["ft_frozen"]["parameters"]
    assert rep["warnings"] and len(rep["verdicts"]) >= 1
    for f in ("compare.json", "compare.md", "report.html", "config.json"):
        assert (out / f).is_file()
    assert "Verdict" in (out / "report.html").read_text()


def test_a_tiny_multiagent_ab_end_to_end(tmp_path: Path) -> None:
    """PPO (MLP) against MAPPO run in its three stages, two seeds, on the bundled sample:
    the same timesteps and test bars; each seed's stages chain their bundles."""
    from cappuccino.bundles.mappo import load_bundle
    from cappuccino.workflows.compare import compare

    cfg = _tiny(tmp_path, ["BTC/USDT", "ETH/USDT", "BNB/USDT"], 384, arms=["mlp", "mappo"],
                eval_points=2, mappo={"actor_hidden": [16], "critic_hidden": [16],
                                      "master": {"hidden": [16], "cap_hidden": 8}})  # fmt: skip
    rep = compare(cfg)
    runs = {(r["arm"], r["seed"]): r for r in rep["runs"]}
    assert set(runs) == {("mlp", 0), ("mlp", 1), ("mappo", 0), ("mappo", 1)}
    for seed in (0, 1):
        ma, ppo = runs[("mappo", seed)], runs[("mlp", seed)]
        assert ma["stages"] == ["symbols", "master", "joint"] and ppo["stages"] == []
        assert [h["timesteps"] for h in ma["history"]] == [h["timesteps"] for h in ppo["history"]]
        assert len(ma["returns"]) == len(ppo["returns"])
        assert len(ma["oos_curve"]) == 3  # 2 checkpoints (in the 2nd and 3rd stage) + the end
        b = load_bundle(ma["bundle"])
        assert b.manifest.stage == "joint" and b.manifest.use_master
        root = tmp_path / "ab" / "runs" / "mappo" / f"seed{seed}"
        assert [p["path"] for p in b.manifest.parents] == [
            str(root / "0_symbols" / "bundle"), str(root / "1_master" / "bundle")]  # fmt: skip
        assert ma["trainable_parameters"] < ma["parameters"]  # joint: the encoder is frozen
    assert rep["arms"]["mappo"]["sharpe"]["mean"] == pytest.approx(
        np.mean([runs[("mappo", s)]["sharpe"] for s in (0, 1)]))  # fmt: skip
    assert "| mappo |" in (tmp_path / "ab" / "compare.md").read_text()


def test_peak_memory_is_reset_and_measured() -> None:
    """Linux's high-water mark: after a reset it tracks what is allocated from then on. In
    a fresh process: this one's allocator keeps freed blocks for reuse (prepare_allocator),
    so a new block here may need no new pages at all."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from cappuccino.workflows.compare import reset_peak_rss, rss_mb\n"
        "big = np.ones(50_000_000 // 8); del big  # 50 MB touched, then unmapped\n"
        "assert reset_peak_rss()\n"
        "before = rss_mb('VmHWM')\n"
        "block = np.ones(80_000_000 // 8)  # 80 MB touched\n"
        "print(before, rss_mb('VmRSS'), rss_mb('VmHWM'))"
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    before, rss, peak = (float(x) for x in out)
    assert before < rss - 70  # the old 50 MB peak is gone, the new block counted
    assert peak - before >= 70


def test_the_transfer_arm_is_declared_and_checked(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, arms=["ft_scratch", "ft_transfer"], transfer_timeframe="1h",
               rl={"data": {"timeframe": "4h"}}, finetune_lr_scale=0.3)  # fmt: skip
    ft = arm_config(cfg, "ft_transfer", 0, tmp_path / "enc").ppo.ft
    assert ft is not None and ft.allow_timeframe_transfer and not ft.freeze
    assert ft.lr_scale == 0.3 and ft.pretrained == str(tmp_path / "enc")
    fine = arm_config(cfg, "ft_finetuned", 0, tmp_path / "enc").ppo.ft
    assert fine is not None and not fine.allow_timeframe_transfer
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="transfer_timeframe: the ft_transfer arm needs"):
        _cfg(tmp_path, arms=["ft_scratch", "ft_transfer"])
    with pytest.raises(ValidationError, match="transfer_timeframe: got 1h, the run's own"):
        _cfg(tmp_path, arms=["ft_scratch", "ft_transfer"], transfer_timeframe="1h")
    with pytest.raises(ValidationError, match="transfer_timeframe: timeframe: got '1x'"):
        _cfg(tmp_path, arms=["ft_scratch", "ft_transfer"], transfer_timeframe="1x")


def test_a_tiny_timeframe_transfer_ab_end_to_end(tmp_path: Path) -> None:
    """FT from scratch on 4h against FT fine-tuned on 4h from an encoder pretrained on the
    same period's 1h bars: the encoder is 1h, the bundles record the transfer, the run
    observes through a scaler fitted on its own 4h bars, and the pair is compared."""
    from typer.testing import CliRunner

    from cappuccino.bundles.encoder import read_encoder_meta
    from cappuccino.bundles.rl import load_bundle
    from cappuccino.cli.main import app
    from cappuccino.datasets.market import fit_scaler, load_market
    from cappuccino.training.rl.train import train_period
    from cappuccino.workflows.compare import compare

    base = _tiny(tmp_path, ["BTC/USDT", "ETH/USDT"], 256)
    store = base.rl.data.store
    res = CliRunner().invoke(app, ["data", "resample", "--store", str(store), "--from", "1h",
                                   "--to", "4h", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    raw = base.model_dump(mode="json")
    raw["rl"]["data"]["timeframe"] = "4h"
    raw["rl"]["split"] = {
        "train_start": "2021-01-01T00:00:00Z",
        "train_end": "2021-02-20T23:00:00Z",
        "test_end": "2021-03-31T23:00:00Z",
    }
    raw["rl"]["env"]["episode_bars"] = 24
    raw |= {"arms": ["ft_scratch", "ft_transfer"], "transfer_timeframe": "1h", "eval_points": 0,
            "encoder": {"d_token": 8, "n_blocks": 1, "n_heads": 2, "d_out": 8},
            "pretrain": {"epochs": 1, "batch_size": 128}}  # fmt: skip
    cfg = CompareConfig.model_validate(raw)
    rep = compare(cfg)
    out = tmp_path / "ab"
    enc = read_encoder_meta(out / "encoder_1h")
    assert enc["timeframe"] == "1h" and enc["last_bar"] <= "2021-02-20T23:00:00+00:00"
    assert not (out / "encoder").exists()  # no same-timeframe arm: nothing else pretrained
    assert rep["transfer"]["from"] == "1h" and rep["transfer"]["to"] == "4h"
    (pair,) = rep["comparisons"]
    assert (pair["arm"], pair["baseline"]) == ("ft_transfer", "ft_scratch")
    run = next(r for r in rep["runs"] if r["arm"] == "ft_transfer")
    b = load_bundle(Path(run["bundle"]))
    prov = b.meta["pretrained_encoder"]
    assert prov["timeframe"] == "1h" and prov["timeframe_transfer"]["to"] == "4h"
    assert b.meta["config"]["ppo"]["ft"]["allow_timeframe_transfer"] is True
    data = load_market(store, "4h", ["BTC/USDT", "ETH/USDT"], "cappuccino14")
    own = fit_scaler(train_period(data, cfg.rl.split), "zscore")
    np.testing.assert_allclose(b.scaler.center, own.center)
    assert "encoder pretrained on 1h bars, fine-tuned on 4h" in (out / "compare.md").read_text()
