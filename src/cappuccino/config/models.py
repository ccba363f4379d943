"""Run configs: one pydantic model per workflow, every field documented, defaults embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cappuccino.config.labels import ForwardReturnLabel, LabelSpec, TripleBarrierLabel
from cappuccino.market.timeframe import Timeframe

FEATURE_SET_NAMES: tuple[str, ...] = ("cappuccino14", "price_action14", "nn23")
"""The registered feature sets (:mod:`cappuccino.features.sets` registers exactly these)."""


def parse_feature_set_name(v: str) -> tuple[str, tuple[Timeframe, ...]]:
    """``"cappuccino14+4h+1d"`` -> ``("cappuccino14", (4h, 1d))``: a registered set, then the
    longer timeframes whose last closed bars it also carries, each longer than the one before
    (:mod:`cappuccino.features.sets`). ``ValueError`` saying what was expected."""
    base, *rest = v.split("+")
    if base not in FEATURE_SET_NAMES:
        raise ValueError(
            f"got {v!r}, expected one of {sorted(FEATURE_SET_NAMES)}, optionally followed by "
            "longer timeframes such as '+4h+1d'"
        )
    tfs: list[Timeframe] = []
    for part in rest:
        try:
            tf = Timeframe.parse(part)
        except ValueError:
            raise ValueError(
                f"got {v!r}: {part!r} is not a timeframe, expected <n><m|h|d|w> such as '4h'"
            ) from None
        if tfs and tf <= tfs[-1]:
            raise ValueError(
                f"got {v!r}: timeframes must grow from left to right, {part} follows "
                f"{tfs[-1].label}"
            )
        if tf.label != part:
            raise ValueError(f"got {v!r}: spell {part!r} as {tf.label!r}")
        tfs.append(tf)
    return base, tuple(tfs)


def _known_feature_set(v: str) -> str:
    parse_feature_set_name(v)
    return v


FeatureSetName = Annotated[str, AfterValidator(_known_feature_set)]
"""A registered feature set's name, optionally with longer timeframes (``nn23+4h+1d``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Model):
    """Where bars live and how imports treat defects."""

    store: Path = Field(Path("store"), description="Parquet store folder (relative to output_dir)")
    timeframe: str = Field("1h", description="bar interval, ccxt notation")
    symbols: list[str] | None = Field(None, description="universe; None = every stored symbol")
    on_gap: Literal["fill", "keep", "error"] = Field("keep", description="gap policy at import")
    on_bad_ohlc: Literal["error", "drop"] = Field(
        "error", description="impossible bars (price <= 0, high < low, ...): error or drop"
    )
    on_interval_mismatch: Literal["error", "keep"] = Field(
        "error", description="steps that are not the timeframe: error or keep (as gaps)"
    )
    max_fill_bars: int = Field(24, ge=0, description="on_gap fill: longer gaps stay gaps")
    on_malformed: Literal["error", "skip"] = Field("error", description="malformed row policy")

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str) -> str:
        return Timeframe.parse(v).label

    @property
    def tf(self) -> Timeframe:
        return Timeframe.parse(self.timeframe)


def _default_labels() -> list[ForwardReturnLabel | TripleBarrierLabel]:
    return [
        ForwardReturnLabel(horizon=24, threshold=0.01, fee=0.001),
        TripleBarrierLabel(take_profit=0.03, stop_loss=0.02, max_holding=24),
    ]


class FeatureSettings(_Model):
    """Which feature set and labels to build."""

    feature_set: FeatureSetName = Field("cappuccino14", description="registered feature set name")
    labels: list[LabelSpec] = Field(default_factory=_default_labels, description="label specs")
    drop_warmup: bool = Field(True, description="drop rows whose features are still warming up")
    align: bool = Field(False, description="put all symbols on one common calendar first")
    audit_cuts: int = Field(6, ge=1, description="cut points for the lookahead audit")
