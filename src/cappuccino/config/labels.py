"""Label specs: which forward-looking target to build, validated like any other config.

The computation is :mod:`cappuccino.features.labels`, the only forward-looking code.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ForwardReturnLabel(BaseModel):
    """Buy label: simple forward return over ``horizon`` bars, net of a round trip, above ``threshold``.

    ``net = (close[t+h] / close[t]) * (1 - fee)^2 - 1`` where ``fee`` is the fraction paid
    per side (0.001 = 0.1%); ``buy = net > threshold``. Columns ``label_fwd_return_<h>``
    (net simple return, fraction) and ``label_buy_<h>`` (0/1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["forward_return"] = "forward_return"
    horizon: int = Field(24, ge=1, description="bars ahead")
    threshold: float = Field(0.0, description="minimum net simple return for a buy (fraction)")
    fee: float = Field(0.0, ge=0.0, lt=1.0, description="fee per side (fraction)")

    @property
    def columns(self) -> tuple[str, ...]:
        return (f"label_fwd_return_{self.horizon}", f"label_buy_{self.horizon}")


class TripleBarrierLabel(BaseModel):
    """Triple-barrier label (Lopez de Prado): which of take-profit, stop-loss or time comes first.

    From the close of bar t, the upper barrier is ``close * (1 + take_profit)`` and the
    lower ``close * (1 - stop_loss)``; bars t+1..t+max_holding are scanned with their
    high and low. +1 if the upper is touched first, -1 if the lower is, 0 if neither by
    the end. When one bar touches both, the outcome is -1 (conservative: intrabar order
    is unknown). Columns ``label_tb_<h>`` (-1/0/1), ``label_tb_bars_<h>`` (bars to the
    touch, ``h`` if none) and ``label_tb_return_<h>`` (simple return at exit: the barrier
    level, or close[t+h] / close[t] - 1 at the time limit).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["triple_barrier"] = "triple_barrier"
    take_profit: float = Field(0.02, gt=0.0, description="upper barrier, fraction above entry")
    stop_loss: float = Field(
        0.02, gt=0.0, lt=1.0, description="lower barrier, fraction below entry"
    )
    max_holding: int = Field(24, ge=1, description="vertical barrier in bars")

    @property
    def columns(self) -> tuple[str, ...]:
        h = self.max_holding
        return (f"label_tb_{h}", f"label_tb_bars_{h}", f"label_tb_return_{h}")


LabelSpec = Annotated[ForwardReturnLabel | TripleBarrierLabel, Field(discriminator="kind")]


def parse_label(text: str) -> ForwardReturnLabel | TripleBarrierLabel:
    """Parse ``forward:horizon=24,threshold=0.01,fee=0.001`` or ``triple:take_profit=0.02,...``.

    Short keys: ``h`` (horizon / max_holding), ``tp``, ``sl``.
    """
    kind, _, rest = text.partition(":")
    aliases = {
        "forward": "forward_return",
        "fwd": "forward_return",
        "forward_return": "forward_return",
        "triple": "triple_barrier",
        "tb": "triple_barrier",
        "triple_barrier": "triple_barrier",
    }
    if kind.strip() not in aliases:
        raise ValueError(f"label: got {text!r}, expected forward:... or triple:...")
    k = aliases[kind.strip()]
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label: got {item!r} in {text!r}, expected key=value")
        key = key.strip()
        key = {
            "h": "horizon" if k == "forward_return" else "max_holding",
            "tp": "take_profit",
            "sl": "stop_loss",
        }.get(key, key)
        params[key] = value.strip()
    if k == "forward_return":
        return ForwardReturnLabel.model_validate(params)
    return TripleBarrierLabel.model_validate(params)
