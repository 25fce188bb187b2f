"""Session tokens and the admin token are read and compared by the same code."""

from __future__ import annotations

import pytest

from session_manager.errors import Unauthorized
from session_manager.sessions.tokens import SessionTokens, bearer_token, hash_token, same_secret


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_reads_only_a_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_same_secret_compares_whole_values() -> None:
    assert same_secret("s3cret", "s3cret")
    assert not same_secret("s3cret", "s3cret!")
    assert not same_secret("", "s3cret")


def test_issued_tokens_check_against_their_hash_only() -> None:
    tokens = SessionTokens("token")
    token, stored = tokens.issue()
    assert token is not None
    assert stored == hash_token(token) != token
    tokens.check(stored, f"bearer {token}")
    with pytest.raises(Unauthorized, match="wrong session token"):
        tokens.check(stored, "Bearer not-it")
    with pytest.raises(Unauthorized, match="missing session token"):
        tokens.check(stored, f"Basic {token}")


def test_session_auth_none_issues_and_checks_nothing() -> None:
    tokens = SessionTokens("none")
    assert tokens.issue() == (None, "")
    tokens.check("", None)


def test_an_accepted_header_is_remembered_only_for_its_own_token() -> None:
    """``check`` skips the hash for the header it last accepted for a token, and only for it."""
    tokens = SessionTokens("token")
    token, stored = tokens.issue()
    rotated, rotated_hash = tokens.issue()
    assert token is not None
    assert rotated is not None
    tokens.check(stored, f"Bearer {token}")
    tokens.check(stored, f"Bearer {token}")  # remembered
    with pytest.raises(Unauthorized):
        tokens.check(stored, f"Bearer {token}x")
    with pytest.raises(Unauthorized):
        tokens.check(stored, None)
    with pytest.raises(Unauthorized):  # after a rotation the stored hash is another one
        tokens.check(rotated_hash, f"Bearer {token}")
    tokens.check(rotated_hash, f"bearer {rotated}")
