"""Finding 7: a host the manager cannot run on gives one clear line, exit 1, nothing running.

Before: an unwritable or full ``DATA_DIR`` ended in a long ExceptionGroup traceback (exit 3)
and could leave the embedded ``redis-server`` running; a second manager on a busy port logged
``address already in use``, then hung and ignored SIGTERM.

The read-only and full ``DATA_DIR`` cases are real file systems: a tmpfs mounted in a private
mount namespace (``unshare``), skipped where user namespaces are not allowed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.manager import ADMIN_TOKEN, ManagerProcessFactory, SettingsFactory
from tests.support.net import free_port

_REPO = Path(__file__).resolve().parents[2]
_EXIT_WAIT_S = 30


class Exited:
    """How a ``python -m session_manager`` run ended."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or working directory names ``text`` (an embedded redis)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if text in cmdline or os.readlink(entry / "cwd").startswith(text):
                found.append(int(entry.name))
    return found


def _run_manager(data_dir: Path, port: int, *, wrapper: list[str] | None = None) -> Exited:
    """Run a default manager (embedded Redis) until it exits; kill it if it does not."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(data_dir.parent),
        "DATA_DIR": str(data_dir),
        "LISTEN_PORT": str(port),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "MANAGER_ID": f"test-{uuid.uuid4().hex[:12]}",
    }
    command = [*(wrapper or []), sys.executable, "-m", "session_manager"]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=str(_REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=_EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the manager did not exit within {_EXIT_WAIT_S}s: {stderr.decode()[-2000:]}")
    finally:
        for pid in _processes_mentioning(str(data_dir)):  # what a failed start left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return Exited(process.returncode, stdout.decode(), stderr.decode())


def _assert_one_line_error(exited: Exited, *phrases: str) -> None:
    assert exited.code == 1, exited.stderr
    lines = exited.stderr.strip().splitlines()
    assert len(lines) == 1, exited.stderr
    assert lines[0].startswith("kato-sessions: ")
    for phrase in phrases:
        assert phrase in lines[0]


def _in_mount_namespace(mount: str) -> list[str]:
    """A wrapper running the command with a fresh tmpfs (``mount`` options) on ``$DATA_DIR``."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(
        ["unshare", "-rm", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"no user/mount namespaces here: {probe.stderr.decode().strip()}")
    script = f'mount -t tmpfs -o {mount} tmpfs "$DATA_DIR" && {{ fill; }}; exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, "sh"]


async def test_a_busy_port_is_one_line_and_exit_1_leaving_nothing_running(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    first = manager_process(make_settings())
    manager = await first.start()
    try:
        second_dir = tmp_path / "second"
        exited = _run_manager(second_dir, first.port)
        _assert_one_line_error(exited, f"LISTEN_PORT={first.port}", "in use")
        assert not (second_dir / "redis").exists()  # the embedded Redis never started
        assert _processes_mentioning(str(second_dir)) == []
        assert (await manager.client.get("/health")).status_code == 200
    finally:
        await manager.aclose()


def test_a_data_dir_that_cannot_be_created_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    exited = _run_manager(blocker / "data", free_port())
    _assert_one_line_error(exited, f"DATA_DIR={blocker / 'data'}", "is not usable")
    assert _processes_mentioning(str(blocker)) == []


@pytest.mark.parametrize(
    ("mount", "fill", "cause"),
    [
        ("ro,size=1m", ":", "Read-only file system"),
        (
            "size=256k",
            'head -c 1048576 /dev/zero > "$DATA_DIR/fill" 2>/dev/null',
            "No space left on device",
        ),
    ],
    ids=["read-only", "full"],
)
def test_an_unwritable_or_full_data_dir_is_one_line_and_exit_1(
    tmp_path: Path, mount: str, fill: str, cause: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    wrapper = [part.replace("{ fill; }", fill) for part in _in_mount_namespace(mount)]
    exited = _run_manager(data_dir, free_port(), wrapper=wrapper)
    _assert_one_line_error(exited, f"DATA_DIR={data_dir}", cause)
    assert _processes_mentioning(str(data_dir)) == []
