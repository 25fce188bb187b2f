"""A bare asyncio byte relay: the floor any proxy's added cost is compared with.

Each client connection gets its own upstream connection; bytes are copied both ways as they
come, nothing is parsed. Run as a process of its own (so it does not share the benchmark
client's interpreter): ``python bench/_relay.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def main(listen_port: int, host: str, port: int) -> None:
    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection(host, port)
        await asyncio.gather(_pump(client_r, upstream_w), _pump(upstream_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
