"""Out of memory: exit at once with ``EXIT_OUT_OF_MEMORY`` rather than serve a half-updated state.

A processor runs under a memory limit (``PROCESSOR_MEMORY_LIMIT``: ``RLIMIT_DATA`` for the
process backend, the container's cgroup for docker). Over it, an allocation raises
``MemoryError`` wherever it happens, possibly in the middle of a learn. Answering 500 and going
on would serve a state no journal describes; exiting lets the manager rebuild the session from
its checkpoint and journal and say why (see ``processor_image.contract``).
"""

from __future__ import annotations

import os
from typing import NoReturn

from processor_image.contract import EXIT_OUT_OF_MEMORY, OUT_OF_MEMORY_LINE

__all__ = ("exit_out_of_memory",)

_LINE = (OUT_OF_MEMORY_LINE + "\n").encode()
"""Encoded in advance: writing it must not need memory."""


def exit_out_of_memory() -> NoReturn:
    """Write the marker line to stderr and exit with ``EXIT_OUT_OF_MEMORY`` (no cleanup)."""
    try:
        os.write(2, _LINE)
    finally:
        os._exit(EXIT_OUT_OF_MEMORY)
