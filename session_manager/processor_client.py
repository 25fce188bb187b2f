"""``ProcessorClient``: every call the manager itself makes to a processor's API.

Readiness probes (backends), health checks and calls (gateway), the fence and ``GET``/``PUT
/state`` (hibernation) and the live genes (session view) go through it, so httpx errors become the
manager's errors in one place (``_translated``):

    httpx.TimeoutException          -> ProcessorTimeout (504)
    httpx.TransportError            -> ProcessorUnavailable (502; refused, reset, DNS ...)
    a non-2xx answer (``call``)     -> ProcessorUnavailable with ``details["status"]``
    a body that is not JSON         -> ProcessorUnavailable

Proxied client traffic does not come through here: it takes the proxy's own HTTP/1.1 pool.

Calls about a session's processor name its ``processor_id`` and ``epoch`` (the record's):
with ``secrets`` (the manager's ``ProcessorSecrets``) they carry that processor's secret.
``/health`` never needs one, and the gateway's static processors are called without (they
were not started with one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec

from session_manager.errors import ProcessorTimeout, ProcessorUnavailable
from session_manager.processor_secrets import ProcessorSecrets

__all__ = (
    "REPLAY_SEQ_HEADER",
    "SNAPSHOT_ENCODING",
    "UNIQUE_ID_HEADER",
    "ProcessorClient",
    "ProcessorState",
    "RawReply",
    "snapshot_json",
)

REPLAY_SEQ_HEADER = "X-Kato-Replay-Seq"
"""On a replayed request: the sequence number it had the first time (the processor takes it)."""
SEQ_HEADER = "X-Kato-Seq"
"""On a processor's reply to a request that changed its state: the number it got."""
STATE_SEQ_HEADER = "X-Kato-State-Seq"
"""On a processor's ``GET /state`` reply: the snapshot's sequence number."""
UNIQUE_ID_HEADER = "X-Kato-Unique-Id"
"""On an ``/observe``: the id the observation gets when its body names none (the proxy offers
one when it journals the request before the answer; a replay offers the same again)."""

_BODY_EXCERPT = 500
SNAPSHOT_ENCODING = "zstd"
"""How snapshots travel and are stored: the processor compresses, the manager only moves bytes."""
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def snapshot_json(snapshot: bytes) -> bytes:
    """A stored snapshot as JSON: zstd frames (what ``get_state`` keeps) are decompressed."""
    if not snapshot.startswith(_ZSTD_MAGIC):
        return snapshot
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(snapshot)


class ProcessorState(msgspec.Struct, frozen=True):
    """A ``GET /state`` reply: the snapshot as sent, and its ``seq`` when the processor says it.

    ``seq`` comes from ``X-Kato-State-Seq``; ``None`` from a processor older than that header
    (then only the snapshot itself tells, see ``sessions.hibernation.snapshot_seq``).
    """

    snapshot: bytes
    seq: int | None


class RawReply(msgspec.Struct, frozen=True):
    """A processor's answer, whatever its status: for callers that pass errors on (gateway)."""

    status: int
    content: bytes

    def json(self) -> Any:
        """The decoded body (``None`` when empty); a body that is not JSON is a 502."""
        if not self.content:
            return None
        try:
            return msgspec.json.decode(self.content)
        except msgspec.DecodeError as exc:
            raise ProcessorUnavailable("the processor sent a body that is not JSON") from exc


class _Health(msgspec.Struct):
    processor_id: str = ""


class _Gene(msgspec.Struct):
    gene_value: Any = None


@contextlib.contextmanager
def _translated(method: str, url: str) -> Iterator[None]:
    """Translate httpx's failures into the manager's errors: the one place this is written."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProcessorTimeout(f"processor {method} {url} timed out", url=url) from exc
    except httpx.TransportError as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ProcessorUnavailable(
            f"processor {method} {url} failed: {reason}", url=url, error=reason
        ) from exc


class ProcessorClient:
    """One pooled httpx client for the processor API; endpoints are base URLs."""

    def __init__(
        self,
        *,
        read_timeout_s: float,
        connect_timeout_s: float | None = None,
        max_keepalive: int = 64,
        secrets: ProcessorSecrets | None = None,
    ) -> None:
        self._secrets = secrets
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s or read_timeout_s),
            limits=httpx.Limits(max_keepalive_connections=max_keepalive, keepalive_expiry=60),
            trust_env=False,
        )

    def _auth(self, processor_id: str | None, epoch: int) -> dict[str, str]:
        """The processor's secret header; none without a processor id or without secrets."""
        if processor_id is None or self._secrets is None:
            return {}
        return self._secrets.headers(processor_id, epoch)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    async def exchange(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawReply:
        """One request; any status comes back. Only transport failures raise."""
        url = endpoint + path
        if content is not None:
            headers = {"content-type": "application/json", **(headers or {})}
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        with _translated(method, url):
            response = await self._http.request(
                method, url, content=content, json=json, params=params, headers=headers, **extra
            )
        return RawReply(response.status_code, response.content)

    async def call(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        content: bytes | None = None,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> bytes:
        """One request that must succeed: a non-2xx answer is ``ProcessorUnavailable``."""
        reply = await self.exchange(
            method,
            endpoint,
            path,
            content=content,
            timeout_s=timeout_s,
            headers=headers,
            params=params,
        )
        if not 200 <= reply.status < 300:
            raise ProcessorUnavailable(
                f"processor {method} {endpoint}{path} answered {reply.status}",
                url=endpoint + path,
                status=reply.status,
                body=reply.content[:_BODY_EXCERPT].decode("utf-8", "replace"),
            )
        return reply.content

    async def health(self, endpoint: str, *, timeout_s: float | None = None) -> str:
        """``GET /health``: the processor id it answers with; raises when it is not healthy."""
        body = await self.call("GET", endpoint, "/health", timeout_s=timeout_s)
        try:
            return msgspec.json.decode(body, type=_Health).processor_id
        except msgspec.DecodeError as exc:
            raise ProcessorUnavailable(
                f"processor {endpoint}/health sent a body that is not its health",
                url=endpoint + "/health",
            ) from exc

    async def is_ready(self, endpoint: str, processor_id: str) -> bool:
        """The readiness probe: ``/health`` answers 200 naming ``processor_id``.

        The id check matters: another processor on a recycled port answers with its own.
        """
        try:
            return await self.health(endpoint) == processor_id
        except (ProcessorUnavailable, ProcessorTimeout):
            return False

    async def get_state(
        self, endpoint: str, *, processor_id: str | None = None, epoch: int = 0
    ) -> ProcessorState:
        """``GET /state``, asked for zstd: the snapshot as opaque bytes, never decompressed here.

        The body is read raw (httpx would otherwise decode ``Content-Encoding``), so the manager
        holds about one copy of the compressed state. A processor that ignores
        ``Accept-Encoding`` sends plain JSON, kept as sent; ``put_state`` tells them apart.
        """
        url = endpoint + "/state"
        with _translated("GET", url):
            async with self._http.stream(
                "GET",
                url,
                headers={"accept-encoding": SNAPSHOT_ENCODING, **self._auth(processor_id, epoch)},
            ) as response:
                chunks = [chunk async for chunk in response.aiter_raw()]
        body = b"".join(chunks)
        del chunks
        if response.status_code != 200:
            raise ProcessorUnavailable(
                f"processor GET {url} answered {response.status_code}",
                url=url,
                status=response.status_code,
                body=body[:_BODY_EXCERPT].decode("utf-8", "replace"),
            )
        seq = response.headers.get(STATE_SEQ_HEADER, "")
        return ProcessorState(body, int(seq) if seq.isdigit() else None)

    async def put_state(
        self,
        endpoint: str,
        snapshot: bytes,
        *,
        seq: int | None = None,
        processor_id: str | None = None,
        epoch: int = 0,
    ) -> None:
        """``PUT /state``: load a snapshot taken by ``get_state``, sent as stored.

        A zstd frame (its magic number; JSON never starts with it) goes with
        ``Content-Encoding: zstd``; plain JSON (older snapshots) as is. ``seq``, the snapshot's
        sequence number, is sent as ``X-Kato-Replay-Seq`` so that the processor's numbering
        resumes there (a checkpoint before a journal replay).
        """
        headers = {"content-type": "application/json", **self._auth(processor_id, epoch)}
        if snapshot.startswith(_ZSTD_MAGIC):
            headers["content-encoding"] = SNAPSHOT_ENCODING
        if seq is not None:
            headers[REPLAY_SEQ_HEADER] = str(seq)
        url = endpoint + "/state"
        with _translated("PUT", url):
            response = await self._http.put(url, content=snapshot, headers=headers)
        if response.status_code != 200:
            raise ProcessorUnavailable(
                f"processor PUT {url} answered {response.status_code}",
                url=url,
                status=response.status_code,
                body=response.content[:_BODY_EXCERPT].decode("utf-8", "replace"),
            )

    async def replay(
        self,
        endpoint: str,
        seq: int,
        method: str,
        path: str,
        query: str,
        body: bytes,
        *,
        processor_id: str | None = None,
        epoch: int = 0,
        unique_id: str = "",
    ) -> None:
        """Apply a journaled request again, as request number ``seq``; it must be applied.

        ``unique_id``: the id the request offered the first time (``X-Kato-Unique-Id``).

        Applied means a 2xx, or an error the processor numbered ``seq`` all the same (an
        observation the engine refused still counted time, spec §2.2: the first time round
        it was journaled with that error, and it fails the same way again).
        """
        params = dict(parse_qsl(query, keep_blank_values=True)) if query else None
        url = endpoint + path
        headers = {
            "content-type": "application/json",
            REPLAY_SEQ_HEADER: str(seq),
            **self._auth(processor_id, epoch),
        }
        if body.startswith(_ZSTD_MAGIC):  # a PUT /state sent compressed (headers are not kept)
            headers["content-encoding"] = SNAPSHOT_ENCODING
        if unique_id:
            headers[UNIQUE_ID_HEADER] = unique_id
        with _translated(method, url):
            response = await self._http.request(
                method, url, content=body, headers=headers, params=params
            )
        if 200 <= response.status_code < 300 or response.headers.get(SEQ_HEADER) == str(seq):
            return
        raise ProcessorUnavailable(
            f"processor {method} {url} answered {response.status_code} to a replay",
            url=url,
            status=response.status_code,
            body=response.content[:_BODY_EXCERPT].decode("utf-8", "replace"),
        )

    async def fence(
        self, endpoint: str, *, processor_id: str | None = None, epoch: int = 0
    ) -> bool:
        """``POST /fence``: answers once the processor's state is final (hibernation barrier).

        Requests admitted before it have finished; later ones answer 503 ``PROCESSOR_FENCED``
        and its open WebSockets are closed with 1012. ``False`` when the processor has no fence
        (404: an image older than the fence, during an upgrade).
        """
        try:
            await self.call("POST", endpoint, "/fence", headers=self._auth(processor_id, epoch))
        except ProcessorUnavailable as exc:
            if exc.details.get("status") == 404:
                return False
            raise
        return True

    async def unfence(
        self, endpoint: str, *, processor_id: str | None = None, epoch: int = 0
    ) -> None:
        """``DELETE /fence``: the hibernation failed; the processor serves requests again."""
        await self.call("DELETE", endpoint, "/fence", headers=self._auth(processor_id, epoch))

    async def genes(
        self,
        endpoint: str,
        names: Iterable[str],
        *,
        processor_id: str | None = None,
        epoch: int = 0,
    ) -> dict[str, Any]:
        """The live value of each named gene (``GET /gene/{name}``, all at once).

        The processor has no read of every gene but ``GET /state``, which carries a memory
        store's whole knowledge base; a handful of small concurrent reads costs less.
        """
        wanted = list(names)
        auth = self._auth(processor_id, epoch)
        bodies = await asyncio.gather(
            *(self.call("GET", endpoint, f"/gene/{name}", headers=auth) for name in wanted)
        )
        values = {}
        for name, body in zip(wanted, bodies, strict=True):
            try:
                values[name] = msgspec.json.decode(body, type=_Gene).gene_value
            except msgspec.DecodeError as exc:
                raise ProcessorUnavailable(
                    f"processor {endpoint}/gene/{name} sent a body that is not a gene",
                    url=f"{endpoint}/gene/{name}",
                ) from exc
        return values
