"""Metrics on hand-computed series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cappuccino.metrics import returns as m

EQ = [100.0, 110.0, 99.0, 108.9, 130.68]  # returns +10 %, -10 %, +10 %, +20 %


def test_returns() -> None:
    assert m.simple_returns(EQ).tolist() == pytest.approx([0.1, -0.1, 0.1, 0.2])
    assert m.log_returns(EQ).tolist() == pytest.approx(
        [math.log(1.1), math.log(0.9), math.log(1.1), math.log(1.2)]
    )
    assert m.total_return(EQ) == pytest.approx(0.3068)


def test_sharpe_on_simple_returns_with_sample_std() -> None:
    # mean 0.075, sample std sqrt(((0.025)^2*2 + 0.175^2 + 0.125^2) / 3) = sqrt(0.0475/3)
    sd = math.sqrt(0.0475 / 3)
    assert m.sharpe_ratio(m.simple_returns(EQ), 8760) == pytest.approx(0.075 / sd * math.sqrt(8760))
    assert m.sharpe_ratio([0.01, 0.01, 0.01], 8760) == 0.0  # flat: defined as 0


def test_sharpe_is_scale_free_unlike_dollar_differences() -> None:
    # The same percentage path from 100 or from 1,000,000 has the same Sharpe.
    big = [x * 10_000 for x in EQ]
    assert m.sharpe_ratio(m.simple_returns(big), 252) == pytest.approx(
        m.sharpe_ratio(m.simple_returns(EQ), 252)
    )


def test_sortino_uses_downside_deviation_over_all_bars() -> None:
    # downside: only -0.1 -> sqrt(0.01 / 4) = 0.05
    assert m.sortino_ratio([0.1, -0.1, 0.1, 0.2], 4) == pytest.approx(0.075 / 0.05 * 2)


def test_drawdown_and_calmar() -> None:
    assert m.drawdown(EQ).tolist() == pytest.approx([0, 0, -0.1, -0.01, 0])
    assert m.max_drawdown(EQ) == pytest.approx(-0.1)
    # 4 bars at 4 bars a year is one year: CAGR = total return
    assert m.cagr(EQ, 4) == pytest.approx(0.3068)
    assert m.cagr(EQ, 2) == pytest.approx(math.sqrt(1.3068) - 1)
    assert m.calmar_ratio(EQ, 4) == pytest.approx(3.068)
    assert m.calmar_ratio([1.0, 2.0, 3.0], 4) == 0.0


def test_volatility_turnover_exposure_hit_rate() -> None:
    assert m.annualised_volatility([0.1, -0.1], 100) == pytest.approx(
        np.std([0.1, -0.1], ddof=1) * 10
    )
    # bars trade 50 and 0 on equity 100 and 200 at their starts: mean 0.25 per bar, 8 bars/yr
    assert m.annualised_turnover([50.0, 0.0], [100.0, 200.0, 200.0], 8) == pytest.approx(2.0)
    assert m.exposure([[0.5, 0.25], [0.0, 0.0]]) == pytest.approx(0.375)
    assert m.hit_rate([0.1, 0.0, -0.2, 0.3]) == pytest.approx(2 / 3)


def test_summary_keys_and_errors() -> None:
    s = m.summarize(EQ, periods_per_year=8760, traded_notional=[1, 2, 3, 4], fees=[0.5, 0.5])
    assert s["n_bars"] == 4 and s["fees_paid"] == 1.0 and s["periods_per_year"] == 8760
    with pytest.raises(ValueError, match="one per bar"):
        m.annualised_turnover([1.0], EQ, 1)
    with pytest.raises(ValueError, match="must be > 0"):
        m.simple_returns([1.0, 0.0])
