"""How fast a processor container answers ``/health`` after it is started.

Two measures, one container at a time on an otherwise idle engine: the container process
started -> first 200 on ``/health`` (polled every 10 ms over the 127.0.0.1-published port), and
the docker backend's whole ``start()`` (create, start, port lookup, health poll). Run:
``python bench/container_start.py [--image kato-processor:latest] [--runs 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
import httpx
from _report import percentiles, table, write

from session_manager.backends.base import MANAGER_LABEL
from session_manager.backends.docker import DockerBackend
from session_manager.settings import Settings
from tests.processes import processor_spec


def started_to_health(client: docker.DockerClient, image: str, manager_id: str) -> float:
    """Seconds from the container's start call returning to its first healthy answer."""
    container = client.containers.run(
        image,
        detach=True,
        environment={"PROCESSOR_ID": "bench"},
        ports={"8000/tcp": ("127.0.0.1", None)},
        labels={MANAGER_LABEL: manager_id},
        healthcheck={"test": ["NONE"]},
    )
    try:
        started = time.perf_counter()
        while not (container.attrs["NetworkSettings"]["Ports"] or {}).get("8000/tcp"):
            container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        with httpx.Client(trust_env=False, timeout=1) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
    finally:
        container.remove(force=True)


async def backend_start(image: str, manager_id: str, runs: int) -> list[float]:
    backend = DockerBackend.from_settings(
        Settings(backend="docker", docker_image=image, manager_id=manager_id, stop_timeout_s=5)
    )
    samples = []
    try:
        for _ in range(runs):
            spec = processor_spec()
            began = time.perf_counter()
            handle = await backend.start(spec)
            samples.append(time.perf_counter() - began)
            await backend.stop(handle)
    finally:
        await backend.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="kato-processor:latest")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    manager_id = f"bench-start-{secrets.token_hex(4)}"
    client = docker.from_env()
    try:
        raw = [started_to_health(client, args.image, manager_id) for _ in range(args.runs)]
    finally:
        client.close()
    full = asyncio.run(backend_start(args.image, manager_id, args.runs))
    rows: list[dict[str, Any]] = [
        {"measure": "container started -> /health 200", **percentiles(raw)},
        {"measure": "DockerBackend.start() (create -> healthy)", **percentiles(full)},
    ]
    print(table(f"processor container start ({args.image}, {args.runs} runs each)", rows))
    print(f"results: {write('container-start', {'image': args.image, 'rows': rows})}")


if __name__ == "__main__":
    main()
