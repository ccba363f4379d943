"""The model's symbols and the broker's: one map, checked at the edge.

A bundle trades ``BTC/USDT``; a broker may quote it as ``BTC/USD`` (Alpaca's crypto
orders) and report positions as ``BTCUSD``. ``--symbol-map BTC/USDT=BTC/USD`` says which
broker symbol stands for a model symbol; unmapped symbols are the same on both sides.
Broker symbols are matched by :func:`~cappuccino.data.schema.symbol_key` (separators and
case ignored), so ``BTC/USD``, ``BTCUSD`` and ``btc-usd`` are one symbol: the one
normaliser, shared with the data layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cappuccino.data.schema import normalize_symbol, symbol_key


@dataclass(frozen=True)
class SymbolMap:
    """Model symbol <-> broker symbol for one session's universe."""

    to_broker_map: dict[str, str]

    @classmethod
    def parse(cls, model_symbols: Sequence[str], items: Iterable[str] = ()) -> SymbolMap:
        """``items`` as given to ``--symbol-map`` (``MODEL=BROKER``, comma lists or repeated),
        over the session's ``model_symbols``. Errors name the item and what was expected."""
        universe = [normalize_symbol(s) for s in model_symbols]
        mapping = {s: s for s in universe}
        seen: set[str] = set()
        for raw in (p.strip() for item in items for p in item.split(",")):
            if not raw:
                continue
            model, sep, broker = raw.partition("=")
            model, broker = normalize_symbol(model), normalize_symbol(broker)
            if not sep or not model or not broker:
                raise ValueError(f"--symbol-map: got {raw!r}, expected MODEL=BROKER such as "
                                 "BTC/USDT=BTC/USD")  # fmt: skip
            if model not in mapping:
                raise ValueError(f"--symbol-map: got {model!r}, expected one of the session's "
                                 f"symbols {universe}")  # fmt: skip
            if model in seen:
                raise ValueError(f"--symbol-map: {model!r} is mapped twice")
            seen.add(model)
            mapping[model] = broker
        keys = [symbol_key(b) for b in mapping.values()]
        clash = sorted({b for b, k in zip(mapping.values(), keys, strict=True)
                        if keys.count(k) > 1})  # fmt: skip
        if clash:
            raise ValueError(f"--symbol-map: broker symbols {clash} stand for more than one "
                             "model symbol")  # fmt: skip
        return cls(to_broker_map=mapping)

    def to_broker(self, model_symbol: str) -> str:
        try:
            return self.to_broker_map[normalize_symbol(model_symbol)]
        except KeyError:
            raise ValueError(f"symbol: got {model_symbol!r}, expected one of "
                             f"{list(self.to_broker_map)}") from None  # fmt: skip

    def to_model(self, broker_symbol: str) -> str | None:
        """The model symbol a broker reports ``broker_symbol`` for (any spelling), or None
        for a symbol outside the session (a position the session did not open)."""
        key = symbol_key(broker_symbol)
        for model, broker in self.to_broker_map.items():
            if symbol_key(broker) == key:
                return model
        return None
