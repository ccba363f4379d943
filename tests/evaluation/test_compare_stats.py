"""A/B statistics against SciPy (the reference) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from cappuccino.evaluation import compare as c


@given(t=st.floats(-50, 50), df=st.floats(0.5, 200))
@settings(max_examples=200, deadline=None)
def test_t_cdf_matches_scipy(t: float, df: float) -> None:
    assert c.t_cdf(t, df) == pytest.approx(sps.t.cdf(t, df), abs=1e-10)


@pytest.mark.parametrize(("q", "df"), [(0.975, 1), (0.975, 4), (0.995, 9), (0.025, 30), (0.6, 2.5)])
def test_t_ppf_matches_scipy(q: float, df: float) -> None:
    assert c.t_ppf(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-9)


def test_tests_and_interval_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1, 5), rng.normal(0, 1, 5)
    p = c.paired_t_test(a, b)
    ref = sps.ttest_rel(a, b)
    assert p["t"] == pytest.approx(ref.statistic) and p["p"] == pytest.approx(ref.pvalue)
    x, y = np.array([1.0, 2.0, 4.0, 7.0]), np.array([0.5, 0.1, 0.3, 0.2, 0.9])
    w = c.welch_t_test(x, y)
    ref_w = sps.ttest_ind(x, y, equal_var=False)
    assert w["t"] == pytest.approx(ref_w.statistic) and w["p"] == pytest.approx(ref_w.pvalue)
    ci = c.mean_ci(a)
    lo, hi = sps.t.interval(0.95, 4, loc=a.mean(), scale=sps.sem(a))
    assert (ci["low"], ci["high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_holm_hand_case() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06
    assert c.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert c.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_block_bootstrap_rejects_a_real_mean_only() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, 1000)
    assert c.block_bootstrap_p(noise + 0.3, block=10)["p"] < 0.01
    # under the null the p-value is not small in most draws (about uniform)
    ps = [c.block_bootstrap_p(rng.normal(0, 1, 300), block=10, n_resamples=400, seed=i)["p"]
          for i in range(40)]  # fmt: skip
    assert 0.2 < float(np.mean(np.array(ps) < 0.5)) < 0.8
    assert np.mean(np.array(ps) < 0.05) <= 0.15
    a = c.block_bootstrap_p(noise, seed=3)
    assert a == c.block_bootstrap_p(noise, seed=3)  # seeded


def test_steps_to_reach_uses_a_trailing_mean_of_finite_values() -> None:
    t = [1, 2, 3, 4, 5]
    v = [float("nan"), 0.0, 1.0, 2.0, 2.0]
    # trailing mean (window 2) over finite values: 0, 0.5, 1.5, 2.0
    assert c.steps_to_reach(t, v, 1.5, window=2) == 4
    assert c.steps_to_reach(t, v, 5.0, window=2) is None
    assert c.trailing_mean(v, 3) == pytest.approx(5 / 3)


def test_verdict_says_no_difference_unless_both_tests_agree() -> None:
    base = {"diff": 0.4, "p": 0.001, "p_adjusted": 0.003}
    assert "significantly better" in c.verdict("ft", "mlp", {**base, "bootstrap_p_adjusted": 0.01},
                                               0.05)  # fmt: skip
    assert "no significant difference" in c.verdict(
        "ft", "mlp", {**base, "bootstrap_p_adjusted": 0.2}, 0.05
    )
    assert "significantly worse" in c.verdict(
        "ft", "mlp", {**base, "diff": -0.4, "bootstrap_p_adjusted": 0.01}, 0.05
    )
