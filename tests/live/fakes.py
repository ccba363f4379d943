"""What the loopback broker fakes share: the queue of injected faults."""

from __future__ import annotations


class FaultQueue:
    """``faults``: ``(route, kind)`` pairs consumed in order; route ``"any"`` matches all."""

    faults: list[tuple[str, str]]

    def _fault(self, route: str) -> str | None:
        for i, (r, kind) in enumerate(self.faults):
            if r in (route, "any"):
                del self.faults[i]
                return kind
        return None
