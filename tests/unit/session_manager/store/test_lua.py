"""Lua scripts take every key by its full name from Python, and each one is in use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import session_manager.store

STORE = Path(session_manager.store.__file__).parent
SCRIPTS = sorted((STORE / "lua").glob("*.lua"))


def _code(script: Path) -> str:
    """The script without its ``--`` comments."""
    return "\n".join(line.split("--", 1)[0] for line in script.read_text().splitlines())


def test_there_are_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {"reserve.lua", "transition.lua", "end.lua", "touch.lua"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_builds_a_key(script: Path) -> None:
    code = _code(script)
    # The one concatenation allowed builds an exclusive score bound: '(' .. ARGV[n].
    concatenations = re.findall(r"\S+\s*\.\.\s*\S+", code)
    assert [c for c in concatenations if not c.startswith("'('")] == []
    literals = re.findall(r"'([^'\n]*)'", code)
    assert [text for text in literals if ":" in text or "=" in text] == []
    assert "string.format" not in code


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_registered(script: Path) -> None:
    sources = "\n".join(p.read_text() for p in STORE.glob("*.py"))
    assert f'"{script.name}"' in sources
