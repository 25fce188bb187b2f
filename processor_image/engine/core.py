"""Which matching core the engine runs: the compiled one (``_core.c``) or the pure-Python one.

Both give byte-identical predictions (``test_core_equivalence.py`` in the engine's tests); the
pure-Python path (``matching``, ``predictions``) is the reference. ``KATO_ENGINE_CORE``
chooses for the whole process: ``auto`` (default: compiled when it was built and loads),
``compiled`` (an error when it is not available) or ``python``. It is read here, not in the
service's settings only, so that a test run can put every processor, in-process ones too, on
one path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Literal, cast

from processor_image.engine.compiled import CompiledIndex
from processor_image.engine.errors import EngineError
from processor_image.engine.index import PatternIndex
from processor_image.engine.naming import pattern_hash

__all__ = (
    "CHOICES",
    "ENV_VAR",
    "CoreName",
    "CoreUnavailable",
    "compiled_module",
    "hasher",
    "make_index",
    "resolve",
)

ENV_VAR = "KATO_ENGINE_CORE"
CHOICES = ("auto", "python", "compiled")
CoreName = Literal["python", "compiled"]
PatternHash = Callable[[Sequence[Sequence[str]]], str]
"""``naming.pattern_hash``'s signature."""

_ABI = 5
"""The ``ABI`` the Python side expects of ``_core``; a stale build is not used."""


class CoreUnavailable(EngineError):
    """``KATO_ENGINE_CORE`` names no core, or asks for the compiled one where it is not built."""

    status, code = 500, "ENGINE_CORE_UNAVAILABLE"


def compiled_module() -> ModuleType | None:
    """The compiled core when it was built for this interpreter and matches this code, else None."""
    try:
        from processor_image.engine import _core
    except ImportError:
        return None
    return _core if getattr(_core, "ABI", None) == _ABI else None


def resolve(choice: str | None = None, environ: Mapping[str, str] = os.environ) -> CoreName:
    """The core to run for ``choice`` (None: ``KATO_ENGINE_CORE``, unset or empty: ``auto``)."""
    if choice is None:
        choice = environ.get(ENV_VAR) or "auto"
    if choice not in CHOICES:
        raise CoreUnavailable(f"{ENV_VAR}={choice!r}: expected one of {', '.join(CHOICES)}")
    available = compiled_module() is not None
    if choice == "compiled" and not available:
        raise CoreUnavailable(
            f"{ENV_VAR}=compiled but the compiled core is not built for this interpreter"
            " (reinstall with a C compiler and the Python headers, or use auto)"
        )
    return "compiled" if choice != "python" and available else "python"


def hasher(core: CoreName) -> PatternHash:
    """``naming.pattern_hash`` as ``core`` computes it (the same names)."""
    module = compiled_module() if core == "compiled" else None
    return pattern_hash if module is None else cast(PatternHash, module.pattern_hash)


def make_index(core: CoreName) -> PatternIndex | CompiledIndex:
    """An empty pattern index on ``core``."""
    module = compiled_module() if core == "compiled" else None
    if core == "compiled" and module is None:
        raise CoreUnavailable("the compiled core is not built for this interpreter")
    return PatternIndex() if module is None else CompiledIndex(module.Core())
