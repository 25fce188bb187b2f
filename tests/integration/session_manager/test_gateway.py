"""Gateway mode: three real processors registered by file and environment, sticky routes by id,
health-gated (503 at once when one is down, back by itself), per-processor metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import RunningProcessor, start_processor
from tests.support.manager import Manager, SettingsFactory, StartManager
from tests.support.timing import wait_for


@pytest.fixture(name="processors")
def fx_processors() -> Iterator[dict[str, RunningProcessor]]:
    with contextlib.ExitStack() as stack:
        yield {pid: stack.enter_context(start_processor(pid)) for pid in ("alpha", "beta", "gamma")}


@pytest.fixture(name="gateway")
async def fx_gateway(
    processors: dict[str, RunningProcessor],
    start_manager: StartManager,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> Manager:
    listing = tmp_path / "processors.yaml"
    listing.write_text(
        "processors:\n"
        f"  - {{id: alpha, name: Alpha, url: '{processors['alpha'].url}'}}\n"
        f"  - {{id: beta, name: Beta, url: '{processors['beta'].url}'}}\n"
    )
    settings = make_settings(
        processors_file=str(listing),
        kato_processors=json.dumps({"gamma": processors["gamma"].url}),
        gateway_health_interval_s=0.3,
    )
    return await start_manager(settings)


async def call(
    manager: Manager, method: str, path: str, body: Any = None, expect: int = 200
) -> Any:
    reply = await manager.client.request(method, path, json=body)
    assert reply.status_code == expect, reply.text
    return reply.json()


async def test_gateway_routes_drive_each_processor_by_id(gateway: Manager) -> None:
    base = "/processors/alpha"
    observed = await call(gateway, "POST", f"{base}/observe", {"strings": ["hello"]})
    assert observed["message"] == {"status": "observed", "auto_learned_pattern": None}
    assert observed["id"] == "alpha"
    assert observed["interval"] == 1
    await call(gateway, "POST", f"{base}/observe", {"data": {"strings": ["world"]}})
    memory = await call(gateway, "GET", f"{base}/working-memory")
    assert memory["stm"] == memory["message"] == [["hello"], ["world"]]
    learned = await call(gateway, "POST", f"{base}/learn")
    assert learned["pattern_name"].startswith("PTRN|")
    assert learned["message"] == learned["pattern_name"]
    for word in ("hello", "world"):
        await call(
            gateway, "POST", f"{base}/observe", {"strings": [word], "unique_id": f"id-{word}"}
        )
    predictions = await call(gateway, "POST", f"{base}/predictions", {"unique_id": "id-world"})
    assert predictions["predictions"] == predictions["message"]
    assert predictions["predictions"][0]["name"] == learned["pattern_name"]
    assert (await call(gateway, "GET", f"{base}/predictions"))["message"] == predictions["message"]
    assert (await call(gateway, "POST", f"{base}/working-memory/clear"))["message"] == "stm-cleared"
    assert (await call(gateway, "GET", f"{base}/short-term-memory"))["message"] == []

    changed = await call(
        gateway, "POST", f"{base}/genes/change", {"data": {"recall_threshold": 0.25}}
    )
    assert changed == {"id": "alpha", "status": "okay", "message": "updated-genes"}
    await call(
        gateway, "POST", f"{base}/genes/change", {"gene_name": "max_predictions", "gene_value": 9}
    )
    gene = await call(gateway, "GET", f"{base}/gene/recall_threshold")
    assert gene["gene_value"] == gene["message"] == 0.25
    raised = await call(gateway, "POST", f"{base}/increment-recall-threshold", {"increment": 0.5})
    assert raised["recall_threshold"] == raised["message"] == 0.75
    assert (await call(gateway, "GET", f"{base}/gene/max_predictions"))["message"] == 9

    ping = await call(gateway, "GET", f"{base}/ping")
    assert ping["status"] == "okay"
    assert ping["processor"] == "KatoProcessor"
    assert ping["interval"] == 4
    status = await call(gateway, "GET", f"{base}/status")
    assert status["message"]["id"] == "alpha"
    assert (
        await call(gateway, "GET", f"{base}/pattern/{learned['pattern_name'].replace('|', '%7C')}")
    )["message"]["frequency"] == 1
    await call(gateway, "POST", f"{base}/observe", {"strings": ["seen"]})
    assert (await call(gateway, "GET", f"{base}/percept-data"))["message"]["strings"] == ["seen"]
    assert "short_term_memory" in (await call(gateway, "GET", f"{base}/cognition-data"))["message"]
    assert (await call(gateway, "POST", f"{base}/clear-all-memory"))["message"] == "all-cleared"
    # The legacy root routes, also under /processors for clients that only move the base URL.
    for root in ("", "/processors"):
        assert await call(gateway, "GET", f"{root}/kato-api/ping") == {"status": "okay"}
        connected = await call(gateway, "GET", f"{root}/connect")
        assert connected["message"] == "connected"
        nodes = connected["genome"]["elements"]["nodes"]
        assert sorted(node["data"]["id"] for node in nodes) == ["alpha", "beta", "gamma"]
        # Clients of the older gateway read every node's name, id and classifier.
        for node in nodes:
            assert {"id", "name", "classifier"} <= set(node["data"])
            assert node["data"]["classifier"] == "CVC"

    # Sticky and isolated: beta and gamma (registered by environment) saw none of it.
    for other in ("beta", "gamma"):
        assert (await call(gateway, "GET", f"/processors/{other}/stm"))["message"] == []
    # The session routes reach the same processor.
    await call(gateway, "POST", "/session/gamma/observe", {"strings": ["via-session"]})
    assert (await call(gateway, "GET", "/processors/gamma/stm"))["message"] == [["via-session"]]


async def test_bad_gateway_input_is_a_clear_4xx(gateway: Manager) -> None:
    for method, path, body, status in [
        ("GET", "/processors/nobody/stm", None, 404),
        ("POST", "/processors/alpha/increment-recall-threshold", {"increment": "up"}, 422),
        ("POST", "/processors/alpha/genes/change", {"data": 5}, 422),
        ("POST", "/processors/alpha/predictions", {"unique_id": 7}, 422),
        ("POST", "/processors/alpha/genes/change", {"data": {"quiescence": 1}}, 400),
    ]:
        reply = await gateway.client.request(method, path, json=body)
        assert reply.status_code == status, (path, reply.text)
        assert set(reply.json()) == {"error", "status"}
    reply = await gateway.client.post(
        "/processors/alpha/observe", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "INVALID_JSON"


async def test_an_unhealthy_processor_answers_503_at_once_and_comes_back(
    gateway: Manager, processors: dict[str, RunningProcessor]
) -> None:
    beta = processors["beta"]
    port = int(beta.url.rsplit(":", 1)[1])
    beta.process.terminate()
    beta.process.wait(10)

    async def beta_down() -> bool:
        return (await gateway.client.get("/processors/beta/stm")).status_code == 503

    assert await wait_for(beta_down, timeout_s=3)
    began = time.monotonic()
    reply = await gateway.client.get("/processors/beta/stm")
    assert time.monotonic() - began < 0.5
    error = reply.json()["error"]
    assert error["code"] == "PROCESSOR_UNAVAILABLE"
    assert error["details"]["processor_id"] == "beta"
    assert sorted(error["details"]["healthy"]) == ["alpha", "gamma"]
    assert (await gateway.client.get("/session/beta/stm")).status_code == 503
    assert (await gateway.client.get("/processors/alpha/stm")).status_code == 200
    listed = await gateway.client.get("/admin/processors", headers=gateway.admin)
    assert {p["id"]: p["healthy"] for p in listed.json()} == {
        "alpha": True,
        "beta": False,
        "gamma": True,
    }

    with start_processor("beta", port=port):

        async def beta_up() -> bool:
            return (await gateway.client.get("/processors/beta/stm")).status_code == 200

        assert await wait_for(beta_up, timeout_s=5)
        await asyncio.sleep(0)


async def test_per_processor_metrics(gateway: Manager) -> None:
    for _ in range(3):
        await call(gateway, "GET", "/processors/alpha/stm")
    await call(gateway, "GET", "/processors/gamma/stm")
    text = (await gateway.client.get("/metrics")).text
    assert (
        'kato_gateway_requests_total{processor_id="alpha",status="200"} 6.0' in text
    )  # stm + status each
    assert 'kato_gateway_request_seconds_count{processor_id="gamma"}' in text
    assert "beta" not in [
        line
        for line in text.splitlines()
        if "kato_gateway_requests_total{" in line and '"beta"' in line
    ]


async def test_static_backend_refuses_to_create_sessions(
    processors: dict[str, RunningProcessor],
    start_manager: StartManager,
    make_settings: SettingsFactory,
) -> None:
    manager = await start_manager(
        make_settings(
            backend="static", kato_processors=json.dumps({"alpha": processors["alpha"].url})
        )
    )
    reply = await manager.client.post(
        "/session/create", json={"user_id": "alice"}, headers=manager.creator
    )
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "BACKEND_UNAVAILABLE"
    assert (await manager.client.get("/processors/alpha/stm")).status_code == 200
