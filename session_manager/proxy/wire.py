"""The common HTTP/1.1 message taken apart in one native call, when the core is built.

``parse_request`` and ``parse_response`` give the parts of one whole, plain message (exactly
the bytes of one read) or ``None``, and then the caller feeds httptools as always. "Plain" is a
strict subset of what httptools accepts, with the same parts: ``GET``/``POST`` with an
origin-form target of unreserved, sub-delim and ``:@/?%`` bytes; ``HTTP/1.1``; CRLF line ends;
token header names; values of visible ASCII, space and tab without trailing whitespace; at most
one ``Content-Length`` and the body exactly that long; no ``Transfer-Encoding``, ``Upgrade`` or
``Expect``; ``Connection`` only ``keep-alive``; a response's status 200-599 but 204 and 304.
Request header names come lower-cased (as uvicorn keeps them), response names as sent.

Without the compiled module (no C compiler where it was installed) both are ``None`` and every
message goes through httptools: the same answers, a little more CPU per request.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ("ParseRequest", "ParseResponse", "parse_request", "parse_response")

RawHeaders = list[tuple[bytes, bytes]]
ParseRequest = Callable[[bytes, int, int], "tuple[bytes, bytes, RawHeaders, bytes] | None"]
"""``(data, max_headers, max_head_bytes) -> (method, target, headers, body)``."""
ParseResponse = Callable[[bytes, int, int], "tuple[int, RawHeaders, bytes] | None"]
"""``(data, max_headers, max_body) -> (status, headers, body)``."""

parse_request: ParseRequest | None
parse_response: ParseResponse | None
try:
    from session_manager.proxy import _wire
except ImportError:  # not compiled here: httptools parses everything
    parse_request = parse_response = None
else:
    parse_request = _wire.parse_request
    parse_response = _wire.parse_response
