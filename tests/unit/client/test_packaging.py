"""The client installs on its own: importing all of it loads none of the server's packages."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import kato_sessions, kato_sessions.cli, kato_sessions.aio, kato_sessions.sync, kato_sessions.ws
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""

_WITHOUT_SERVER = """
import sys
sys.modules["session_manager"] = None  # as in an environment with the client alone
from kato_sessions.cli import main
sys.exit(main(["serve"]))
"""


def test_the_client_imports_nothing_of_the_server() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "kato_sessions" in loaded
    for server in ("session_manager", "processor_image", "litestar", "redis", "uvicorn"):
        assert server not in loaded


def test_serve_without_the_server_says_how_to_install_it() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SERVER], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 1
    assert "kato-sessions serve needs the server" in ran.stderr
