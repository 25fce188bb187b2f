"""The one error a knowledge-base store raises: its database failed (the service answers 503)."""

from __future__ import annotations

from processor_image.errors import ProcessorError

__all__ = ("StorageError",)


class StorageError(ProcessorError):
    """The store's database could not be reached or refused an operation."""

    status, code = 503, "STORAGE_UNAVAILABLE"
