"""``KATO_ENGINE_CORE`` picks the matching core of a processor, and ``/status`` tells which."""

from __future__ import annotations

import random
import subprocess
import sys

import httpx
import pytest

from processor_image.engine.core import compiled_module
from tests.processes import start_processor

needs_compiled = pytest.mark.skipif(
    compiled_module() is None, reason="the compiled core is not built here"
)


def predictions_over_http(url: str) -> list[bytes]:
    """A dense stream (2-4 of 20 symbols, learn every 8): every observe's predictions as sent."""
    rng = random.Random(4)
    vocabulary = [f"s{i}" for i in range(20)]
    out = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(1, 81):
            event = rng.sample(vocabulary, rng.randint(2, 4))
            body = {"strings": event, "vectors": [], "emotives": {}, "unique_id": f"u{n}"}
            assert client.post("/observe", json=body).status_code == 200
            out.append(client.get("/predictions").content)
            if n % 8 == 0:
                client.post("/learn")
    return out


@needs_compiled
def test_both_cores_serve_identical_predictions_and_say_which_they_run() -> None:
    replies = {}
    for core in ("python", "compiled"):
        with start_processor("p1", KATO_ENGINE_CORE=core) as running:
            status = httpx.get(f"{running.url}/status", timeout=10).json()
            assert status["engine_core"] == core
            replies[core] = predictions_over_http(running.url)
    assert replies["compiled"] == replies["python"]
    assert any(reply != b'{"predictions":[]}' for reply in replies["python"][10:])


def test_auto_reports_the_core_in_use() -> None:
    with start_processor("core-auto", KATO_ENGINE_CORE="auto") as running:
        status = httpx.get(f"{running.url}/status", timeout=10).json()
    assert status["engine_core"] == ("python" if compiled_module() is None else "compiled")


def test_unknown_core_stops_start_up_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processor_image"],
        env={"PROCESSOR_ID": "p1", "KATO_ENGINE_CORE": "fortran", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "KATO_ENGINE_CORE='fortran'" in result.stderr
