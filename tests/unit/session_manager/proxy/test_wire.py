"""The wire parser takes apart exactly what httptools would, and declines everything else.

Random messages are built from pieces both plain and not (other methods and versions, bare LF,
obs-folds, control and non-ASCII bytes, trailing whitespace, framing and hop-by-hop headers,
bodies short, long or followed by more bytes). Whenever ``wire`` gives parts, httptools, fed
the same bytes, must give the same ones for exactly one whole message on a kept-alive
connection; and the plain messages the proxy sees every time must not be declined.
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_manager.proxy import wire

pytestmark = pytest.mark.skipif(wire.parse_request is None, reason="_wire is not built here")

MAX_HEADERS = 20
MAX_HEAD = 600


class _Collect:
    """httptools callbacks, gathered as the edge and the processor connection keep them."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.messages = 0
        self.started = 0
        self.parser: Any = None
        self.keep_alive = False
        """As the parser says when the message completes (where both callers ask)."""

    def on_message_begin(self) -> None:
        self.started += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.messages += 1
        self.keep_alive = self.parser.should_keep_alive()


def _httptools(data: bytes, parser_type: Any) -> tuple[Any, _Collect] | None:
    seen = _Collect()
    parser = seen.parser = parser_type(seen)
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    return parser, seen


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FRAMING = {"content-length", "transfer-encoding", "connection", "upgrade", "expect"}
VISIBLE = "".join(map(chr, range(0x21, 0x7F)))
TARGET = "-._~!$&'()*+,;=:@/?%0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Plain pieces: random names and values of the accepted sets (values may start with whitespace).
plain_names = st.text(TCHAR, min_size=1, max_size=12).filter(lambda n: n.lower() not in FRAMING)
plain_values = st.text(VISIBLE + " \t", max_size=20).map(lambda v: v.rstrip(" \t"))
plain_targets = st.text(TARGET, max_size=30).map(lambda t: "/" + t)
# Pieces httptools may take or refuse, and this parser must decline or agree on.
odd_names = st.sampled_from(
    [
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Expect",
        "bad name",
        "",
        "n\x00",
        "Ünï",
        "a\tb",
    ]
)
odd_values = st.sampled_from(
    [
        " spaced ",
        "trailing\t",
        "keep-alive",
        "close",
        "Keep-Alive",
        "chunked",
        "websocket",
        "100-continue",
        "+5",
        "05",
        "99999999999999999999",
        "ctl\x01",
        "del\x7f",
        "caf\xe9",
    ]
)
odd_targets = st.sampled_from(
    ["/a b", "/a#frag", "/é", "*", "http://h/x", '/q"<>', "/a\\b", "/{x}", "/a|b", "/^`"]
)
odd_ends = st.sampled_from(["\n", "\r", "\r\n ", "\r\n\t"])


def _either(plain: bool, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    return good if plain else st.one_of(good, odd)


def _headers(draw: st.DrawFn, plain: bool) -> list[tuple[str, str, str]]:
    return draw(
        st.lists(
            st.tuples(
                _either(plain, plain_names, odd_names),
                _either(plain, plain_values, odd_values),
                _either(plain, st.just("\r\n"), odd_ends),
            ),
            max_size=8,
        )
    )


def _head_lines(pairs: list[tuple[str, str, str]], length: str | None) -> bytes:
    lines = "".join(f"{name}: {value}{end}" for name, value, end in pairs)
    if length is not None:
        lines += f"Content-Length: {length}\r\n"
    return lines.encode("latin-1")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    plain = draw(st.booleans())
    method = draw(
        _either(
            plain,
            st.sampled_from(["GET", "POST"]),
            st.sampled_from(["PUT", "HEAD", "get", "POST "]),
        )
    )
    target = draw(_either(plain, plain_targets, odd_targets))
    version = draw(
        _either(plain, st.just("HTTP/1.1"), st.sampled_from(["HTTP/1.0", "HTTP/2.0", "http/1.1"]))
    )
    body = draw(st.binary(max_size=12))
    exact = st.sampled_from([None, str(len(body))]) if not body else st.just(str(len(body)))
    length = draw(_either(plain, exact, st.sampled_from([str(len(body) + 1), "x", ""])))
    pairs = _headers(draw, plain)
    tail = draw(_either(plain, st.just(b""), st.sampled_from([b"GET / HTTP/1.1\r\n\r\n", b"\r\n"])))
    cut = draw(_either(plain, st.just(0), st.sampled_from([1, 5])))
    head = f"{method} {target} {version}\r\n".encode("latin-1")
    data = head + _head_lines(pairs, length) + b"\r\n" + body + tail
    return data[: len(data) - cut] if cut else data


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    plain = draw(st.booleans())
    good_status = st.integers(200, 599).filter(lambda s: s not in (204, 304)).map(lambda s: f"{s} ")
    reasons = st.text(VISIBLE + " ", max_size=12)
    status = draw(
        _either(
            plain, good_status, st.sampled_from(["204 ", "304 ", "101 ", "99 ", "2000 ", "200"])
        )
    )
    status += draw(reasons) if status.endswith(" ") else ""
    version = draw(_either(plain, st.just("HTTP/1.1"), st.sampled_from(["HTTP/1.0", "HTTP/2"])))
    body = draw(st.binary(max_size=12))
    length = draw(
        _either(plain, st.just(str(len(body))), st.sampled_from([None, str(len(body) + 1), "x"]))
    )
    pairs = _headers(draw, plain)
    tail = draw(_either(plain, st.just(b""), st.just(b"HTTP/1.1 200 OK\r\n\r\n")))
    data = f"{version} {status}\r\n".encode() + _head_lines(pairs, length) + b"\r\n"
    return data + body + tail


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_a_request_it_parses_is_what_httptools_parses(data: bytes) -> None:
    assert wire.parse_request is not None
    parts = wire.parse_request(data, MAX_HEADERS, MAX_HEAD)
    if parts is None:
        return
    method, target, headers, body = parts
    parsed = _httptools(data, httptools.HttpRequestParser)
    assert parsed is not None, data
    parser, seen = parsed
    assert seen.started == seen.messages == 1, data
    assert parser.get_method() == method
    assert parser.get_http_version() == "1.1"
    assert seen.keep_alive
    assert not parser.should_upgrade()
    assert seen.url == target
    # As the edge keeps them: names lower-cased, values without trailing whitespace.
    assert headers == [(n.lower(), v.rstrip(b" \t")) for n, v in seen.headers]
    assert seen.body == body
    assert data.index(b"\r\n\r\n") + 4 <= MAX_HEAD
    assert len(headers) <= MAX_HEADERS


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_a_response_it_parses_is_what_httptools_parses(data: bytes) -> None:
    assert wire.parse_response is not None
    parts = wire.parse_response(data, MAX_HEADERS, 10)
    if parts is None:
        return
    status, headers, body = parts
    parsed = _httptools(data, httptools.HttpResponseParser)
    assert parsed is not None, data
    parser, seen = parsed
    assert seen.started == seen.messages == 1, data
    assert parser.get_status_code() == status
    assert seen.keep_alive
    assert headers == seen.headers
    assert seen.body == body
    assert len(body) <= 10
    assert any(name.lower() == b"content-length" for name, _ in headers)


CLIENT_REQUEST = (
    b"POST /session/0f3a/observe HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Accept-Encoding: identity\r\nContent-Length: 17\r\nAuthorization: Bearer t.k\r\n"
    b"Content-Type: application/json\r\nConnection: keep-alive\r\n\r\n"
    b'{"strings":["a"]}'
)
PROCESSOR_ANSWER = (
    b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 07:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-length: 2\r\ncontent-type: application/json\r\nx-kato-seq: 7\r\n\r\n{}"
)


def test_the_common_messages_are_taken_in_one_call() -> None:
    assert wire.parse_request is not None
    assert wire.parse_response is not None
    request = wire.parse_request(CLIENT_REQUEST, MAX_HEADERS, MAX_HEAD)
    assert request == (
        b"POST",
        b"/session/0f3a/observe",
        [
            (b"host", b"127.0.0.1:8080"),
            (b"accept-encoding", b"identity"),
            (b"content-length", b"17"),
            (b"authorization", b"Bearer t.k"),
            (b"content-type", b"application/json"),
            (b"connection", b"keep-alive"),
        ],
        b'{"strings":["a"]}',
    )
    get = b"GET /session/0f3a/predictions HTTP/1.1\r\nHost: h\r\n\r\n"
    assert wire.parse_request(get, MAX_HEADERS, MAX_HEAD) == (
        b"GET",
        b"/session/0f3a/predictions",
        [(b"host", b"h")],
        b"",
    )
    answer = wire.parse_response(PROCESSOR_ANSWER, MAX_HEADERS, 10)
    assert answer is not None
    assert answer[0] == 200
    assert answer[2] == b"{}"
    assert (b"x-kato-seq", b"7") in answer[1]


@pytest.mark.parametrize(
    "data",
    [
        CLIENT_REQUEST[:-1],  # body not all in
        CLIENT_REQUEST + b"GET / HTTP/1.1\r\n\r\n",  # pipelined
        CLIENT_REQUEST.replace(b"keep-alive", b"close"),
        CLIENT_REQUEST.replace(b"Content-Length: 17", b"Transfer-Encoding: chunked"),
        CLIENT_REQUEST.replace(b"Host:", b"Content-Length: 17\r\nHost:"),  # two lengths
        CLIENT_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"),
        CLIENT_REQUEST.replace(b"\r\nHost", b"\nHost"),
    ],
)
def test_what_is_not_plain_goes_to_httptools(data: bytes) -> None:
    assert wire.parse_request is not None
    assert wire.parse_request(data, MAX_HEADERS, MAX_HEAD) is None


def test_the_limits_are_the_edges() -> None:
    assert wire.parse_request is not None
    assert wire.parse_response is not None
    head = CLIENT_REQUEST.index(b"\r\n\r\n") + 4
    assert wire.parse_request(CLIENT_REQUEST, MAX_HEADERS, head) is not None
    assert wire.parse_request(CLIENT_REQUEST, MAX_HEADERS, head - 1) is None
    assert wire.parse_request(CLIENT_REQUEST, 6, MAX_HEAD) is not None
    assert wire.parse_request(CLIENT_REQUEST, 5, MAX_HEAD) is None
    assert wire.parse_response(PROCESSOR_ANSWER, MAX_HEADERS, 1) is None  # too big to hold


# Framing: the core's functions give the bytes the Python reference gives.

names = st.one_of(
    st.sampled_from(
        [
            b"Content-Length",
            b"content-length",
            b"Connection",
            b"connection",
            b"Keep-Alive",
            b"X-Kato-Seq",
            b"x-kato-unique-id",
            b"Authorization",
            b"Host",
            b"Date",
            b"server",
            b"X-Custom",
            b"x-custom",
        ]
    ),
    st.binary(min_size=1, max_size=10),
)
header_values = st.one_of(
    st.sampled_from(
        [b"keep-alive", b"close", b" X-Custom , upgrade,, ", b"x-custom\t,\x0bdate", b"5"]
    ),
    st.binary(max_size=16),
)
header_lists = st.lists(st.tuples(names, header_values), max_size=10)
drops = st.sampled_from(
    [
        frozenset(),
        frozenset({b"content-length", b"date", b"server", b"keep-alive", b"connection"}),
        {b"authorization", b"host", b"x-request-id"},
    ]
)


@settings(max_examples=1500, deadline=None)
@given(header_lists, drops, st.booleans())
def test_forwarded_headers_are_the_references(
    headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] | set[bytes], internal: bool
) -> None:
    expected = wire.forwarded_py(headers, drop, internal)
    assert wire.forwarded(headers, drop, internal=internal) == expected
    assert wire.header_lines(expected) == wire.header_lines_py(expected)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 503 Service Unavailable\r\n"]),
    header_lists,
    header_lists,
    st.binary(max_size=64),
    st.booleans(),
)
def test_a_whole_answer_is_the_references(
    status_line: bytes,
    defaults: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    keep_alive: bool,
) -> None:
    expected = wire.whole_py(status_line, defaults, headers, body, keep_alive)
    assert wire.whole(status_line, defaults, headers, body, keep_alive) == expected


def test_what_the_core_does_not_expect_is_framed_by_python() -> None:
    listed = [[b"X-A", b"1"], (b"Connection", b"x-a"), (b"B", b"2")]
    kept = wire.forwarded(listed, frozenset(), internal=False)  # type: ignore[arg-type]
    assert [tuple(pair) for pair in kept] == [(b"Connection", b"x-a"), (b"B", b"2")]
    assert wire.header_lines([(b"a", bytearray(b"1"))]) == b"a: 1\r\n"  # type: ignore[list-item]
    answer = wire.whole(b"HTTP/1.1 200 OK\r\n", [], [], memoryview(b"hi"), True)  # type: ignore[arg-type]
    assert answer.endswith(b"content-length: 2\r\n\r\nhi")
    assert wire.forwarded(iter([(b"a", b"1")]), frozenset()) == [(b"a", b"1")]
