"""Every market rule against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cappuccino.market import MarketRules, Portfolio, rebalance

D = torch.float64


def _pf(
    cash: list[float], units: list[list[float]], entry: list[list[float]] | None = None
) -> Portfolio:
    u = torch.tensor(units, dtype=D)
    return Portfolio(
        cash=torch.tensor(cash, dtype=D),
        units=u,
        entry_price=torch.tensor(entry, dtype=D) if entry else torch.zeros_like(u),
    )


def _t(x: list[list[float]] | list[float]) -> torch.Tensor:
    return torch.tensor(x, dtype=D)


def _rules(**kw: float | None) -> MarketRules:
    base: dict[str, float | None] = {
        "initial_cash": 1000.0,
        "buy_fee_rate": 0.0,
        "sell_fee_rate": 0.0,
        "min_order_notional": 0.0,
    }
    base.update(kw)
    return MarketRules(**base)  # type: ignore[arg-type]


def test_buy_pays_fee_on_notional() -> None:
    # 5 units at 100 = 500 notional; 0.1 % fee = 0.5; cash 1000 - 500.5.
    f = rebalance(_pf([1000], [[0]]), _t([[5]]), _t([100]), _rules(buy_fee_rate=0.001), _t([0]))
    assert f.portfolio.cash.tolist() == pytest.approx([499.5])
    assert f.portfolio.units.tolist() == [[5.0]]
    assert f.fees.tolist() == pytest.approx([0.5])
    assert f.traded_notional.tolist() == pytest.approx([500.0])


def test_sell_pays_fee_on_proceeds() -> None:
    # sell 4 of 10 at 50 = 200 proceeds, 0.2 % fee = 0.4.
    f = rebalance(_pf([0], [[10]]), _t([[6]]), _t([50]), _rules(sell_fee_rate=0.002), _t([0]))
    assert f.portfolio.cash.tolist() == pytest.approx([199.6])
    assert f.portfolio.units.tolist() == [[6.0]]
    assert f.fees.tolist() == pytest.approx([0.4])


def test_sells_fund_buys_in_the_same_fill() -> None:
    # No cash; sell 10 A at 10 -> 100 - 0.1 fee = 99.9 cash. Buy 5 B at 20 would cost
    # 100 * 1.001 = 100.1 > 99.9, so the buy is scaled by 99.9 / 100.1.
    rules = _rules(buy_fee_rate=0.001, sell_fee_rate=0.001)
    f = rebalance(_pf([0], [[10, 0]]), _t([[0, 5]]), _t([10, 20]), rules, _t([0, 0]))
    bought = 5 * 99.9 / 100.1
    assert f.portfolio.units.tolist()[0] == pytest.approx([0.0, bought])
    assert f.portfolio.cash.tolist()[0] == pytest.approx(0.0, abs=1e-9)
    assert f.fees.tolist() == pytest.approx([0.1 + bought * 20 * 0.001])
    assert f.asset_fees.tolist()[0] == pytest.approx([0.1, bought * 20 * 0.001])


def test_short_cash_scales_every_buy_pro_rata() -> None:
    # 100 cash, buys of 25 and 75 notional plus a 1 % fee cost 101: each buy gets 100 / 101
    # of its size, whichever asset comes first.
    rules = _rules(buy_fee_rate=0.01)
    for targets in ([[0.25, 0.75]], [[0.75, 0.25]]):
        f = rebalance(_pf([100], [[0, 0]]), _t(targets), _t([100, 100]), rules, _t([0, 0]))
        expected = [t * 100 / 101 for t in targets[0]]
        assert f.portfolio.units.tolist()[0] == pytest.approx(expected)
        assert f.portfolio.cash.tolist() == pytest.approx([0.0], abs=1e-12)


def test_buy_below_minimum_after_pro_rata_scaling_is_dropped() -> None:
    # 20 cash; buys of 10 (A, minimum 5) and 10 (B, minimum 10) plus 1 % fee cost 20.2, so
    # both scale by 20 / 20.2 to 9.90: A stays, B falls below its minimum and is dropped.
    rules = _rules(buy_fee_rate=0.01)
    f = rebalance(_pf([20], [[0, 0]]), _t([[1, 1]]), _t([10, 10]), rules, _t([5, 10]))
    assert f.portfolio.units.tolist()[0] == pytest.approx([20 / 20.2, 0.0])
    assert f.portfolio.cash.tolist() == pytest.approx([20 - 10 * 20 / 20.2 * 1.01])


def test_slippage_moves_both_fill_prices_against_the_trader() -> None:
    rules = _rules(slippage_rate=0.01)
    f = rebalance(_pf([1000], [[0]]), _t([[2]]), _t([100]), rules, _t([0]))
    assert f.portfolio.cash.tolist() == pytest.approx([1000 - 2 * 101])
    assert f.portfolio.entry_price.tolist()[0] == pytest.approx([101.0])
    assert f.price.tolist() == [[101.0]]
    f = rebalance(_pf([0], [[2]]), _t([[0]]), _t([100]), rules, _t([0]))
    assert f.portfolio.cash.tolist() == pytest.approx([2 * 99])
    assert f.price.tolist() == [[99.0]]
    # no trade: the reference price
    f = rebalance(_pf([0], [[2]]), _t([[2]]), _t([100]), rules, _t([0]))
    assert f.price.tolist() == [[100.0]] and f.asset_fees.tolist() == [[0.0]]


def test_max_weight_and_gross_exposure_caps() -> None:
    # Equity 1000; targets 800 and 200 of value. max_weight 0.5 -> 500 and 200;
    # gross cap 0.6 -> both scaled by 600 / 700.
    f = rebalance(
        _pf([1000], [[0, 0]]), _t([[8, 2]]), _t([100, 100]), _rules(max_weight=0.5), _t([0, 0])
    )
    assert f.portfolio.units.tolist()[0] == pytest.approx([5.0, 2.0])
    rules = _rules(max_weight=0.5, max_gross_exposure=0.6)
    f = rebalance(_pf([1000], [[0, 0]]), _t([[8, 2]]), _t([100, 100]), rules, _t([0, 0]))
    assert f.portfolio.units.tolist()[0] == pytest.approx([5 * 6 / 7, 2 * 6 / 7])


def test_stop_loss_closes_positions_at_or_below_the_threshold() -> None:
    # Entry 100, stop 10 %: a price of 90 triggers (the target asks to keep the units), 91 does not.
    rules = _rules(stop_loss_rate=0.1)
    pf = _pf([0, 0], [[1], [1]], [[100], [100]])
    f = rebalance(pf, _t([[1], [1]]), _t([[90], [91]]), rules, _t([0]))
    assert f.portfolio.units.tolist() == [[0.0], [1.0]]
    assert f.stopped.tolist() == [[True], [False]]
    assert f.portfolio.cash.tolist() == pytest.approx([90.0, 0.0])
    assert f.portfolio.entry_price.tolist() == [[0.0], [100.0]]


def test_entry_price_is_the_average_buy_price() -> None:
    f = rebalance(_pf([1000], [[1]], [[100]]), _t([[2]]), _t([120]), _rules(), _t([0]))
    assert f.portfolio.entry_price.tolist()[0] == pytest.approx([110.0])


def test_negative_targets_mean_flat_long_only() -> None:
    f = rebalance(_pf([0], [[3]]), _t([[-5]]), _t([10]), _rules(), _t([0]))
    assert f.portfolio.units.tolist() == [[0.0]]
    assert f.portfolio.cash.tolist() == pytest.approx([30.0])


def test_rows_are_independent() -> None:
    one = rebalance(_pf([100], [[1, 2]]), _t([[3, 0]]), _t([10, 20]), _rules(), _t([0, 0]))
    both = rebalance(
        _pf([100, 5], [[1, 2], [0, 0]]), _t([[3, 0], [9, 9]]), _t([10, 20]), _rules(), _t([0, 0])
    )
    assert both.portfolio.units[0].tolist() == one.portfolio.units[0].tolist()
    assert both.portfolio.cash[0].item() == one.portfolio.cash[0].item()


def test_rules_reject_bad_values_naming_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"buy_fee_rate\n.*greater than or equal to 0.*input_value=-0\.1"
    ):
        MarketRules(buy_fee_rate=-0.1)
    with pytest.raises(ValueError, match=r"max_gross_exposure\n.*input_value=2"):
        MarketRules(max_gross_exposure=2)
    with pytest.raises(ValueError, match=r"min_order_notional\n.*got -1.0, expected a number >= 0"):
        MarketRules(min_order_notional=(1.0, -1.0))
    with pytest.raises(ValueError, match="one per asset"):
        MarketRules(min_order_notional=(1.0, 2.0)).min_notional_per_asset(3)


@settings(max_examples=200, deadline=None)
@given(
    cash=st.floats(0, 1e6),
    units=st.lists(st.floats(0, 100), min_size=3, max_size=3),
    target=st.lists(st.floats(-50, 500), min_size=3, max_size=3),
    price=st.lists(st.floats(0.01, 1e4), min_size=3, max_size=3),
    fee=st.floats(0, 0.01),
    slip=st.floats(0, 0.01),
    min_notional=st.floats(0, 100),
)
def test_no_leverage_and_costs_account_for_every_unit_of_equity(
    cash: float,
    units: list[float],
    target: list[float],
    price: list[float],
    fee: float,
    slip: float,
    min_notional: float,
) -> None:
    rules = _rules(buy_fee_rate=fee, sell_fee_rate=fee, slippage_rate=slip)
    pf = _pf([cash], [units])
    p = _t(price)
    f = rebalance(pf, _t([target]), p, rules, torch.full((3,), min_notional, dtype=D))
    after = f.portfolio
    assert after.cash.item() >= 0.0
    assert (after.units >= 0).all()
    # Equity falls by exactly the fees plus the slippage paid on the traded units.
    slip_cost = ((f.bought + f.sold) * p * slip).sum()
    lost = pf.equity(p) - after.equity(p)
    assert lost.item() == pytest.approx((f.fees.sum() + slip_cost).item(), rel=1e-9, abs=1e-6)
    # Nothing below the minimum was traded.
    traded = (f.bought + f.sold) * p
    assert ((traded == 0) | (traded >= min_notional * (1 - 1e-12))).all()
