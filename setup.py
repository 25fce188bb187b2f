"""Build hook for the engine's compiled core; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler, no Python headers) the
install still succeeds and the engine runs its pure-Python path (processor_image/engine/core.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "processor_image.engine._core",
            sources=["processor_image/engine/_core.c"],
            # The core must compute bit for bit what Python computes: no fused multiply-add.
            extra_compile_args=["-ffp-contract=off"],
            optional=True,
        )
    ]
)
