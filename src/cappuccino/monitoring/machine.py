"""The machine: CPU, memory, the disk holding the output directory, and NVIDIA GPUs through
NVML when a driver is present (``nvidia-ml-py``). Units: percentages 0-100, bytes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def machine_status(output_dir: Path | None = None) -> dict[str, Any]:
    """CPU (count, load average, busy share since the last call), memory, the disk of
    ``output_dir`` (the working directory by default) and GPUs."""
    import psutil

    vm = psutil.virtual_memory()
    where = Path(output_dir or ".")
    while not where.exists() and where != where.parent:
        where = where.parent
    du = shutil.disk_usage(where)
    return {
        "cpu": {"count": os.cpu_count(), "percent": psutil.cpu_percent(interval=None),
                "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
        "disk": {"path": str(where.resolve()), "total": du.total, "free": du.free,
                 "percent": 100.0 * (du.total - du.free) / du.total if du.total else None},
        "gpus": gpu_status(),
        "units": "percent: 0-100; memory and disk in bytes; cpu percent over the interval "
                 "since the previous reading",
    }  # fmt: skip


def gpu_status() -> list[dict[str, Any]] | dict[str, str]:
    """Per GPU: name, utilisation, memory used and total; ``{"none": why}`` without NVML."""
    try:
        import pynvml
    except ImportError:
        return {"none": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"none": f"no NVIDIA driver ({exc})"}
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "utilisation": float(util.gpu), "memory_used": int(mem.used),
                        "memory_total": int(mem.total)})  # fmt: skip
        return out
    finally:
        pynvml.nvmlShutdown()
