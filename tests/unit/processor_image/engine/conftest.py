"""Engine fixtures: a processor on the memory store, and the reference tests' ``Driver``."""

from collections.abc import Callable

import pytest

from processor_image.engine import Genes, Processor
from processor_image.storage.memory import MemoryKnowledgeBase
from tests.support.driver import Driver


@pytest.fixture(name="make_processor")
def fx_make_processor() -> Callable[..., Processor]:
    def make(**genes: object) -> Processor:
        return Processor(processor_id="p1", kb=MemoryKnowledgeBase(), genes=Genes(**genes))  # type: ignore[arg-type]

    return make


@pytest.fixture(name="processor")
def fx_processor(make_processor: Callable[..., Processor]) -> Processor:
    return make_processor()


@pytest.fixture(name="kato")
def fx_kato(processor: Processor) -> Driver:
    return Driver(processor)
