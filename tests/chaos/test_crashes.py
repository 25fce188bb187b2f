"""Chaos: sessions under a mixed HTTP + WebSocket workload, processors killed with SIGKILL and
sessions hibernated at random (seeded) moments. Every acknowledged request is then fed, in
order, to a plain control processor: each session's final state must equal its control's
(nothing acknowledged lost, nothing applied twice).

On ``PROCESSOR_STORAGE=mongodb`` the knowledge lives in MongoDB, outside the checkpoint, so a
recovery replays learns that MongoDB already holds: every pattern, symbol and total there must
still equal the control's, which learns into a database of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.mongo_server import mongo_server
from tests.support.chaos import control_state, final_state, kill_process_group, run_chaos
from tests.support.knowledge_bases import knowledge
from tests.support.manager import SettingsFactory, StartManager

SEED = int(os.environ.get("CHAOS_SEED", "1212"))
RUN_S = float(os.environ.get("CHAOS_RUN_S", "20"))


def assert_each_learn_counted_once(
    learned: dict[str, list[dict[str, Any]]], control: dict[str, list[dict[str, Any]]], failed: int
) -> None:
    """With ``failed`` requests that got no success answer, MongoDB may hold their learns or not.

    A request that failed after the processor wrote to MongoDB is not acknowledged, so the
    control never sees it, yet its learn stays (and the proxy never resends such a request on a
    shared knowledge base). Each failed request learns at most one pattern once: every pattern's
    frequency is its control's plus 0 to ``failed``. A replayed acknowledged learn counted twice
    would push a pattern past that, or (with no failures) break the exact equality above.
    """
    ours = {doc["name"]: doc["frequency"] for doc in learned["patterns_kb"]}
    theirs = {doc["name"]: doc["frequency"] for doc in control["patterns_kb"]}
    assert set(theirs) <= set(ours), "an acknowledged learn is missing"
    extra = {name: ours[name] - theirs.get(name, 0) for name in ours}
    assert all(more >= 0 for more in extra.values()), extra
    assert sum(extra.values()) <= failed, (extra, failed)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A state minus what observe computed from the knowledge base at the time, and the kb_id.

    A replay on MongoDB observes against a knowledge base that already holds the learns that
    came later, so the predictions it leaves differ; the knowledge itself is compared apart.
    The control learns into a database of its own, so its manifest names another kb_id.
    """
    kept = {key: value for key, value in state.items() if "prediction" not in key}
    kept["manifest"] = {k: v for k, v in state["manifest"].items() if k != "kb_id"}
    return kept


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.mark.parametrize("storage", ["memory", pytest.param("mongodb", marks=pytest.mark.mongo)])
@pytest.mark.parametrize("seed", [SEED])
async def test_no_acknowledged_write_is_lost_or_applied_twice(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    seed: int,
    storage: str,
    request: pytest.FixtureRequest,
) -> None:
    mongo_url: str | None = None
    options: dict[str, Any] = {}
    if storage == "mongodb":
        mongo_url = request.getfixturevalue("mongo_url")
        options = {"processor_storage": "mongodb", "mongo_url": mongo_url}
    manager = await start_manager(
        make_settings(
            reconcile_interval_s=1, checkpoint_interval_s=2, checkpoint_max_entries=40, **options
        )
    )
    done, workers = await run_chaos(manager, seed, RUN_S, kill_process_group)
    assert done["kills"] >= 5
    # Every final state first: a control takes seconds to build, and a keep-alive connection
    # idle that long may be closed by the manager just as the client reuses it.
    finals = [await final_state(manager, worker) for worker in workers]
    for worker, final in zip(workers, finals, strict=True):
        sid = worker.session["session_id"]
        expected = await asyncio.to_thread(control_state, sid, worker.acked, mongo_url)
        assert len(worker.acked) > 20
        if mongo_url is None:
            assert final == expected, f"session {sid}: {len(worker.acked)} acknowledged"
            continue
        assert comparable(final) == comparable(expected)
        learned = knowledge(mongo_url, sid)
        assert learned["patterns_kb"], "the workload learned nothing"
        control = knowledge(mongo_url, f"control-{sid}")
        if worker.failed == 0:
            assert learned == control, f"session {sid}"
        else:
            assert_each_learn_counted_once(learned, control, worker.failed)
    print(
        f"chaos {storage} seed {seed}: {done}, acknowledged {[len(w.acked) for w in workers]}, "
        f"failed {[w.failed for w in workers]}"
    )
