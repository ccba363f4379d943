"""The symbol map between the model's symbols and the broker's."""

from __future__ import annotations

import pytest

from cappuccino.live.symbols import SymbolMap

UNIVERSE = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def test_mapped_and_unmapped_symbols_both_ways() -> None:
    m = SymbolMap.parse(UNIVERSE, ["BTC/USDT=BTC/USD,eth-usdt=ETH/USD"])
    assert [m.to_broker(s) for s in UNIVERSE] == ["BTC/USD", "ETH/USD", "SOL/USDT"]
    # Alpaca reports crypto positions without the slash: one normaliser matches them
    assert [m.to_model(b) for b in ("BTCUSD", "btc/usd", "ETH/USD", "SOLUSDT")] == [
        "BTC/USDT", "BTC/USDT", "ETH/USDT", "SOL/USDT"]  # fmt: skip
    assert m.to_model("DOGEUSD") is None  # not the session's


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["BTC/USDT"], "got 'BTC/USDT', expected MODEL=BROKER"),
        (["BTC/USDT="], "expected MODEL=BROKER"),
        (["DOGE/USDT=DOGE/USD"], "got 'DOGE/USDT', expected one of the session's symbols"),
        (["BTC/USDT=BTC/USD", "BTC/USDT=XBT/USD"], "'BTC/USDT' is mapped twice"),
        (["BTC/USDT=ETHUSDT"], r"broker symbols \['ETH/USDT', 'ETHUSDT'\] stand for more"),
    ],
)
def test_bad_maps_name_the_item(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SymbolMap.parse(UNIVERSE, items)


def test_an_unknown_model_symbol_is_an_error() -> None:
    with pytest.raises(ValueError, match="symbol: got 'ADA/USDT'"):
        SymbolMap.parse(UNIVERSE).to_broker("ADA/USDT")
