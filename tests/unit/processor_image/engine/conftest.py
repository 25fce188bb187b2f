from collections.abc import Callable, Sequence
from typing import Any

import pytest

from processor_image.engine import Genes, Processor
from processor_image.storage.memory import MemoryKnowledgeBase

Events = Sequence[Sequence[str]]


@pytest.fixture(name="make_processor")
def fx_make_processor() -> Callable[..., Processor]:
    def make(**genes: object) -> Processor:
        return Processor(processor_id="p1", kb=MemoryKnowledgeBase(), genes=Genes(**genes))  # type: ignore[arg-type]

    return make


@pytest.fixture(name="processor")
def fx_processor(make_processor: Callable[..., Processor]) -> Processor:
    return make_processor()


class Driver:
    """The reference tests' vocabulary: observe events, learn sequences."""

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


@pytest.fixture(name="kato")
def fx_kato(processor: Processor) -> Driver:
    return Driver(processor)
