"""Build hook for the compiled parts; everything else is in pyproject.toml.

Both extensions are optional: where they cannot be compiled (no C compiler, no Python headers)
the install still succeeds, the engine runs its pure-Python path (processor_image/engine/core.py)
and the proxy parses every message with httptools (session_manager/proxy/wire.py).
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
        ),
        Extension(
            "session_manager.proxy._wire",
            sources=["session_manager/proxy/_wire.c"],
            optional=True,
        ),
    ]
)
