"""The engine tests' vocabulary (as in the reference tests): observe events, learn sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processor_image.engine import Processor

__all__ = ("Driver",)


class Driver:
    """Drives a ``Processor``: ``obs`` numbers each event's unique id, ``learn`` observes first."""

    def __init__(self, processor: Processor) -> None:
        self.p = processor
        self.n = 0

    def obs(self, *events: Sequence[str] | str, **kw: object) -> None:
        for event in events:
            self.n += 1
            strings = [event] if isinstance(event, str) else list(event)
            self.p.observe(strings, unique_id=f"u{self.n}", **kw)  # type: ignore[arg-type]

    def learn(self, *events: Sequence[str] | str) -> str:
        self.obs(*events)
        return self.p.learn()

    def predictions(self) -> list[dict[str, Any]]:
        return self.p.predictions()
