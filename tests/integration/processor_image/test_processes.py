"""The service as a process: configuration errors stop it clearly, and nothing outlives a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from stat import S_IMODE, S_ISSOCK

import httpx
import pytest

from tests.processes import start_processor


def children() -> set[int]:
    """Live (not yet reaped) child processes of this test process, from /proc."""
    mine = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == mine:
            found.add(int(stat.parent.name))
    return found


def run_service(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PROCESSOR_ID", "MONGO_URL")}
    return subprocess.run(
        [sys.executable, "-m", "processor_image"],
        env={**environment, "HOST": "127.0.0.1", "PORT": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "PROCESSOR_ID is required"),
        ({"PROCESSOR_ID": "  "}, "PROCESSOR_ID is required"),
        ({"PROCESSOR_ID": "p", "STORAGE": "redis"}, "STORAGE='redis'"),
        ({"PROCESSOR_ID": "p", "STORAGE": "mongodb"}, "MONGO_URL"),
        ({"PROCESSOR_ID": "p", "PORT": "eighty"}, "PORT='eighty'"),
        ({"PROCESSOR_ID": "p", "MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES"),
        ({"PROCESSOR_ID": "p", "RECALL_THRESHOLD": "high"}, "RECALL_THRESHOLD"),
        ({"PROCESSOR_ID": "p", "MAX_PATTERN_LENGTH": "1.5"}, "MAX_PATTERN_LENGTH"),
    ],
    ids=[
        "no_processor_id",
        "blank_processor_id",
        "unknown_storage",
        "mongodb_without_url",
        "port_not_a_number",
        "negative_body_limit",
        "gene_not_a_number",
        "int_gene_given_a_float",
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(env: dict[str, str], says: str) -> None:
    done = run_service(**env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_processor_that_cannot_start_is_reported_and_reaped() -> None:
    before = children()
    with pytest.raises(RuntimeError, match="STORAGE"), start_processor(STORAGE="redis"):
        pass
    assert children() == before


class BodyFailed(Exception):
    """Stands for a failing test body inside the fixture."""


def test_a_started_processor_is_gone_after_its_fixture_even_when_the_test_fails() -> None:
    before = children()
    seen: list[int] = []

    def failing_body() -> None:
        with start_processor() as running:
            assert running.process.poll() is None
            seen.extend(children() - before)
            raise BodyFailed

    with pytest.raises(BodyFailed):
        failing_body()
    assert len(seen) == 1
    assert children() == before


def test_a_unix_socket_is_served_private_beside_the_port_and_removed_on_exit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.sock"
    path.write_text("stale")  # a dead processor's file is replaced
    with start_processor(UNIX_SOCKET=str(path)) as processor:
        assert S_ISSOCK(path.lstat().st_mode)
        assert S_IMODE(path.lstat().st_mode) == 0o600
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://127.0.0.1") as client:
            health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["processor_id"] == "p1"
        assert httpx.get(f"{processor.url}/health").status_code == 200  # the port as always
    assert not path.exists()
