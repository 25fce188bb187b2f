"""A pytest plugin: no log line captured anywhere in the test run may hold a credential.

Every test's captured log (what pytest shows as "Captured log setup/call/teardown": records of
in-process managers, uvicorn included, and of the code under test) goes through the manager's
own ``redact``; a line it would change held a token, API key or ``Authorization`` value that
reached a log record unredacted. The run then fails, listing the lines. A test that logs a
secret on purpose (the redaction's own tests) is marked ``logs_secrets``.

Registered by ``tests/conftest.py``. Runs of ``python -m session_manager`` write their own log
files; ``tests/security/test_tokens.py`` scans one of those.
"""

from __future__ import annotations

import pytest

from session_manager.log import redact

__all__ = (
    "pytest_configure",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
)

_LEAKS: dict[str, None] = {}
"""Each offending line once (a section can be reported more than once), in order."""
_SHOWN = 20


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "logs_secrets: the test logs a credential on purpose (not a leak)"
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "logs_secrets" in report.keywords:
        return
    for section, content in report.sections:
        if not section.startswith("Captured log"):
            continue
        for line in content.splitlines():
            if redact(line) != line:
                _LEAKS[f"{report.nodeid} ({section}): {line[:300]}"] = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _LEAKS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _LEAKS:
        return
    terminalreporter.section("credentials in captured log lines", red=True)
    for leak in list(_LEAKS)[:_SHOWN]:
        terminalreporter.line(leak)
    if len(_LEAKS) > _SHOWN:
        terminalreporter.line(f"... and {len(_LEAKS) - _SHOWN} more")
