"""The market runtime's observation layout, action decoding and bar simulator, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cappuccino.market import (
    BarSimulator,
    MarketRules,
    ObservationSpec,
    Portfolio,
    Segments,
    decode_actions,
)

D = torch.float64


def test_observation_layout_by_hand() -> None:
    spec = ObservationSpec(n_assets=2, n_features=3, lookback=2)
    assert (spec.head_dim, spec.n_slots, spec.dim) == (3, 6, 1 + 2 + 3 * 2 * 2)
    # feature rows: bar t holds 100 * t + 10 * asset + feature
    rows = torch.tensor(
        [[100.0 * t + 10 * a + f for a in range(2) for f in range(3)] for t in range(4)]
    )
    head = spec.head(
        cash=torch.tensor([40.0], dtype=D),
        units=torch.tensor([[1.0, 2.0]], dtype=D),
        close=torch.tensor([[20.0, 10.0]], dtype=D),
        equity=torch.tensor([80.0], dtype=D),
    )
    assert head.dtype == torch.float32 and head.tolist() == [[0.5, 0.25, 0.25]]
    obs = spec.build(rows, torch.tensor([2]), head)
    expected_window = [200 + 10 * a + f for a in range(2) for f in range(3)] + [
        100 + 10 * a + f for a in range(2) for f in range(3)
    ]  # latest bar first, each bar (asset, feature) row-major
    assert obs.tolist() == [[0.5, 0.25, 0.25, *expected_window]]
    port, window = spec.split(obs)
    assert port.tolist() == [[0.5, 0.25, 0.25]]
    assert window[0, 1, 1, 2].item() == 112.0  # lag 1 = bar 1, asset 1, feature 2
    assert spec.slot_series(obs)[0, 5].tolist() == [212.0, 112.0]  # slot (1, 2), lags 0, 1
    out = torch.empty((1, spec.dim))
    assert spec.build(rows, torch.tensor([2]), head, out=out) is out
    with pytest.raises(ValueError, match="observation: 5 floats, expected 15"):
        spec.split(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"ObservationSpec.lookback: got 0"):
        ObservationSpec(n_assets=1, n_features=1, lookback=0)


def test_action_decoding_by_hand() -> None:
    cash = torch.tensor([100.0, 0.0], dtype=D)
    units = torch.tensor([[0.0, 0.0], [2.0, 5.0]], dtype=D)
    price = torch.tensor([[10.0, 20.0], [10.0, 20.0]], dtype=D)  # equities 100, 120
    # target_weights: a = -1 -> 0; a = 0 -> 0.5; x = (1, 1) sums to 2 -> (0.5, 0.5)
    a = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    got = decode_actions(a, mode="target_weights", cash=cash, units=units, price=price,
                         trade_fraction=0.5)  # fmt: skip
    assert got.tolist() == [[0.0, 50.0 / 20], [60.0 / 10, 60.0 / 20]]
    # trade: units + a * fraction * equity / price; out-of-range actions are clamped
    a = torch.tensor([[2.0, 0.0], [-0.5, 0.25]])
    got = decode_actions(a, mode="trade", cash=cash, units=units, price=price, trade_fraction=0.5)
    assert got.tolist() == [[0.5 * 100 / 10, 0.0], [2.0 - 0.25 * 120 / 10, 5.0 + 0.125 * 120 / 20]]
    with pytest.raises(ValueError, match="action mode: got 'x'"):
        decode_actions(a, mode="x", cash=cash, units=units, price=price, trade_fraction=0.5)


def test_simulator_fills_at_the_next_open_and_values_at_its_close() -> None:
    open_ = torch.tensor([[10.0], [11.0], [12.0]], dtype=D)
    close = torch.tensor([[10.5], [11.5], [12.5]], dtype=D)
    rules = MarketRules(initial_cash=110.0, buy_fee_rate=0.0, sell_fee_rate=0.0,
                        min_order_notional=0.0)  # fmt: skip
    sim = BarSimulator(open_, close, rules=rules)
    pf = sim.new_portfolios(1)
    t = torch.tensor([0])
    assert sim.fill_price(t).tolist() == [[11.0]]
    fill, equity = sim.step(pf, torch.tensor([[10.0]], dtype=D), t)
    assert fill.price.tolist() == [[11.0]] and fill.portfolio.cash.tolist() == [0.0]
    assert equity.tolist() == [10.0 * 11.5]  # valued at close[t + 1]
    with pytest.raises(ValueError, match="expected two arrays of one shape"):
        BarSimulator(open_, close[:2], rules=rules)


def test_segments_keep_episodes_inside_their_range() -> None:
    seg = Segments.build([(0, 10), (20, 40)], n_bars=40, lookback=3, horizon=5)
    # starts in [s + lookback - 1, e - 1 - horizon]: [2, 4] and [22, 34]
    assert seg.lo.tolist() == [2, 22] and seg.n.tolist() == [3, 13]
    u = torch.tensor([[0.0, 0.0], [0.0, 0.999], [0.99, 0.0], [0.99, 0.999]], dtype=D)
    start, last = seg.starts(u)
    assert start.tolist() == [2, 4, 22, 34] and last.tolist() == [9, 9, 39, 39]
    with pytest.raises(ValueError, match=r"segment \(0, 5\) has 5 bars, expected >= "):
        Segments.build([(0, 5)], n_bars=40, lookback=3, horizon=5)
    pf = Portfolio.new(2, 1, MarketRules())
    assert pf.cash.tolist() == [1_000_000.0, 1_000_000.0]


def test_rates_are_fractions_written_either_way_and_fees_over_five_percent_are_refused() -> None:
    import pydantic

    from cappuccino.market.rules import parse_rate

    assert parse_rate("0.1%") == pytest.approx(0.001) and parse_rate("0.001") == 0.001
    assert parse_rate(0.00075) == 0.00075
    r = MarketRules(buy_fee_rate="0.075%", sell_fee_rate=0.002, stop_loss_rate="5%")  # type: ignore[arg-type]
    assert (r.buy_fee_rate, r.sell_fee_rate, r.stop_loss_rate) == pytest.approx(
        (0.00075, 0.002, 0.05)
    )
    assert (
        r.with_fee("0.2%").buy_fee_rate == r.with_fee(0.002).sell_fee_rate == pytest.approx(0.002)
    )
    with pytest.raises(
        pydantic.ValidationError,
        match=r"buy_fee_rate\n.*less than or equal to 0.05.*input_value=0.1",
    ):
        MarketRules(buy_fee_rate=0.1)  # 0.1 meaning "0.1 %" is a 10 % fee: refused
    with pytest.raises(pydantic.ValidationError, match="input_value=0.07"):
        MarketRules().with_fee("7%")
    with pytest.raises(
        ValueError, match=r"fee: got 'cheap', expected a rate such as 0.001 or 0.1%"
    ):
        MarketRules().with_fee("cheap")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        MarketRules(buy_fee_pct=0.001)  # type: ignore[call-arg]  # the old name is gone


def test_the_fee_option_reads_a_rate_or_a_percentage(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cappuccino.cli.main import app

    runner = CliRunner()
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["data", "sample", "--store", store, "--json"]).exit_code == 0
    args = ["backtest", "--store", store, "--policy", "equal_weight:24", "--symbols", "BTC/USDT",
            "--symbols", "ETH/USDT", "--start", "2021-06-01", "--json"]  # fmt: skip
    pct = runner.invoke(app, [*args, "--fee", "0.1%", "--out", str(tmp_path / "a")])
    frac = runner.invoke(app, [*args, "--fee", "0.001", "--out", str(tmp_path / "b")])
    assert pct.exit_code == frac.exit_code == 0, pct.output
    a, b = json.loads(pct.stdout), json.loads(frac.stdout)
    assert (
        a["market"]["buy_fee_rate"] == pytest.approx(0.001) and a["fees_paid"] == b["fees_paid"] > 0
    )
    bad = runner.invoke(app, [*args, "--fee", "7%"])
    assert bad.exit_code == 2
    assert "--fee: got '7%', expected a rate in [0, 0.05] such as 0.001 or 0.1%" in bad.output
