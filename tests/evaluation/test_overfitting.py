"""PBO and the deflated Sharpe ratio on cases with known answers."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from cappuccino.evaluation import overfitting as of


def test_deflated_sharpe_reproduces_the_papers_example() -> None:
    # Bailey & López de Prado (2014), section 4: best of 100 trials, annualised SR 2.5 over
    # 5 years of daily bars (T = 1250), annualised V[SR] 0.5, skew -3, kurtosis 10:
    # SR0 = 0.1132 per day and DSR = 0.9004.
    sr, var = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = of.expected_max_sharpe(100, var)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = of.probabilistic_sharpe(sr, 1250, skew=-3, kurtosis=10, sr_benchmark=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # normal returns (skew 0, kurtosis 3): PSR(0) = Phi(SR sqrt(T - 1) / sqrt(1 + SR^2 / 2))
    expected = NormalDist().cdf(0.05 * 20 / math.sqrt(1 + 0.05**2 / 2))
    assert of.probabilistic_sharpe(0.05, 401) == pytest.approx(expected, rel=1e-12)
    assert of.expected_max_sharpe(1, 0.3) == 0.0


def test_expected_max_sharpe_against_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    mc = rng.standard_normal((20_000, 100)).max(axis=1).mean()  # E[max of 100 N(0,1)] = 2.508
    assert of.expected_max_sharpe(100, 1.0) == pytest.approx(mc, rel=0.02)


def _best_of(rng: np.random.Generator, edge: float) -> dict[str, float]:
    r = rng.standard_normal((500, 20)) * 0.01
    r[:, 3] += edge * 0.01  # strategy 3 has a true per-bar Sharpe of `edge`
    srs = of.per_period_sharpe(r)
    best = r[:, int(np.argmax(srs))]
    return of.deflated_sharpe(best, n_trials=20, var_trial_sharpe=float(srs.var(ddof=1)))


def test_deflated_sharpe_rejects_lucky_winners_and_keeps_real_skill() -> None:
    # 400 studies of 20 skill-less strategies: the winner's PSR passes 0.95 in a large
    # share of them (selection bias), its DSR (almost) never: a false-positive rate <= 5 %.
    rng = np.random.default_rng(1)
    noise = [_best_of(rng, 0.0) for _ in range(400)]
    assert np.mean([d["probabilistic_sharpe"] > 0.95 for d in noise]) > 0.4
    assert np.mean([d["deflated_sharpe"] > 0.95 for d in noise]) <= 0.05
    # one strategy with a true per-bar Sharpe of 0.3 (4.7 annualised on daily bars): kept,
    # although it also inflates the trials' Sharpe variance that sets the bar
    skilled = [_best_of(rng, 0.3) for _ in range(100)]
    assert np.mean([d["deflated_sharpe"] > 0.95 for d in skilled]) >= 0.9


def test_pbo_by_hand_on_two_blocks() -> None:
    # block 0: A = [1, 3] (SR sqrt 2), B = [0, 1] (SR sqrt 1/2); block 1 the other way round.
    # Each half's winner is the other half's loser: rank 1 of 2, w = 1/3, logit ln(1/2).
    m = np.array([[1.0, 0.0], [3.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
    out = of.pbo_cscv(m, n_blocks=2)
    assert out["pbo"] == 1.0 and out["n_splits"] == 2
    assert out["logits"] == pytest.approx([math.log(0.5)] * 2)
    assert out["is_sharpe"] == pytest.approx([math.sqrt(2)] * 2)
    assert out["oos_sharpe"] == pytest.approx([math.sqrt(0.5)] * 2)
    # three trials: block 0's winner C ranks 2nd of 3 out of sample (w = 1/2, logit 0: a
    # winner no better than the median counts as overfit); block 1's winner B ranks last.
    m3 = np.array([[1.0, 0, 1], [3, 1, 2], [0, 2, 1], [1, 4, 3]])
    out3 = of.pbo_cscv(m3, n_blocks=2)
    assert out3["logits"] == pytest.approx([0.0, math.log(1 / 3)])
    assert out3["pbo"] == 1.0


def test_pbo_is_near_one_half_for_noise_and_near_zero_for_real_skill() -> None:
    rng = np.random.default_rng(2)
    noise = [of.pbo_cscv(rng.standard_normal((1200, 30)), n_blocks=10)["pbo"] for _ in range(8)]
    assert 0.35 <= float(np.mean(noise)) <= 0.65
    r = rng.standard_normal((1200, 30))
    r[:, 7] += 0.3  # one strategy with a real edge of 0.3 standard deviations per bar
    skilled = of.pbo_cscv(r, n_blocks=10)
    assert skilled["pbo"] == 0.0 and skilled["prob_oos_loss"] == 0.0
    with pytest.raises(ValueError, match="even number"):
        of.pbo_cscv(r, n_blocks=5)
