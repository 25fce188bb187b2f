"""Hooks for the whole test run: ``tests.support.token_scan`` (no credential in any log line)."""

from __future__ import annotations

from tests.support.token_scan import (
    pytest_configure,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

__all__ = (
    "pytest_configure",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
)
