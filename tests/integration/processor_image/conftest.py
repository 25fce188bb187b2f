"""The processor service as a real process, shared per module.

* ``processor`` (module scope): one running service (``tests.processes.start_processor``).
* ``kato`` (per test): resets it the way the reference fixtures do (gene defaults, then
  clear-all) and gives an ``httpx.Client``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.processes import RunningProcessor, start_processor

# The reference fixtures reset these four (spec §5.4); the rest are reset too, so a test that
# changes one cannot leak it into the next test on the shared process.
DEFAULT_GENES = {
    "max_pattern_length": 0,
    "recall_threshold": 0.1,
    "persistence": 5,
    "smoothness": 3,
    "max_predictions": 100,
    "always_update_frequencies": False,
    "SORT": True,
}


@pytest.fixture(name="processor", scope="module")
def fx_processor() -> Iterator[RunningProcessor]:
    with start_processor() as running:
        yield running


@pytest.fixture(name="kato")
def fx_kato(processor: RunningProcessor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=processor.url, timeout=10) as client:
        assert client.post("/genes/update", json={"genes": DEFAULT_GENES}).status_code == 200
        assert client.post("/clear-all").json()["message"] == "all-cleared"
        yield client
