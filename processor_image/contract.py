"""The processor package's declared interface for the session manager.

The manager imports nothing else from ``processor_image``: this module names what the two
sides must agree on without the manager loading the engine's or the storage's dependencies.
"""

from __future__ import annotations

from processor_image.storage.naming import database_name

__all__ = ("database_name",)
