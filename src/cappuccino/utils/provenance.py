"""Where a result came from: library versions and the git commit of the working tree."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("cappuccino", "torch", "numpy", "polars", "ta-lib", "gymnasium", "pydantic")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path | None = None) -> str | None:
    """HEAD commit of the repository holding ``path`` (default: the cwd), None outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
