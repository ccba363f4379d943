"""The Tracker interface and the in-memory backend used by tests.

A run is opened with :meth:`Tracker.start_run` (a context manager; runs may nest, as
a study's trials will) and receives params (flat ``str -> scalar``), metrics per step
(one batched call per step), tags and artifact files. A run that raises is ended with
status ``FAILED``; nothing is swallowed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def run_name(
    phase: str, experiment_type: str, model: str, variant: str, when: datetime | None = None
) -> str:
    """Seed 004's convention: ``{phase}_{experiment_type}_{model}_{variant}_{timestamp}``."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")
    return f"{phase}_{experiment_type}_{model}_{variant}_{stamp}"


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and None become strings."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_params(v, key + "."))
        elif isinstance(v, bool | int | float | str):
            out[key] = v
        else:
            out[key] = str(v)
    return out


class RunStopped(Exception):
    """Raised through a run that is stopped on purpose (a pruned trial): the run ends
    ``KILLED``, not ``FAILED`` (as on Ctrl-C or SIGTERM)."""


class Tracker:
    """Base class: subclasses implement the ``_``-prefixed hooks."""

    @contextmanager
    def start_run(
        self, name: str, tags: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> Iterator[str]:
        """Open a run, nested inside ``parent`` (a run id, possibly from another process)
        or else inside the run open in this tracker; yields its id."""
        run_id = self._start(name, dict(tags or {}), parent)
        try:
            yield run_id
        except (RunStopped, KeyboardInterrupt, SystemExit):  # stopped, not broken
            self._end("KILLED")
            raise
        except BaseException:
            self._end("FAILED")
            raise
        self._end("FINISHED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._params(flatten_params(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._metrics({k: float(v) for k, v in metrics.items()}, step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self._artifact(Path(path), artifact_path)

    # hooks
    def _start(self, name: str, tags: dict[str, str], parent: str | None) -> str:
        raise NotImplementedError

    def _end(self, status: str) -> None:
        raise NotImplementedError

    def _params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _tags(self, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def _artifact(self, path: Path, artifact_path: str | None) -> None:
        raise NotImplementedError


@dataclass
class RecordedRun:
    run_id: str
    name: str
    parent: str | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    status: str = "RUNNING"


class InMemoryTracker(Tracker):
    """Records everything in ``self.runs`` (ordered by start)."""

    def __init__(self) -> None:
        self.runs: dict[str, RecordedRun] = {}
        self._stack: list[str] = []
        self._ids = itertools.count(1)

    def _run(self) -> RecordedRun:
        if not self._stack:
            raise RuntimeError("no open run: use `with tracker.start_run(...)`")
        return self.runs[self._stack[-1]]

    def _start(self, name: str, tags: dict[str, str], parent: str | None) -> str:
        rid = f"run{next(self._ids)}"
        parent = parent or (self._stack[-1] if self._stack else None)
        self.runs[rid] = RecordedRun(rid, name, parent, tags)
        self._stack.append(rid)
        return rid

    def _end(self, status: str) -> None:
        self.runs[self._stack.pop()].status = status

    def _params(self, params: dict[str, Any]) -> None:
        self._run().params.update(params)

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        self._run().metrics.append((step, metrics))

    def _tags(self, tags: dict[str, str]) -> None:
        self._run().tags.update(tags)

    def _artifact(self, path: Path, artifact_path: str | None) -> None:
        self._run().artifacts.append((str(path), artifact_path))
