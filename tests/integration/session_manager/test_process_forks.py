"""``PROCESS_SPAWN=fork`` (issue 15): forked processors are separate, marked, stoppable processes.

A processor forked from the fork server must be indistinguishable, for the backend and for the
leak checks, from one started as a new interpreter: its own process group, its own environment
(markers, its own secret) as ``/proc`` shows it, killed by ``stop``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import msgspec

from session_manager.backends.process import MANAGER_MARKER, SESSION_MARKER, ProcessBackend
from session_manager.pool.claims import ClaimClient
from session_manager.pool.warm import pool_spec
from session_manager.processor_secrets import SECRET_ENV, ProcessorSecrets
from session_manager.settings import Settings
from tests.processes import processor_spec
from tests.support.manager import ManagerProcessFactory, SettingsFactory, auth
from tests.support.pids import pid_running, processes_of
from tests.support.timing import wait_for


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if b"=" in item)


async def test_forked_processors_are_separate_marked_and_stoppable(
    tmp_path: Path, manager_id: str
) -> None:
    backend = ProcessBackend(
        manager_id=manager_id,
        log_dir=tmp_path / "processors",
        start_timeout_s=30,
        stop_timeout_s=5,
        spawn="fork",
    )
    try:
        specs = [processor_spec(**{SECRET_ENV: f"secret-{i}" * 4}) for i in range(2)]
        handles = [await backend.start(spec) for spec in specs]
        pids = [int(h.ref) for h in handles]
        assert len(set(pids)) == 2
        for pid, spec in zip(pids, specs, strict=True):
            assert os.getpgid(pid) == pid  # its own group, which stop signals
            env = _environ(pid)
            assert env[MANAGER_MARKER] == manager_id
            assert env[SESSION_MARKER] == spec.session_id
            assert env[SECRET_ENV] == spec.env[SECRET_ENV]
            parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
            assert parent != os.getpid()  # the fork server's child, not ours
        assert set(processes_of(manager_id)) == set(pids)

        await backend.stop(handles[0])
        assert not pid_running(pids[0])
        assert pid_running(pids[1])
        assert await backend.is_alive(handles[1])
    finally:
        for handle in await backend.list_owned():
            await backend.stop(handle)
        forks = backend._forks
        assert forks is not None
        server_directory = forks.socket_path.parent
        await backend.close()
    assert not server_directory.exists()  # the fork server's private directory is removed


def _uss_mib(pid: int) -> float:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    kb = {line.split(":")[0]: int(line.split()[1]) for line in rollup if ":" in line}
    return (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024


async def test_forks_share_the_servers_app_and_keep_their_own_configuration(
    tmp_path: Path, manager_id: str
) -> None:
    """Pooled (claimed) and cold forks serve the app the fork server built: their unique
    memory stays under the issue's 15 MB, the manager's body limit holds, and each is the
    processor its own environment (or claim) describes."""
    limit = 4096
    settings = Settings(
        manager_id=manager_id, max_proxy_body_bytes=limit, processor_secret_key="k" * 64
    )
    secrets = ProcessorSecrets.from_key(settings.processor_secret_key)
    assert secrets is not None
    backend = ProcessBackend(
        manager_id=manager_id,
        log_dir=tmp_path / "processors",
        start_timeout_s=30,
        stop_timeout_s=5,
        spawn="fork",
        body_bytes=limit,
    )
    claims = ClaimClient(secrets, timeout_s=30)

    def session_env(session_id: str) -> dict[str, str]:
        extra = {SECRET_ENV: secrets.for_processor(session_id), "MAX_BODY_BYTES": str(limit)}
        return processor_spec(session_id, RECALL_THRESHOLD="0.3", **extra).env

    try:
        member = pool_spec(settings, secrets)
        pooled = await backend.start(member)
        pooled_id = uuid.uuid4().hex
        await claims.claim(pooled.endpoint, member.session_id, session_env(pooled_id))
        cold_id = uuid.uuid4().hex
        cold_spec = processor_spec(cold_id)
        cold = await backend.start(msgspec.structs.replace(cold_spec, env=session_env(cold_id)))
        for handle, session_id in ((pooled, pooled_id), (cold, cold_id)):
            headers = secrets.headers(session_id)
            async with httpx.AsyncClient(base_url=handle.endpoint, trust_env=False) as client:
                fits = await client.post("/observe", json={"strings": ["a"]}, headers=headers)
                assert fits.status_code == 200, fits.text
                too_large = {"strings": ["x" * limit]}
                reply = await client.post("/observe", json=too_large, headers=headers)
                assert reply.status_code == 413
                gene = await client.get("/gene/recall_threshold", headers=headers)
                assert gene.json()["gene_value"] == 0.3
            assert _uss_mib(int(handle.ref)) <= 15.0, session_id
    finally:
        await claims.aclose()
        for owned in await backend.list_owned():
            await backend.stop(owned)
        await backend.close()


def _fork_server_socket(manager_pid: int) -> Path | None:
    """The socket the fork server started by ``manager_pid`` listens on, if it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == manager_pid and b"processor_image.forkserver" in argv:
            return Path(argv[argv.index(b"processor_image.forkserver") + 1].decode())
    return None


async def test_a_manager_killed_with_sigkill_leaves_no_fork_server_directory(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    """The manager runs no code of its own then: its fork server removes what it made."""
    settings = make_settings(process_spawn="fork")
    first = manager_process(settings)
    manager = await first.start()
    try:
        session = await manager.create()
        assert first.process is not None
        socket_path = _fork_server_socket(first.process.pid)
        assert socket_path is not None
        assert socket_path.exists()
        first.kill()

        async def removed() -> bool:
            return not socket_path.parent.exists()

        assert await wait_for(removed, timeout_s=10)
    finally:
        await manager.aclose()
    # Its processors outlive it, as always: the next manager finds and ends them.
    async with manager_process(settings).running() as again:
        reply = await again.client.get(f"/session/{session['session_id']}", headers=auth(session))
        assert reply.status_code == 200, reply.text
