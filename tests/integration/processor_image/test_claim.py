"""Late binding (issue 15): a pooled processor serves no session until one authenticated claim.

A warm-pool processor (``AWAIT_CLAIM=1``) is started before any session exists. Until the
manager claims it (``POST /claim`` with the pool secret, carrying the session processor's
environment) it must answer nothing but ``/health`` and the claim; after it, it must be that
session's processor, reachable only with the session processor's secret, and never claimable
again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from session_manager.processor_secrets import SECRET_HEADER, ProcessorSecrets
from tests.processes import RunningProcessor, start_processor

SECRETS = ProcessorSecrets("a-deployment-key-for-claim-tests")
POOL_ID = "pool-0123456789abcdef"
POOL = {SECRET_HEADER: SECRETS.for_processor(POOL_ID)}
SESSION_ID = "5e55"
SESSION = {SECRET_HEADER: SECRETS.for_processor(SESSION_ID)}


def _claim_env(**extra: str) -> dict[str, str]:
    return {
        "PROCESSOR_ID": SESSION_ID,
        "PROCESSOR_NAME": f"session-{SESSION_ID}",
        "KB_ID": "kb-of-5e55",
        "STORAGE": "memory",
        "RECALL_THRESHOLD": "0.3",
        "PROCESSOR_SECRET": SECRETS.for_processor(SESSION_ID),
        **extra,
    }


@pytest.fixture(name="pooled")
def fx_pooled() -> Iterator[RunningProcessor]:
    with start_processor(
        POOL_ID, AWAIT_CLAIM="1", PROCESSOR_SECRET=SECRETS.for_processor(POOL_ID)
    ) as processor:
        yield processor


def test_before_its_claim_a_pooled_processor_answers_only_health(
    pooled: RunningProcessor,
) -> None:
    health = httpx.get(f"{pooled.url}/health")
    assert health.status_code == 200
    assert health.json()["processor_id"] == POOL_ID
    for method, path in (("GET", "/stm"), ("POST", "/observe"), ("GET", "/state")):
        refused = httpx.request(method, f"{pooled.url}{path}", headers=POOL, json={})
        assert refused.status_code == 409, path
        assert refused.json()["error"]["code"] == "NOT_CLAIMED"
        assert httpx.request(method, f"{pooled.url}{path}").status_code == 401
    with (
        pytest.raises(InvalidStatus),
        connect(pooled.url.replace("http", "ws") + "/ws", additional_headers=POOL) as ws,
    ):
        ws.recv(timeout=5)
    # Without the pool secret nobody can claim it.
    stolen = httpx.post(f"{pooled.url}/claim", json={"env": _claim_env()})
    assert stolen.status_code == 401


def test_a_claim_makes_it_the_sessions_processor_once(pooled: RunningProcessor) -> None:
    claimed = httpx.post(f"{pooled.url}/claim", json={"env": _claim_env()}, headers=POOL)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json() == {
        "status": "claimed",
        "processor_id": SESSION_ID,
        "kb_id": "kb-of-5e55",
    }

    observed = httpx.post(f"{pooled.url}/observe", json={"strings": ["a"]}, headers=SESSION)
    assert observed.status_code == 200
    assert observed.json()["processor_id"] == SESSION_ID
    gene = httpx.get(f"{pooled.url}/gene/recall_threshold", headers=SESSION).json()
    assert gene["gene_value"] == 0.3
    assert httpx.get(f"{pooled.url}/health").json()["processor_id"] == SESSION_ID
    with connect(pooled.url.replace("http", "ws") + "/ws", additional_headers=SESSION) as ws:
        ws.send(json.dumps({"type": "ping", "payload": {}}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"

    # The pool secret opens nothing any more, and no second claim takes it over.
    assert httpx.get(f"{pooled.url}/stm", headers=POOL).status_code == 401
    again = httpx.post(f"{pooled.url}/claim", json={"env": _claim_env()}, headers=POOL)
    assert again.status_code == 401
    again = httpx.post(f"{pooled.url}/claim", json={"env": _claim_env()}, headers=SESSION)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ALREADY_CLAIMED"
    assert httpx.get(f"{pooled.url}/stm", headers=SESSION).json()["stm"] == [["a"]]


def test_a_claim_that_describes_no_processor_leaves_it_unclaimed(
    pooled: RunningProcessor,
) -> None:
    bad = httpx.post(
        f"{pooled.url}/claim", json={"env": _claim_env(RECALL_THRESHOLD="7")}, headers=POOL
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "CLAIM_INVALID"
    assert httpx.get(f"{pooled.url}/stm", headers=POOL).status_code == 409
    good = httpx.post(f"{pooled.url}/claim", json={"env": _claim_env()}, headers=POOL)
    assert good.status_code == 200
