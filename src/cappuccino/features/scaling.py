"""Feature scalers fitted on an explicit training window only, stored as JSON.

A scaler is fitted on an array shaped ``(time, ...)`` and keeps one centre and one
scale per trailing position (e.g. per asset and feature for ``(T, A, F)``), so
statistics never mix the past and the future of different columns. ``fit`` takes the
training rows only; the caller states the bounds, nothing else is seen.

Kinds:
- ``zscore``: centre = mean, scale = std (ddof 0).
- ``robust``: centre = median, scale = interquartile range (q75 - q25).
- ``minmax``: centre = min, scale = max - min (maps the training range to [0, 1]).
A scale below ``1e-12`` (a constant column) is replaced by 1 so the column maps to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

ScalerKind = Literal["zscore", "robust", "minmax"]
SCALER_KINDS: tuple[ScalerKind, ...] = ("zscore", "robust", "minmax")


_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class Scaler:
    """Per-column affine scaling ``(x - center) / scale``; build with :meth:`fit`."""

    kind: ScalerKind
    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, x: npt.ArrayLike, kind: ScalerKind = "zscore") -> Scaler:
        """Fit on training rows ``x`` shaped ``(time, ...)``; NaN rows are ignored per column."""
        if kind not in SCALER_KINDS:
            raise ValueError(f"Scaler.kind: got {kind!r}, expected one of {SCALER_KINDS}")
        a = np.asarray(x, dtype=np.float64)
        if a.ndim < 1 or a.shape[0] < 2:
            raise ValueError(f"Scaler.fit: need at least 2 training rows, got shape {a.shape}")
        if np.isinf(a).any():
            raise ValueError("Scaler.fit: training data holds infinite values")
        if kind == "zscore":
            center, scale = np.nanmean(a, axis=0), np.nanstd(a, axis=0)
        elif kind == "robust":
            q25, center, q75 = np.nanpercentile(a, [25, 50, 75], axis=0)
            scale = q75 - q25
        else:
            center = np.nanmin(a, axis=0)
            scale = np.nanmax(a, axis=0) - center
        if np.isnan(center).any():
            raise ValueError("Scaler.fit: a column has no finite training value")
        scale = np.where(scale < 1e-12, 1.0, scale)
        return cls(kind=kind, center=np.asarray(center), scale=np.asarray(scale))

    def transform(
        self, x: npt.ArrayLike, rows: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.float32]:
        """Scaled float32 copy of ``x`` (same trailing shape as the training data), or of its
        ``rows`` only. Computed in blocks of rows, so the float64 temporaries stay small
        (the values are those of one whole-array expression)."""
        a = np.asarray(x, dtype=np.float64)
        if a.shape[1:] != self.center.shape:
            raise ValueError(
                f"Scaler.transform: got trailing shape {a.shape[1:]}, fitted on {self.center.shape}"
            )
        n = a.shape[0] if rows is None else rows.size
        out = np.empty((n, *a.shape[1:]), dtype=np.float32)
        for i in range(0, n, _BLOCK_ROWS):
            j = min(n, i + _BLOCK_ROWS)
            block = a[i:j] if rows is None else a[rows[i:j]]
            out[i:j] = (block - self.center) / self.scale
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shape": list(self.center.shape),
            "center": self.center.ravel().tolist(),
            "scale": self.scale.ravel().tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        """The scaler :meth:`to_dict` wrote; ``ValueError`` naming the field when the kind is
        unknown, the sizes disagree with the shape, or a centre or scale is not a finite
        number (a null in a bundle's scaler would make every prediction NaN)."""
        kind = data.get("kind")
        if kind not in SCALER_KINDS:
            raise ValueError(f"scaler.kind: got {kind!r}, expected one of {SCALER_KINDS}")
        try:
            shape = tuple(int(s) for s in data["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"scaler.shape: got {data.get('shape')!r}, expected a list of sizes"
            ) from exc
        size = int(np.prod(shape))
        out: dict[str, npt.NDArray[np.float64]] = {}
        for name in ("center", "scale"):
            values = data.get(name)
            if not isinstance(values, list) or len(values) != size:
                n = len(values) if isinstance(values, list) else values
                raise ValueError(
                    f"scaler.{name}: got {n!r} values, expected {size} for shape {shape}"
                )
            bad = [i for i, v in enumerate(values) if not _finite_number(v)]
            if bad:
                raise ValueError(
                    f"scaler.{name}[{bad[0]}]: got {values[bad[0]]!r}, expected a finite number"
                )
            out[name] = np.asarray(values, dtype=np.float64).reshape(shape)
        if (out["scale"] <= 0).any():
            i = int(np.argmax(out["scale"].ravel() <= 0))
            raise ValueError(f"scaler.scale[{i}]: got {out['scale'].ravel()[i]!r}, expected > 0")
        return cls(kind=kind, center=out["center"], scale=out["scale"])


def _finite_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))
