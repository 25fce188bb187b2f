def parse_request(
    data: bytes, max_headers: int, max_head_bytes: int, /
) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes] | None: ...
def parse_response(
    data: bytes, max_headers: int, max_body: int, /
) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None: ...
def forwarded(
    headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] | set[bytes], internal: bool, /
) -> list[tuple[bytes, bytes]] | None: ...
def header_lines(headers: list[tuple[bytes, bytes]], /) -> bytes | None: ...
def whole(
    status_line: bytes,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    keep_alive: bool,
    /,
) -> bytes | None: ...
