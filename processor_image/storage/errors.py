"""The one error a knowledge-base store raises: its database failed (the service answers 503)."""

from __future__ import annotations

__all__ = ("StorageError",)


class StorageError(Exception):
    """The store's database could not be reached or refused an operation."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
