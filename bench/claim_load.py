"""What a claim costs when the knowledge base is in MongoDB (issue 15): loading its patterns.

A pooled processor opens its knowledge base at its claim; a MongoDB one reads every pattern
then (to rebuild the engine's index), so the claim, and with it the create or restore that
waits for it, grows with the knowledge base. For each size in ``--sizes`` a knowledge base is
filled with that many patterns (five events of two symbols, through the store itself), then
``--claims`` pooled processors (process backend, fork server) are claimed for it, one after
another, each claim timed (``POST /claim`` until it answers). SecantusDB in memory unless
``MONGO_URL`` names a server. The cost per pattern is the p50 over the first size's (``0``:
an empty knowledge base), divided by the patterns.
Run: ``python bench/claim_load.py [--sizes 0,200,1000,5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import percentiles, table, write
from pymongo import MongoClient

from processor_image.engine.naming import pattern_hash
from processor_image.storage.mongodb import MongoKnowledgeBase, database_name
from session_manager.backends.process import ProcessBackend
from session_manager.pool.claims import ClaimClient
from session_manager.pool.warm import pool_spec
from session_manager.processor_secrets import SECRET_ENV, ProcessorSecrets
from session_manager.settings import Settings
from tests.mongo_server import mongo_server

VOCABULARY = [f"sym{i:04d}" for i in range(1000)]


def fill(url: str, kb_id: str, patterns: int) -> None:
    """``patterns`` distinct patterns of five two-symbol events, learned through the store."""
    rng = random.Random(patterns)
    kb = MongoKnowledgeBase(url, kb_id)
    try:
        for _ in range(patterns):
            pattern = [sorted(rng.sample(VOCABULARY, 2)) for _ in range(5)]
            kb.learn(pattern_hash(pattern), pattern, {"joy": 0.5}, 5)
    finally:
        kb.close()


async def claims_for(
    backend: ProcessBackend, settings: Settings, url: str, kb_id: str, claims: int
) -> list[float]:
    secrets = ProcessorSecrets.from_key(settings.processor_secret_key)
    assert secrets is not None
    client = ClaimClient(secrets, timeout_s=300)
    took: list[float] = []
    try:
        for _ in range(claims):
            member = pool_spec(settings, secrets)
            handle = await backend.start(member)
            session_id = uuid.uuid4().hex
            env = {
                "PROCESSOR_ID": session_id,
                "KB_ID": kb_id,
                "STORAGE": "mongodb",
                "MONGO_URL": url,
                SECRET_ENV: secrets.for_processor(session_id),
            }
            began = time.perf_counter()
            await client.claim(handle.endpoint, str(member.session_id), env)
            took.append(time.perf_counter() - began)
            await backend.stop(handle)
    finally:
        await client.aclose()
    return took


async def run(sizes: list[int], claims: int) -> list[dict[str, Any]]:
    manager_id = f"bench-claim-{uuid.uuid4().hex[:8]}"
    settings = Settings(manager_id=manager_id, processor_secret_key=uuid.uuid4().hex * 2)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kato-claim-bench-") as workdir, mongo_server() as url:
        backend = ProcessBackend(
            manager_id=manager_id,
            log_dir=Path(workdir),
            start_timeout_s=60,
            stop_timeout_s=5,
            spawn="fork",
            body_bytes=settings.max_proxy_body_bytes,
        )
        client: MongoClient[dict[str, Any]] = MongoClient(url)
        try:
            empty: float | None = None
            for size in sizes:
                kb_id = f"claim_{uuid.uuid4().hex[:12]}"
                await asyncio.to_thread(fill, url, kb_id, size)
                took = await claims_for(backend, settings, url, kb_id, claims)
                stats = percentiles(took)
                empty = stats["p50_ms"] if empty is None else empty
                per = (stats["p50_ms"] - empty) / size * 1000 if size else None
                rows.append({"patterns": size, **stats, "us_per_pattern_over_first": per})
                client.drop_database(database_name(kb_id))
        finally:
            for handle in await backend.list_owned():
                await backend.stop(handle)
            await backend.close()
            client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0,200,1000,5000")
    parser.add_argument("--claims", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()
    rows = asyncio.run(run(sizes, args.claims))
    server = "MONGO_URL" if os.environ.get("MONGO_URL") else "SecantusDB"
    print(table(f"claim of a pooled processor, MongoDB store ({server}), load {load[0]:.1f}", rows))
    path = write("claim_load", {"server": server, "load_average": load, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
