"""``GET``/``PUT /state`` bodies: zstd on request, plain JSON still, and their own size limit.

httpx decodes ``Content-Encoding`` by itself; these tests read the raw bytes where the
encoding on the wire is what is checked.
"""

from __future__ import annotations

import httpx
import zstandard

from tests.integration.processor_image.test_state import drive, view
from tests.processes import start_processor

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PLAIN = {"accept-encoding": "identity"}


def raw_state(client: httpx.Client, accept_encoding: str) -> tuple[httpx.Headers, bytes]:
    """``GET /state`` as it came over the wire."""
    with client.stream("GET", "/state", headers={"accept-encoding": accept_encoding}) as reply:
        assert reply.status_code == 200
        return reply.headers, b"".join(reply.iter_raw())


def assert_error(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text[:300]
    assert reply.json()["error"]["code"] == code


def test_zstd_state_round_trips_into_a_second_processor() -> None:
    with (
        start_processor() as first,
        start_processor() as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        drive(a)
        headers, compressed = raw_state(a, "gzip, zstd")
        assert headers["content-encoding"] == "zstd"
        assert "accept-encoding" in headers["vary"].lower()
        assert compressed.startswith(ZSTD_MAGIC)
        plain = a.get("/state", headers=PLAIN)
        assert "content-encoding" not in plain.headers
        assert zstandard.ZstdDecompressor().decompress(compressed) == plain.content
        assert len(compressed) < len(plain.content)

        restored = b.put(
            "/state",
            content=compressed,
            headers={"content-type": "application/json", "content-encoding": "zstd"},
        )
        assert restored.status_code == 200, restored.text
        assert view(b) == view(a)
        assert b.get("/state", headers=PLAIN).json() == plain.json()


def test_plain_json_state_is_still_served_and_taken() -> None:
    with (
        start_processor() as first,
        start_processor() as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        drive(a)
        for refused in ("identity", "gzip, br", "zstd;q=0"):
            headers, body = raw_state(a, refused)
            assert "content-encoding" not in headers
            assert body.startswith(b"{")
        assert b.put("/state", content=body).status_code == 200
        assert view(b) == view(a)


def test_state_has_its_own_limit_and_the_client_body_cap_still_holds_elsewhere() -> None:
    with (
        start_processor("big") as big,
        start_processor("small", MAX_BODY_BYTES="2000", MAX_STATE_BYTES="100000") as small,
        httpx.Client(base_url=big.url) as source,
        httpx.Client(base_url=small.url) as client,
    ):
        source.post("/observe-sequence", json={"observations": [{"strings": ["y" * 20_000]}]})
        state = source.get("/state", headers=PLAIN).content
        assert 20_000 < len(state) < 100_000
        # A snapshot over MAX_BODY_BYTES is taken (restores use MAX_STATE_BYTES) ...
        assert client.put("/state", content=state).status_code == 200
        assert client.get("/stm").json()["stm"] == [["y" * 20_000]]
        # ... while every other route keeps the client cap.
        assert_error(client.post("/observe", json={"strings": ["x" * 3000]}), 413, "BODY_TOO_LARGE")
        observations = {"observations": [{"strings": ["x" * 3000]}]}
        assert_error(client.post("/observe-sequence", json=observations), 413, "BODY_TOO_LARGE")
        assert client.get("/stm").json()["stm"] == [["y" * 20_000]]


def test_state_over_max_state_bytes_is_refused_as_sent_and_once_decompressed() -> None:
    with (
        start_processor(MAX_STATE_BYTES="100000") as running,
        httpx.Client(base_url=running.url) as client,
    ):
        before = client.get("/state", headers=PLAIN).json()
        huge = b'{"pad": "' + b"z" * 200_000 + b'"}'
        assert_error(client.put("/state", content=huge), 413, "BODY_TOO_LARGE")
        bomb = zstandard.ZstdCompressor().compress(huge)  # a few hundred bytes on the wire
        assert len(bomb) < 1000
        reply = client.put("/state", content=bomb, headers={"content-encoding": "zstd"})
        assert_error(reply, 413, "BODY_TOO_LARGE")
        assert client.get("/state", headers=PLAIN).json() == before


def test_unreadable_state_bodies_are_refused_and_change_nothing() -> None:
    with start_processor() as running, httpx.Client(base_url=running.url) as client:
        drive(client)
        state = client.get("/state", headers=PLAIN)
        gz = client.put("/state", content=state.content, headers={"content-encoding": "gzip"})
        assert_error(gz, 415, "UNSUPPORTED_ENCODING")
        corrupt = client.put(
            "/state", content=b"not zstd at all", headers={"content-encoding": "zstd"}
        )
        assert_error(corrupt, 422, "INVALID_JSON")
        assert_error(client.put("/state", content=b"{not json"), 422, "INVALID_JSON")
        wrong = zstandard.ZstdCompressor().compress(b'{"time": -1}')
        reply = client.put("/state", content=wrong, headers={"content-encoding": "zstd"})
        assert_error(reply, 422, "VALIDATION_ERROR")
        assert client.get("/state", headers=PLAIN).content == state.content
