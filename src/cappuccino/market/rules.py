"""Market rules as one frozen, validated value: fees, slippage, minimum order, risk limits.

Names carry units: a ``*_rate`` is a fraction (``0.001`` = 0.1 %) and may be written as
either (``0.001`` or ``"0.1%"``, in YAML, ``--set`` or :func:`parse_rate`); notionals are in
the quote currency (USDT for the sample). The RL env, the backtester and the paper broker
read the same :class:`MarketRules`, and run configs embed it as their ``market`` section.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_FEE_RATE = 0.05
"""The highest fee rate accepted (5 %): a larger one is almost surely a percentage typed as
a fraction (``0.1`` meaning 0.1 %)."""


def parse_rate(value: Any, *, name: str = "rate") -> float:
    """``0.001``, ``"0.001"`` or ``"0.1%"`` -> ``0.001``; ``ValueError`` naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: got {value!r}, expected a rate such as 0.001 or 0.1%")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return float(text[:-1]) / 100.0
            return float(text)
        except ValueError:
            pass
    raise ValueError(f"{name}: got {value!r}, expected a rate such as 0.001 or 0.1%")


Rate = Annotated[float, BeforeValidator(lambda v: parse_rate(v))]
"""A fraction, accepted as ``0.001`` or ``"0.1%"``."""


class MarketRules(BaseModel):
    """Long-only spot trading rules for a batch of portfolios (the one market semantics).

    Validation raises naming the field and the value read; a fee above
    :data:`MAX_FEE_RATE` is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_cash: float = Field(1_000_000.0, gt=0, description="starting cash, quote currency")
    buy_fee_rate: Rate = Field(0.001, ge=0, le=MAX_FEE_RATE, description="fee on buy notional")
    sell_fee_rate: Rate = Field(0.001, ge=0, le=MAX_FEE_RATE, description="fee on sell proceeds")
    slippage_rate: Rate = Field(
        0.0, ge=0, le=0.5,
        description="buys fill at price * (1 + rate), sells at price * (1 - rate)",
    )  # fmt: skip
    min_order_notional: float | tuple[float, ...] = Field(
        10.0,
        description="smallest order placed, quote currency: one value for every asset or one "
        "per asset (in symbol order)",
    )
    max_weight: Rate = Field(1.0, ge=0, le=1, description="cap on one asset's share of equity")
    max_gross_exposure: Rate = Field(
        1.0, ge=0, le=1, description="cap on the invested share of equity (no leverage)"
    )
    stop_loss_rate: Rate | None = Field(
        None, gt=0, le=1,
        description="sell a position whose price falls this fraction below its average entry",
    )  # fmt: skip

    @field_validator("initial_cash")
    @classmethod
    def _finite_cash(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"got {v!r}, expected a positive number")
        return v

    @field_validator("min_order_notional")
    @classmethod
    def _minimums(cls, v: float | tuple[float, ...]) -> float | tuple[float, ...]:
        for m in v if isinstance(v, tuple) else (v,):
            if not (math.isfinite(m) and m >= 0):
                raise ValueError(f"got {m!r}, expected a number >= 0")
        return v

    def min_notional_per_asset(self, n_assets: int) -> list[float]:
        """Minimum order notional for each of ``n_assets`` assets, in symbol order."""
        m = self.min_order_notional
        if isinstance(m, tuple):
            if len(m) != n_assets:
                raise ValueError(
                    f"MarketRules.min_order_notional: got {len(m)} values, expected one per "
                    f"asset ({n_assets})"
                )
            return list(m)
        return [float(m)] * n_assets

    def with_fee(self, fee: Any) -> MarketRules:
        """These rules with ``fee`` (a rate, ``0.001`` or ``"0.1%"``) on buys and sells,
        validated like any other value."""
        rate = parse_rate(fee, name="fee")
        return MarketRules.model_validate(
            {**self.model_dump(), "buy_fee_rate": rate, "sell_fee_rate": rate}
        )
