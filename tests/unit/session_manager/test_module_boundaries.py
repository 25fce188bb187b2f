"""The manager's import graph: no cycles, and the boundaries issue 11 drew stay drawn.

Read from the source (AST), so every import counts, those under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "session_manager"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The ``session_manager`` modules ``module`` imports (a package's own parents excluded)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            # Importing a.b.c runs a/__init__ and a/b/__init__ too.
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in MODULES and not (module + ".").startswith(target + "."):
                    found.add(target)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle, as the modules along it, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_manager_has_no_import_cycles() -> None:
    assert _cycle() is None


def test_the_cycle_check_finds_a_cycle() -> None:
    GRAPH["session_manager.models"].add("session_manager.store")
    try:
        assert _cycle() is not None
    finally:
        GRAPH["session_manager.models"].discard("session_manager.store")


def test_models_depend_on_no_backend() -> None:
    assert not {m for m in GRAPH["session_manager.models"] if m.startswith("session_manager.")}


def test_the_gateway_does_not_reach_into_the_api() -> None:
    for module, targets in GRAPH.items():
        if module.startswith("session_manager.gateway"):
            assert not {t for t in targets if t.startswith("session_manager.api")}, module


def test_only_the_processor_client_speaks_httpx() -> None:
    """One module maps httpx errors; the proxy's hot path uses its own HTTP/1.1 pool."""
    speakers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "httpx" for a in node.names):
                speakers.add(module)
            if isinstance(node, ast.ImportFrom) and node.module == "httpx":
                speakers.add(module)
    assert speakers == {"session_manager.processor_client"}
