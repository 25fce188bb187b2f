"""The ``kato-sessions`` command line against a real manager; output compared with snapshots.

Snapshots live in ``snapshots/cli/``; what changes from run to run (ids, timestamps, ports,
sizes, durations) is replaced by placeholders first. After an intended change of the output,
rerun with ``UPDATE_SNAPSHOTS=1`` and review the diff.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from kato_sessions import AsyncClient, AsyncSession
from kato_sessions.cli import main

from tests.processes import start_processor
from tests.support.manager import (
    ADMIN_TOKEN,
    API_KEY,
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
)
from tests.support.net import free_port
from tests.support.timing import wait_for

_SNAPSHOTS = Path(__file__).parent / "snapshots" / "cli"
_VARYING = (
    # ISO 8601 or epoch numbers (the managers before timestamps were one format): one snapshot
    (re.compile(r'"(started_at|checked_at)": ("[^"]*"|[\d.e+-]+)'), r'"\1": <when>'),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "<time>"),
    (re.compile(r"test-[0-9a-f]{12}"), "<manager>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\d+(\.\d+)? ms"), "<n> ms"),
    (re.compile(r"\d+ bytes, \d+ on average"), "<n> bytes, <n> on average"),
    (re.compile(r'"(bytes|average_bytes|ref)": "?[\w.:/-]+"?'), r'"\1": <n>'),
    (re.compile(r'"(duration_ms|latency_ms)": [\d.e+-]+'), r'"\1": <n>'),
    (re.compile(r'"endpoint": "[^"]*"'), '"endpoint": <endpoint>'),
    (re.compile(r"(endpoint:\s+)\S+"), r"\1<endpoint>"),
    (re.compile(r"(backend:\s+process )\S+"), r"\1<ref>"),
)


def _normalized(text: str, session_ids: list[str], *, pad: bool = True) -> str:
    """``text`` with placeholders; ``pad`` keeps a table's columns aligned (not for JSON)."""
    for number, session_id in enumerate(session_ids, 1):
        placeholder = f"<session-{number}>"
        text = text.replace(session_id, placeholder.ljust(len(session_id)) if pad else placeholder)
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _matches_snapshot(name: str, text: str) -> None:
    path = _SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"output differs from {path}"


async def _cli(manager: Manager, *argv: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
    """Run the command line (in a thread: the manager runs in this event loop)."""
    out, err = io.StringIO(), io.StringIO()
    args = ["--url", manager.base_url, "--token", token, *argv]
    status = await asyncio.to_thread(main, args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


async def _three_sessions(manager: Manager) -> tuple[AsyncClient, list[AsyncSession]]:
    """alice (team red, a gene), bob (team blue), carol (team red, hibernated)."""
    client = AsyncClient(manager.base_url, api_key=API_KEY, admin_token=ADMIN_TOKEN)
    alice = await client.create(
        "alice", labels={"team": "red"}, genes={"recall_threshold": 0.2}, idle_timeout_s=600
    )
    bob = await client.create("bob", labels={"team": "blue"}, idle_timeout_s=600)
    carol = await client.create("carol", labels={"team": "red"}, idle_timeout_s=600)
    assert await manager.app.state.sessions.hibernate(carol.session_id)
    return client, [alice, bob, carol]


async def test_cli_commands_print_tables_and_json(manager: Manager) -> None:
    client, sessions = await _three_sessions(manager)
    ids = [s.session_id for s in sessions]
    alice = ids[0]

    for name, argv in {
        "ls.txt": ("sessions", "ls"),
        "ls.json": ("sessions", "ls", "--json"),
        "ls_filtered.txt": ("sessions", "ls", "--label", "team:red", "--status", "hibernated"),
        "ls_limit.txt": ("sessions", "ls", "--limit", "1"),
        "ls_none.txt": ("sessions", "ls", "--user", "nobody"),
        "show.txt": ("sessions", "show", alice),
        "show.json": ("sessions", "show", alice, "--json"),
        "keepalive.txt": ("sessions", "keepalive", alice, ids[1]),
        "stats.txt": ("stats",),
        "stats.json": ("stats", "--json"),
        "reap.txt": ("reap",),
        "processors.txt": ("processors",),
        "processors.json": ("processors", "--json"),
    }.items():
        status, out, err = await _cli(manager, *argv, "--no-progress")
        assert (status, err) == (0, ""), (name, err)
        _matches_snapshot(name, _normalized(out, ids, pad=not name.endswith(".json")))

    status, out, err = await _cli(manager, "reap", "--json", "--no-progress")
    assert status == 0
    _matches_snapshot("reap.json", _normalized(out, ids, pad=False))

    status, out, err = await _cli(manager, "sessions", "show", alice, "--live-genes")
    assert status == 0
    assert "live genes:" in out
    assert "recall_threshold=0.2" in out

    # a removal of every session a filter matches, with progress on stderr
    status, out, err = await _cli(
        manager, "sessions", "rm", "--all", "--label", "team:red", "--progress"
    )
    assert status == 0, err
    _matches_snapshot("rm.txt", _normalized(out, ids))
    assert err == "\rremoved 1/2\rremoved 2/2\n"
    status, out, _ = await _cli(manager, "sessions", "rm", ids[1], "--json", "--no-progress")
    assert status == 0
    _matches_snapshot("rm.json", _normalized(out, ids, pad=False))
    remaining = await client.list_sessions()
    assert remaining.sessions == []
    await client.aclose()


async def test_cli_errors_name_the_code_and_exit_non_zero(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = await _cli(manager, "stats", token="wrong-token")
    assert (status, out) == (1, "")
    assert err.startswith("kato-sessions: 401 UNAUTHORIZED: ")

    status, _, err = await _cli(manager, "sessions", "rm", "f" * 32, "--no-progress")
    assert status == 1
    assert f"kato-sessions: {'f' * 32}: 404 SESSION_NOT_FOUND" in err

    monkeypatch.delenv("KATO_SESSIONS_TOKEN", raising=False)
    out_, err_ = io.StringIO(), io.StringIO()
    argv = ["--url", manager.base_url, "stats"]
    assert await asyncio.to_thread(main, argv, out=out_, err=err_) == 2
    assert "no token: give --token or set KATO_SESSIONS_TOKEN" in err_.getvalue()

    # URL and token from the environment
    monkeypatch.setenv("KATO_SESSIONS_URL", manager.base_url)
    monkeypatch.setenv("KATO_SESSIONS_TOKEN", ADMIN_TOKEN)
    out_ = io.StringIO()
    assert await asyncio.to_thread(main, ["processors"], out=out_, err=err_) == 0
    assert out_.getvalue() == "no static processors (gateway mode is off)\n"


async def test_serve_starts_the_manager_as_python_m_session_manager_does(
    make_settings: SettingsFactory, manager_process: ManagerProcessFactory
) -> None:
    """``kato-sessions serve`` (what ``make run`` runs) is a real manager process."""
    executable = str(Path(sys.executable).parent / "kato-sessions")
    process = manager_process(make_settings())
    process.command = [executable, "serve"]
    async with (
        process.running() as running,
        AsyncClient(running.base_url, api_key=API_KEY, admin_token=ADMIN_TOKEN) as client,
        await client.create("alice") as session,
    ):
        assert (await session.observe(["a"])).time == 1
        assert (await client.stats()).total == 1


async def test_processors_lists_gateway_mode_processors_and_their_health(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """One real processor (healthy) and one registered where nothing listens (unhealthy)."""
    with start_processor("alpha") as alpha:
        nowhere = f"http://127.0.0.1:{free_port()}"
        manager = await start_manager(
            make_settings(
                kato_processors=json.dumps({"alpha": alpha.url, "beta": nowhere}),
                gateway_health_interval_s=0.2,
            )
        )

        async def checked() -> bool:
            status, out, _ = await _cli(manager, "processors", "--json")
            return status == 0 and out.count('"checked_at": null') == 0

        assert await wait_for(checked, timeout_s=20)
        for name, argv in {
            "processors_gateway.txt": ("processors",),
            "processors_gateway.json": ("processors", "--json"),
        }.items():
            status, out, err = await _cli(manager, *argv)
            assert (status, err) == (0, ""), err
            # latencies vary in width, and so does the column: compare cells, not padding
            _matches_snapshot(name, re.sub(r" {2,}", "  ", _normalized(out, [], pad=False)))
