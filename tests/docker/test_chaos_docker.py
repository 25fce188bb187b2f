"""Chaos with ``BACKEND=docker``: the shared workload (``tests.support.chaos``) while session
containers are removed with force (``docker rm -f``) and sessions hibernated at random (seeded)
moments. Each session's final state must equal that of a control processor fed exactly its
acknowledged requests: nothing acknowledged lost, nothing applied twice.
"""

from __future__ import annotations

import asyncio
import os

import docker
from docker.errors import NotFound

from tests.support.chaos import Kill, control_state, final_state, run_chaos
from tests.support.docker_engine import docker_settings
from tests.support.manager import SettingsFactory, StartManager

SEED = int(os.environ.get("CHAOS_SEED", "1212"))
RUN_S = float(os.environ.get("CHAOS_DOCKER_RUN_S", "18"))


def remove_container(client: docker.DockerClient) -> Kill:
    """The Docker suite's kill: the session's container removed with force, as by an operator."""

    async def kill(ref: str) -> bool:
        try:
            await asyncio.to_thread(client.api.remove_container, ref, force=True)
        except NotFound:
            return False
        return True

    return kill


async def test_no_acknowledged_write_is_lost_when_containers_are_removed(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
) -> None:
    manager = await start_manager(
        docker_settings(make_settings, checkpoint_interval_s=2, checkpoint_max_entries=40)
    )
    done, workers = await run_chaos(manager, SEED, RUN_S, remove_container(docker_client))
    assert done["kills"] >= 3
    # Every final state first: a control takes seconds to build, and a keep-alive connection
    # idle that long may be closed by the manager just as the client reuses it.
    finals = [await final_state(manager, worker) for worker in workers]
    for worker, final in zip(workers, finals, strict=True):
        sid = worker.session["session_id"]
        expected = await asyncio.to_thread(control_state, sid, worker.acked)
        assert len(worker.acked) > 20
        assert final == expected, f"session {sid}: {len(worker.acked)} acknowledged"
    print(
        f"docker chaos seed {SEED}: {done}, acknowledged {[len(w.acked) for w in workers]}, "
        f"failed {[w.failed for w in workers]}"
    )
