"""Processor image start-up: ``docker run`` to a ``/health`` answer, for a few containers in turn.

Needs a Docker engine and the image (``scripts/build-images``). Ports are published on
127.0.0.1 only. Run: ``python bench/image.py [--runs 10] [--image kato-processor:latest]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
from _report import percentiles, table, write


def start_to_health(client: docker.DockerClient, image: str, n: int) -> float:
    started = time.perf_counter()
    container = client.containers.run(
        image,
        detach=True,
        environment={"PROCESSOR_ID": f"image-bench-{n}"},
        ports={"8000/tcp": ("127.0.0.1", None)},
        labels={"io.kato.bench": "image"},
    )
    try:
        while True:
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get("8000/tcp")
            if bindings:
                url = f"http://127.0.0.1:{bindings[0]['HostPort']}/health"
                try:
                    with urllib.request.urlopen(url, timeout=1) as reply:
                        if reply.status == 200:
                            return time.perf_counter() - started
                except OSError:
                    pass
            if time.perf_counter() - started > 30:
                raise RuntimeError("no /health answer within 30 s")
            time.sleep(0.01)
    finally:
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image", default="kato-processor:latest")
    args = parser.parse_args()
    client = docker.from_env()
    samples = [start_to_health(client, args.image, n) for n in range(args.runs)]
    row = {"image": args.image, "runs": args.runs, **percentiles(samples)}
    print(table("processor image: docker run -> /health (ms)", [row]))
    print(f"results: {write('image', row)}")


if __name__ == "__main__":
    main()
