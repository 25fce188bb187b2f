"""A v3-style client, written from the v3 reference's description of the documented KATOClient.

It holds one session: created with ``node_id`` (and optional config, TTL), then every call is a
session route. As the documented client does, a 404 from a **GET** session route makes it create
a new session on the same node and replay the STM it last saw; 404s from POST and DELETE routes
go to the caller (``V3Error``).
"""

from __future__ import annotations

from typing import Any

import httpx


class V3Error(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class KATOClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        node_id: str,
        *,
        config: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> None:
        self.http = http
        self.node_id = node_id
        self.config = config
        self.ttl_seconds = ttl_seconds
        self.session_id: str | None = None
        self.recreated = 0
        self._last_stm: list[list[str]] = []

    async def connect(self) -> dict[str, Any]:
        body: dict[str, Any] = {"node_id": self.node_id}
        if self.config is not None:
            body["config"] = self.config
        if self.ttl_seconds is not None:
            body["ttl_seconds"] = self.ttl_seconds
        session = await self._send("POST", "/sessions", body)
        self.session_id = session["session_id"]
        return session

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, path, json=body)
        if response.status_code != 200:
            raise V3Error(response.status_code, response.json())
        return response.json()

    async def _session(self, method: str, route: str, body: Any = None) -> Any:
        path = f"/sessions/{self.session_id}{route}"
        try:
            return await self._send(method, path, body)
        except V3Error as exc:
            if exc.status != 404 or method != "GET":
                raise
        # The documented client's recovery: a new session on the node, STM replayed.
        self.recreated += 1
        await self.connect()
        for event in self._last_stm:
            await self.observe(event)
        return await self._send(method, f"/sessions/{self.session_id}{route}", body)

    async def observe(self, strings: list[str], **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._session(
            "POST", "/observe", {"strings": strings, **fields}
        )
        return result

    async def observe_sequence(self, observations: list[dict[str, Any]], **options: Any) -> Any:
        return await self._session(
            "POST", "/observe-sequence", {"observations": observations, **options}
        )

    async def get_stm(self) -> list[list[str]]:
        stm: list[list[str]] = (await self._session("GET", "/stm"))["stm"]
        self._last_stm = stm
        return stm

    async def learn(self) -> str:
        name: str = (await self._session("POST", "/learn"))["pattern_name"]
        return name

    async def get_predictions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._session("GET", "/predictions"))["predictions"]
        return found

    async def clear_stm(self) -> None:
        await self._session("POST", "/clear-stm")

    async def clear_all(self) -> None:
        await self._session("POST", "/clear-all")

    async def get_session_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._session("GET", "")
        return info

    async def update_config(self, config: dict[str, Any]) -> Any:
        return await self._session("POST", "/config", {"config": config})

    async def close(self) -> None:
        if self.session_id is not None:
            await self._send("DELETE", f"/sessions/{self.session_id}")
            self.session_id = None
