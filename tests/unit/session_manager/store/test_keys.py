"""``store.keys`` is the only code that spells a Redis key; the public names are pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import session_manager
import session_manager.store
from session_manager.models import SessionStatus
from session_manager.store import Keys

PACKAGE = Path(session_manager.__file__).parent
KEYS_MODULE = PACKAGE / "store" / "keys.py"


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module with their line numbers, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _key_kinds() -> set[str]:
    """``session:``, ``label:``, ``deadline:`` …: the kinds keys.py writes before a ``:``."""
    return {
        value.split(":", 1)[0] + ":"
        for _, value in _strings(KEYS_MODULE)
        if ":" in value and not value.startswith(":")
    }


def _uses_prefix(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr in {"prefix", "redis_prefix"}) or (
        isinstance(node, ast.Name) and node.id == "redis_prefix"
    )


def test_key_kinds_are_found_in_the_keys_module() -> None:
    assert {
        "session:",
        "user:",
        "tenant:",
        "kb:",
        "status:",
        "label:",
        "tombstone:",
        "snapshot:",
    } <= _key_kinds()


def test_no_other_module_spells_a_key() -> None:
    kinds = _key_kinds()
    spelled: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == KEYS_MODULE:
            continue
        for line, value in _strings(path):
            spelled += [f"{path.name}:{line} {kind}" for kind in kinds if kind in value]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FormattedValue) and _uses_prefix(node.value):
                spelled.append(f"{path.name}:{node.lineno} formats the prefix")
            if isinstance(node, ast.BinOp) and (
                _uses_prefix(node.left) or _uses_prefix(node.right)
            ):
                spelled.append(f"{path.name}:{node.lineno} concatenates the prefix")
    assert spelled == []


def test_every_key_sits_under_the_prefix() -> None:
    keys = Keys("p:")
    names = [
        keys.sessions,
        keys.idle,
        keys.hard,
        keys.starts,
        keys.changes,
        keys.leader,
        keys.replicas,
        keys.session("s"),
        keys.user("t", "u"),
        keys.tenant("t"),
        keys.knowledge_base("k"),
        keys.label("team", "a"),
        keys.tombstone("s"),
        keys.snapshot("s"),
        keys.snapshot_totals,
        *keys.all_statuses(),
    ]
    assert all(name.startswith("p:") for name in names)
    assert len(set(names)) == len(names)
    assert keys.status(SessionStatus.READY) == "p:status:ready"
    assert keys.labels({"team": "a", "tier": "gold"}) == ["p:label:team=a", "p:label:tier=gold"]


def test_the_store_exports_exactly_its_public_names() -> None:
    assert set(session_manager.store.__all__) == {
        "Capacity",
        "RedisSnapshots",
        "SnapshotStore",
        "SnapshotTotals",
        "Deadline",
        "Keys",
        "Page",
        "Route",
        "SessionStore",
        "TransitionResult",
        "decode_cursor",
        "encode_cursor",
    }
    for name in session_manager.store.__all__:
        assert getattr(session_manager.store, name) is not None
