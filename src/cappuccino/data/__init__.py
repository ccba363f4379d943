"""Market data: canonical OHLCV schema, readers, validation, Parquet store, alignment.

The canonical bar table (polars) has one row per (symbol, timestamp):

============  =========================  ===============================================
column        dtype                      meaning
============  =========================  ===============================================
timestamp     Datetime(ms, UTC)          bar open time; the bar covers [t, t + timeframe)
symbol        String                     ``BASE/QUOTE`` (ccxt unified form), e.g. BTC/USDT
open..close   Float64                    prices in quote currency
volume        Float64                    traded volume in base units
quote_volume  Float64 (nullable)         traded volume in quote units
trades        Int64 (nullable)           number of trades
filled        Boolean                    True for a bar inserted by a gap fill (not traded)
============  =========================  ===============================================
"""

from cappuccino.data.errors import DataError
from cappuccino.data.schema import CANONICAL_SCHEMA, Timeframe

__all__ = ["CANONICAL_SCHEMA", "DataError", "Timeframe"]
