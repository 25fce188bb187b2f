"""The proxy's per-request wire work: native where the core is built, Python where not.

Parsing. ``parse_request`` and ``parse_response`` give the parts of one whole, plain message
(exactly the bytes of one read) or ``None``, and then the caller feeds httptools as always.
"Plain" is a strict subset of what httptools accepts, with the same parts: ``GET``/``POST``
with an origin-form target of unreserved, sub-delim and ``:@/?%`` bytes; ``HTTP/1.1``; CRLF
line ends; token header names; values of visible ASCII, space and tab without trailing
whitespace; at most one ``Content-Length`` and the body exactly that long; no
``Transfer-Encoding``, ``Upgrade`` or ``Expect``; ``Connection`` only ``keep-alive``; a
response's status 200-599 but 204 and 304. Request header names come lower-cased (as uvicorn
keeps them), response names as sent. Without the core both are ``None``: httptools parses all.

Framing. ``forwarded``, ``header_lines`` and ``whole`` are the Python functions below
(``*_py``, the reference the core is tested against) or the core's, which compute the same
bytes in one call and leave an input they do not expect (not a list of pairs of ``bytes``) to
the Python ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = (
    "forwarded",
    "forwarded_py",
    "header_lines",
    "header_lines_py",
    "parse_request",
    "parse_response",
    "whole",
    "whole_py",
)

RawHeaders = list[tuple[bytes, bytes]]
ParseRequest = Callable[[bytes, int, int], "tuple[bytes, bytes, RawHeaders, bytes] | None"]
"""``(data, max_headers, max_head_bytes) -> (method, target, headers, body)``."""
ParseResponse = Callable[[bytes, int, int], "tuple[int, RawHeaders, bytes] | None"]
"""``(data, max_headers, max_body) -> (status, headers, body)``."""

_INTERNAL_PREFIX = b"x-kato-"
"""Request headers in the manager's own namespace; a client cannot send them on."""


def forwarded_py(
    headers: RawHeaders, drop: frozenset[bytes] | set[bytes], internal: bool
) -> RawHeaders:
    """End-to-end headers only: ``drop`` and every header named in ``Connection`` are removed.

    With ``internal`` the manager's ``X-Kato-*`` namespace is removed as well.
    """
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    if named:
        drop = drop | named
    if internal:
        return [
            (name, value)
            for name, value in headers
            if (lower := name.lower()) not in drop and not lower.startswith(_INTERNAL_PREFIX)
        ]
    return [(name, value) for name, value in headers if name.lower() not in drop]


def header_lines_py(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The headers as ``name: value`` lines, each ended by CRLF."""
    return b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])


def whole_py(
    status_line: bytes,
    default_headers: Iterable[tuple[bytes, bytes]],
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    keep_alive: bool,
) -> bytes:
    """A whole answer as uvicorn writes one (its headers first, names lowercased)."""
    content = [status_line]
    for name, value in default_headers:
        content.append(b"%s: %s\r\n" % (name, value))
    for name, value in headers:
        lowered = name.lower()
        if lowered != b"content-length":
            content.append(b"%s: %s\r\n" % (lowered, value))
    content.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        content.append(b"connection: close\r\n")
    content.append(b"\r\n")
    content.append(body)
    return b"".join(content)


parse_request: ParseRequest | None
parse_response: ParseResponse | None
try:
    from session_manager.proxy import _wire
except ImportError:  # not compiled here: httptools parses, Python frames
    _wire = None  # type: ignore[assignment]
    parse_request = parse_response = None
else:
    parse_request = _wire.parse_request
    parse_response = _wire.parse_response


def forwarded(
    headers: Iterable[tuple[bytes, bytes]],
    drop: frozenset[bytes] | set[bytes],
    *,
    internal: bool = False,
) -> RawHeaders:
    """``forwarded_py``, natively when it can be."""
    headers = headers if isinstance(headers, list) else list(headers)
    if _wire is not None:
        kept = _wire.forwarded(headers, drop, internal)
        if kept is not None:
            return kept
    return forwarded_py(headers, drop, internal)


def header_lines(headers: RawHeaders) -> bytes:
    """``header_lines_py``, natively when it can be."""
    if _wire is not None:
        lines = _wire.header_lines(headers)
        if lines is not None:
            return lines
    return header_lines_py(headers)


def whole(
    status_line: bytes,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    keep_alive: bool,
) -> bytes:
    """``whole_py``, natively when it can be."""
    if _wire is not None:
        framed = _wire.whole(status_line, default_headers, headers, body, keep_alive)
        if framed is not None:
            return framed
    return whole_py(status_line, default_headers, headers, body, keep_alive)
