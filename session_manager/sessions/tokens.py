"""Bearer tokens: how session tokens are stored, read from ``Authorization``, and compared.

Admin auth (``api/auth.py``) and session auth use the same parsing and constant-time check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal, cast

from session_manager.errors import Unauthorized

__all__ = ("SessionTokens", "bearer_token", "hash_token", "new_token", "same_secret")


def hash_token(token: str) -> str:
    """How session tokens are stored: SHA-256 hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new session token (256 random bits, URL-safe) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (any case of ``Bearer``); else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(given: str, expected: str) -> bool:
    """Compare two secrets in constant time, so timing tells nothing about the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())


_VERIFIED_MAX = 10_000
"""Sessions whose last accepted ``Authorization`` value is remembered (``SessionTokens.check``)."""


class SessionTokens:
    """Session tokens under ``SESSION_AUTH``: ``token`` issues and checks them, ``none`` neither.

    ``check`` remembers, per stored hash, the last ``Authorization`` value it accepted: a
    client sends the same header on every request, and hashing it again (SHA-256) was a
    measurable share of a proxied request. The remembered value is compared in constant time
    too; a rotated token has another hash, so the old value never matches it.
    """

    def __init__(self, mode: Literal["token", "none"]) -> None:
        self.required = mode == "token"
        self._verified: dict[str, str] = {}

    def issue(self) -> tuple[str | None, str]:
        """A new token (256 random bits, URL-safe) and its stored hash; ``(None, "")`` if off."""
        if not self.required:
            return None, ""
        return new_token()

    def check(self, token_hash: str, authorization: str | None) -> None:
        """Raise ``Unauthorized`` unless ``authorization`` carries the token of ``token_hash``."""
        if not self.required:
            return
        verified = self._verified.get(token_hash)
        if (
            verified is not None
            and authorization is not None
            and same_secret(authorization, verified)
        ):
            return
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("missing session token (Authorization: Bearer <token>)")
        if not same_secret(hash_token(token), token_hash):
            raise Unauthorized("wrong session token")
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token_hash] = cast("str", authorization)
