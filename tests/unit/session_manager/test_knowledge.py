"""The manager reaches the processor package only through ``processor_image.contract``, and
loads pymongo only when a private knowledge base is actually dropped."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import session_manager

PACKAGE = Path(session_manager.__file__).parent


def test_the_manager_imports_processor_image_only_through_its_contract() -> None:
    reaching_in = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            reaching_in += [
                f"{path.relative_to(PACKAGE)}: {name}"
                for name in names
                if name.split(".")[0] == "processor_image"
                and not name.startswith("processor_image.contract")
            ]
    assert reaching_in == []


def test_loading_the_manager_loads_no_pymongo() -> None:
    code = (
        "import sys, session_manager.app, session_manager.knowledge\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('pymongo', 'bson'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
