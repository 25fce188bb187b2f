"""``ProcessorClient`` against a real processor process: its calls, and each failure mapped once."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from litestar import Litestar

from session_manager.errors import ProcessorTimeout, ProcessorUnavailable
from session_manager.processor_client import ProcessorClient, snapshot_json
from tests.processes import RunningProcessor, free_port, start_processor
from tests.support.net import serve


@pytest.fixture(name="processor", scope="module")
def fx_processor() -> Iterator[RunningProcessor]:
    with start_processor("client-test") as running:
        yield running


@pytest.fixture(name="client")
async def fx_client() -> AsyncIterator[ProcessorClient]:
    client = ProcessorClient(read_timeout_s=5.0, connect_timeout_s=1.0)
    yield client
    await client.aclose()


async def test_health_names_the_processor(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    assert await client.health(processor.url) == "client-test"
    assert await client.is_ready(processor.url, "client-test")
    assert not await client.is_ready(processor.url, "someone-else")


async def test_state_read_back_into_the_processor_is_the_same_state(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    await client.exchange("POST", processor.url, "/observe", json={"strings": ["hello"]})
    taken = await client.get_state(processor.url)
    await client.exchange("POST", processor.url, "/clear-all")
    state = snapshot_json(taken.snapshot)  # stored as the processor sent it: zstd
    # The processor names the snapshot's position, so the manager need not open it.
    assert taken.seq == msgspec.json.decode(state)["seq"] == 1
    await client.put_state(processor.url, taken.snapshot, seq=taken.seq)
    again = await client.get_state(processor.url)
    assert snapshot_json(again.snapshot) == state  # the seq number too
    assert again.seq == taken.seq
    await client.exchange("POST", processor.url, "/clear-all")


async def test_live_genes_are_read_by_name(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    update = {"genes": {"max_predictions": 7}}
    await client.exchange("POST", processor.url, "/genes/update", json=update)
    genes = await client.genes(processor.url, ["max_predictions", "recall_threshold"])
    assert genes == {"max_predictions": 7, "recall_threshold": 0.1}


async def test_connection_refused_is_processor_unavailable(client: ProcessorClient) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProcessorUnavailable) as caught:
        await client.get_state(nobody)
    assert caught.value.status == 502
    assert caught.value.details["url"] == f"{nobody}/state"
    assert not await client.is_ready(nobody, "client-test")


async def test_a_non_2xx_answer_is_processor_unavailable_with_its_status(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    with pytest.raises(ProcessorUnavailable) as caught:
        await client.genes(processor.url, ["no_such_gene"])
    assert caught.value.details["status"] == 404
    assert "no_such_gene" in caught.value.details["body"]


async def test_exchange_passes_any_status_back(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    reply = await client.exchange("GET", processor.url, "/gene/no_such_gene")
    assert reply.status == 404
    assert reply.json()["status"] == 404


async def test_a_processor_that_does_not_answer_in_time_is_processor_timeout(
    client: ProcessorClient,
) -> None:
    with start_processor("stopped") as stopped:
        os.kill(stopped.process.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            with pytest.raises(ProcessorTimeout) as caught:
                await client.health(stopped.url, timeout_s=0.3)
            assert caught.value.status == 504
        finally:
            os.kill(stopped.process.pid, signal.SIGCONT)


async def test_fence_and_unfence_refuse_then_serve_again(
    client: ProcessorClient, processor: RunningProcessor
) -> None:
    assert await client.fence(processor.url)
    fenced = await client.exchange("POST", processor.url, "/observe", json={"strings": ["x"]})
    assert fenced.status == 503
    await client.unfence(processor.url)
    served = await client.exchange("POST", processor.url, "/observe", json={"strings": ["x"]})
    assert served.status == 200
    await client.exchange("POST", processor.url, "/clear-all")


async def test_a_processor_without_a_fence_is_reported_not_fenced(client: ProcessorClient) -> None:
    """An image older than the fence answers 404: hibernation goes on without the barrier."""
    app = Litestar(route_handlers=[])
    async with serve(app) as url:
        assert not await client.fence(url)
