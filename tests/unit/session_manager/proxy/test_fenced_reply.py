"""``ProxyResponse.is_fenced``: only a 503 ``PROCESSOR_FENCED`` is resent, nothing else."""

from __future__ import annotations

import pytest

from session_manager.proxy import ProxyResponse

_FENCED = b'{"error":{"code":"PROCESSOR_FENCED","message":"moving","details":{}},"status":503}'
_STORAGE = b'{"error":{"code":"STORAGE_UNAVAILABLE","message":"down","details":{}},"status":503}'


@pytest.mark.parametrize(
    ("status", "body", "fenced"),
    [
        (503, _FENCED, True),
        (503, _STORAGE, False),
        (503, b"not json", False),
        (503, b'{"error": "a string"}', False),
        (200, _FENCED, False),  # a client's own data that happens to say so
        (502, _FENCED, False),
    ],
)
def test_only_a_503_with_the_fence_code_is_fenced(status: int, body: bytes, fenced: bool) -> None:
    assert ProxyResponse(status, [], body).is_fenced() is fenced
