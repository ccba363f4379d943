"""Thread counts are a setting: ``--threads`` / ``CAPPUCCINO_THREADS``, checked, applied."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from cappuccino.cli.main import app
from cappuccino.utils.threads import THREADS_ENV, available_cores, prepare_openmp, resolve_threads


def test_resolve_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_threads(3) == 3 and resolve_threads(" 2 ") == 2
    assert resolve_threads("auto") == len(os.sched_getaffinity(0)) == available_cores()
    monkeypatch.setenv(THREADS_ENV, "1")
    assert resolve_threads(None) == 1
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match="CAPPUCCINO_THREADS: got 'many', expected 'auto' or an"):
        resolve_threads(None)
    with pytest.raises(ValueError, match=r"--threads: got 0, expected"):
        resolve_threads(0)


def test_the_wait_policy_defaults_to_passive_and_a_set_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert prepare_openmp() is False  # torch is loaded in this process: too late here
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prepare_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc thresholds: Linux only")
def test_the_allocator_keeps_large_blocks_for_reuse() -> None:
    """By default glibc unmaps a freed 200 MB block (resident size falls by it); after
    prepare_allocator it keeps it for the next allocation; a user's setting wins."""
    code = (
        "import os, sys\n"
        "from cappuccino.utils.threads import prepare_allocator\n"
        "ok = prepare_allocator() if sys.argv[1] == '1' else None\n"
        "import numpy as np\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024\n"
        "a = np.ones(200 * 2**20 // 8); before = rss(); del a\n"
        "print(ok, round(before - rss()))"
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}

    def run(flag: str, **extra: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", code, flag], env={**env, **extra},
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        return out[0], int(out[1])

    ok, freed = run("0")
    assert freed >= 190  # unmapped on free
    ok, freed = run("1")
    assert ok == "True" and freed <= 5  # kept
    ok, _ = run("1", MALLOC_MMAP_THRESHOLD_="131072")
    assert ok == "False"


def test_the_command_sets_its_threads_before_torch_loads() -> None:
    code = (
        "import sys; sys.argv = ['cappuccino', '--threads', '1', 'models', 'list']\n"
        "from cappuccino.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "import os, torch; print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout  # fmt: skip
    assert out.strip().splitlines()[-1] == "PASSIVE 1"


def test_threads_on_the_command_line() -> None:
    before = torch.get_num_threads()
    runner = CliRunner()
    try:
        ok = runner.invoke(app, ["--threads", "1", "models", "list"])
        assert ok.exit_code == 0 and torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
        os.environ.pop("OMP_NUM_THREADS", None)
        os.environ.pop("MKL_NUM_THREADS", None)
    bad = runner.invoke(app, ["--threads", "x", "models", "list"])
    assert bad.exit_code == 2 and "got 'x', expected 'auto' or an integer >= 1" in bad.output


def test_a_block_runs_on_its_threads_and_restores_the_count() -> None:
    from cappuccino.utils.threads import torch_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), torch_threads(1):
            raise RuntimeError("restored on the way out too")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_ppo_picks_one_thread_for_small_work_and_all_for_large() -> None:
    from cappuccino.config.rl import PPOSettings
    from cappuccino.training.rl.ppo import SMALL_UPDATE_MACS, build_policy, ppo_threads
    from tests.training.rl.helpers import make_env, random_market

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        env = make_env(random_market(t=200, a=3), n_envs=4)
        small = build_policy(env, PPOSettings(hidden_sizes=[64, 64]), None)
        big = build_policy(env, PPOSettings(hidden_sizes=[2048, 2048]), None)
        n_small = sum(p.numel() for p in small.parameters())
        assert 64 * n_small < SMALL_UPDATE_MACS
        assert ppo_threads(small, 64) == (1, 1)
        assert ppo_threads(big, 1024) == (1, 2)  # 2048-wide x 1024 rows: both threads
        # the env steps small batches on one thread and leaves the count as it was
        assert env._step_threads == 1
        env.reset(seed=0)
        env.step(torch.zeros(4, 3))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
