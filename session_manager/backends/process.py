"""The ``process`` backend: each processor is a ``python -m processor_image`` child process.

Each processor listens on a free loopback port, in its own session and process group
(``start_new_session=True``) so that it outlives a manager restart, and writes its output to
``DATA_DIR/processors/<processor_id>.log``. Its environment carries two markers,
``KATO_MANAGER_ID`` and ``KATO_SESSION_ID``; they are the process backend's labels:
``list_owned`` finds this deployment's processors by reading ``/proc/<pid>/environ``, and
``stop``/``is_alive`` check them before trusting a pid, so a recycled pid is never killed.

Stop: SIGTERM to the process group, then SIGKILL after ``STOP_TIMEOUT_S``.

Memory: ``PROCESSOR_MEMORY_LIMIT`` becomes the processor's ``RLIMIT_DATA`` (set with
``prlimit`` right after the start, before it has read its first request). Since Linux 4.7 it
counts the heap and every private writable mapping (thread stacks too), not the shared
libraries and reservations ``RLIMIT_AS`` would, so it tracks what the processor can really
fill: an idle one uses ~70 MiB of it (~45 MiB resident). Over it an allocation fails, Python
raises ``MemoryError`` and the processor exits with ``EXIT_OUT_OF_MEMORY`` after writing
``OUT_OF_MEMORY_LINE``; ``exit_cause`` reads either back. It is a limit on what the process may
map, not a cgroup: page cache and kernel memory are not counted, and RSS stays below it.
CPU: not limited (``PROCESSOR_CPUS`` is docker's): a CPU share needs a cgroup, and a writable
delegated cgroup v2 with the ``cpu`` and ``memory`` controllers is not something the embedded
default can count on; ``RLIMIT_CPU`` counts CPU-seconds and would kill a busy processor.

Fork server (``PROCESS_SPAWN=fork``, issue 15): processors are forks of one parent that has
imported the processor's code (``process_forks``): a start costs a fork, not an interpreter
start-up, and the code pages stay shared. Markers, process groups and stopping are the same.

Warm pool (issue 15): a pool member's marker is its pool id; ``bind`` records the session it
is handed to (``process_bindings``), and every check above reads a member's session from there.

Crash detection: the backend watches each processor it started (``ExitWatcher``, a pidfd)
and hands one that exits without being stopped to the callback given to ``watch_exits`` (the
session's recovery starts at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from processor_image.contract import EXIT_OUT_OF_MEMORY, OUT_OF_MEMORY_LINE
from session_manager.backends.base import (
    OUT_OF_MEMORY,
    PROBE_TIMEOUT_S,
    ProcessorHandle,
    ProcessorSpec,
    is_pool_id,
)
from session_manager.backends.exit_watch import ExitWatcher
from session_manager.backends.process_bindings import Bindings
from session_manager.backends.process_forks import ForkedChild, ForkServer
from session_manager.backends.process_sockets import ProcessorSockets
from session_manager.errors import StartFailed
from session_manager.pids import pid_running, zombie
from session_manager.processor_client import ProcessorClient
from session_manager.settings import Settings

__all__ = ("MANAGER_MARKER", "SESSION_MARKER", "ProcessBackend")

log = logging.getLogger(__name__)

MANAGER_MARKER = "KATO_MANAGER_ID"
SESSION_MARKER = "KATO_SESSION_ID"

_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "TZ",
    "KATO_ENGINE_CORE",
)
"""The manager's variables a processor inherits; nothing else (no tokens, no REDIS_URL)."""

Child = subprocess.Popen[bytes] | ForkedChild
"""A processor this backend started: a child process, or a fork of the fork server."""

_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3
_POLL_S = 0.01
_EXITS_KEPT = 1024
"""Exit statuses of children remembered for ``exit_cause`` (the oldest are forgotten)."""
_EXIT_WAIT_S = 1.0
"""How long ``exit_cause`` waits for a child that is leaving to be gone."""
_MARKER_LINES = 3
"""How far from the end of its log a dead processor's ``OUT_OF_MEMORY_LINE`` is looked for."""


class ProcessBackend:
    """Processors as local child processes; the embedded default."""

    name = "process"

    def __init__(
        self,
        *,
        manager_id: str,
        log_dir: Path,
        start_timeout_s: float,
        stop_timeout_s: float,
        python: str = sys.executable,
        inherited_env: Mapping[str, str] | None = None,
        memory_limit_bytes: int = 0,
        spawn: Literal["exec", "fork"] = "exec",
        body_bytes: int | None = None,
        sockets: ProcessorSockets | None = None,
    ) -> None:
        self.manager_id = manager_id
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        source = os.environ if inherited_env is None else inherited_env
        self._inherited = {k: source[k] for k in _PASSTHROUGH if k in source}
        self.memory_limit_bytes = memory_limit_bytes
        self.sockets = sockets
        """Where processors listen on a unix socket too (``None``: TCP only)."""
        self._children: dict[int, Child] = {}
        self._exit_codes: dict[int, int] = {}
        self._forks = (
            ForkServer(
                python=python,
                env=self._inherited
                if body_bytes is None
                else {**self._inherited, "MAX_BODY_BYTES": str(body_bytes)},
            )
            if spawn == "fork"
            else None
        )
        """``PROCESS_SPAWN=fork``: processors are forks of one pre-imported parent (which
        builds their app ahead for ``body_bytes``, the manager's body limit)."""
        self._probe = ProcessorClient(read_timeout_s=PROBE_TIMEOUT_S)
        self.bindings = Bindings(log_dir / "bindings")
        """Warm-pool processors handed to sessions (their marker is their pool id)."""
        self._import_path = _import_path()
        self._exits = ExitWatcher(self._exited)
        self._watched: dict[int, ProcessorHandle] = {}
        self._on_exit: Callable[[ProcessorHandle], None] | None = None

    def watch_exits(self, on_exit: Callable[[ProcessorHandle], None]) -> None:
        """Call ``on_exit(handle)`` on the loop when a started processor exits unasked.

        A processor being stopped (``stop``) is not reported.
        """
        self._on_exit = on_exit

    def _exited(self, pid: int) -> None:
        handle = self._watched.pop(pid, None)
        child = self._children.get(pid)
        if child is not None:
            child.poll()  # reap it (no zombie left behind), keeping its status for exit_cause
            self._forget(pid)
        if handle is not None:
            self._remove_socket(handle.endpoint)
        if handle is not None and self._on_exit is not None:
            log.warning("processor exited unasked", extra={"pid": pid})
            self._on_exit(handle)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessBackend:
        """The backend for these settings (logs under ``DATA_DIR/processors``)."""
        return cls(
            manager_id=settings.manager_id,
            log_dir=Path(settings.data_dir) / "processors",
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
            memory_limit_bytes=settings.processor_memory_limit_bytes,
            spawn=settings.process_spawn,
            body_bytes=settings.max_proxy_body_bytes,
            sockets=ProcessorSockets.for_data_dir(Path(settings.data_dir))
            if settings.process_unix_sockets == "on"
            else None,
        )

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Start the processor and return once its ``/health`` names it; clean up on failure.

        A port another process grabbed between choosing and binding it is retried on a new
        port; any other failure kills what was started and raises ``StartFailed`` with the
        last lines of the processor's output in ``details["log_tail"]``.
        """
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs hold user data
        if self._forks is not None:
            self._forks.ensure_started()  # from the loop's thread: the server dies with it
        log_path = self.log_dir / f"{spec.processor_id}.log"
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            process = await self._spawned(spec, port, log_path)
            endpoint = f"http://127.0.0.1:{port}"
            try:
                reason = await self._wait_healthy(process, endpoint, spec.processor_id)
            except BaseException:  # cancelled mid-start: leave nothing behind
                await self._kill(process.pid, grace_s=0.5)
                raise
            if reason is None:
                handle = ProcessorHandle(
                    backend=self.name,
                    ref=str(process.pid),
                    endpoint=endpoint,
                    session_id=spec.session_id,
                )
                if self._exits.watch(process.pid):
                    self._watched[process.pid] = handle
                return handle
            await self._kill(process.pid, grace_s=0.5)
            tail = _tail(log_path)
            if attempt < _PORT_ATTEMPTS and any(
                "address already in use" in t.lower() for t in tail
            ):
                continue
            log_path.unlink(missing_ok=True)
            raise StartFailed(
                f"processor did not start: {reason}",
                processor_id=spec.processor_id,
                log_tail=tail,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _spawned(self, spec: ProcessorSpec, port: int, log_path: Path) -> Child:
        """``_spawn`` off the loop; cancelled meanwhile, the process it started is killed.

        The thread cannot be cancelled, so a cancellation waits for it and then removes what
        it started (as the docker backend does for a container being created).
        """
        spawn = asyncio.ensure_future(asyncio.to_thread(self._spawn, spec, port, log_path))
        try:
            return await asyncio.shield(spawn)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                started = await spawn
                await self._kill(started.pid, grace_s=0.5)
            raise

    def _spawn(self, spec: ProcessorSpec, port: int, log_path: Path) -> Child:
        env = {
            **self._inherited,
            **spec.env,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PYTHONUNBUFFERED": "1",
            MANAGER_MARKER: self.manager_id,
            SESSION_MARKER: spec.session_id,
        }
        if self.sockets is not None:
            env["UNIX_SOCKET"] = self.sockets.path(port)
        process: Child
        if self._forks is not None:
            process = self._forks.spawn(env, log_path)
        else:
            argv = [self.python, "-m", "processor_image"]
            if self.python == sys.executable:  # our own interpreter: skip ``site``, our path
                argv.insert(1, "-S")
                env["PYTHONPATH"] = self._import_path
            with log_path.open("ab") as output:
                process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        self._children[process.pid] = process
        self._exit_codes.pop(process.pid, None)  # a recycled pid: that old status is not its
        if self.memory_limit_bytes:
            limit = (self.memory_limit_bytes, self.memory_limit_bytes)
            with contextlib.suppress(ProcessLookupError):  # died at once: its start fails
                resource.prlimit(process.pid, resource.RLIMIT_DATA, limit)
        return process

    async def _wait_healthy(self, process: Child, endpoint: str, processor_id: str) -> str | None:
        """``None`` once ``/health`` answers for ``processor_id``; else why it never will."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = process.poll()
            if code is not None:
                return f"exited with code {code}"
            if await self._probe.is_ready(endpoint, processor_id):
                return None
            if time.monotonic() >= deadline:
                return f"not healthy within START_TIMEOUT_S={self.start_timeout_s:g}s"
            await asyncio.sleep(_POLL_S)

    async def stop(self, handle: ProcessorHandle) -> None:
        """SIGTERM the processor's group, SIGKILL after the grace; gone already is fine."""
        pid = _pid(handle)
        if pid is not None:  # an exit asked for: not a crash to report
            self._exits.forget(pid)
            self._watched.pop(pid, None)
        if pid is None or not self._owns(pid, handle.session_id):
            self._forget(pid or -1)
            return
        env = _environ(pid) or {}
        processor_id = env.get("PROCESSOR_ID")
        await self._kill(pid, grace_s=self.stop_timeout_s)
        self._remove_socket(handle.endpoint)
        if processor_id:
            (self.log_dir / f"{processor_id}.log").unlink(missing_ok=True)
        if is_pool_id(env.get(SESSION_MARKER)):
            self.bindings.forget(env[SESSION_MARKER])

    async def bind(self, handle: ProcessorHandle, session_id: str) -> ProcessorHandle:
        """Hand a warm-pool processor (``handle.session_id`` is its pool id) to a session.

        Returns the handle as the session knows it; ``stop``/``is_alive`` accept it from now on.
        A handle that is no pool member is a ``ValueError`` (``Bindings`` checks the id).
        """
        await asyncio.to_thread(self.bindings.bind, str(handle.session_id), session_id)
        bound = ProcessorHandle(
            backend=self.name, ref=handle.ref, endpoint=handle.endpoint, session_id=session_id
        )
        pid = _pid(bound)
        if pid is not None and pid in self._watched:  # its exit now concerns that session
            self._watched[pid] = bound
        return bound

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """Whether the pid still runs and is this manager's processor for that session."""
        pid = _pid(handle)
        return pid is not None and self._owns(pid, handle.session_id)

    async def list_owned(self) -> list[ProcessorHandle]:
        """Every running processor marked with this manager's id (children or not)."""
        return await asyncio.to_thread(self._scan)

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """``OUT_OF_MEMORY`` when the processor exited at its memory limit.

        Our own child's exit status says it; a fork server's child (its status is the
        server's) or a processor adopted after a manager restart (not our child) is read from
        the last lines of its log, for ``OUT_OF_MEMORY_LINE``.
        """
        pid = _pid(handle)
        if pid is None:
            return None
        child = self._children.get(pid)
        if child is not None:  # gone from /proc, its exit may take a moment to be seen
            deadline = time.monotonic() + _EXIT_WAIT_S
            while child.poll() is None:  # a Popen's poll reaps it and keeps its status
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(_POLL_S)
            self._forget(pid)
        elif self._owns(pid, handle.session_id):
            return None
        code = self._exit_codes.get(pid)
        if code is None:
            tail = await asyncio.to_thread(
                _tail, self.log_dir / f"{processor_id}.log", _MARKER_LINES
            )
            return OUT_OF_MEMORY if OUT_OF_MEMORY_LINE in tail else None
        return OUT_OF_MEMORY if code == EXIT_OUT_OF_MEMORY else None

    async def ping(self) -> bool:
        """The process table is always there."""
        return True

    async def close(self) -> None:
        """Close the readiness probe's client (and the fork server), stop watching exits.

        Processors keep running.
        """
        self._exits.close()
        self._watched.clear()
        await self._probe.aclose()
        if self._forks is not None:
            await asyncio.to_thread(self._forks.close)
        if self.sockets is not None:
            self.sockets.close()

    # -- processes --------------------------------------------------------------------------

    def _scan(self) -> list[ProcessorHandle]:
        handles = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            env = _environ(pid)
            if env is None or env.get(MANAGER_MARKER) != self.manager_id or zombie(pid):
                continue
            handles.append(
                ProcessorHandle(
                    backend=self.name,
                    ref=str(pid),
                    endpoint=f"http://127.0.0.1:{env.get('PORT', '')}",
                    session_id=self._session_of(env),
                )
            )
        return handles

    def _owns(self, pid: int, session_id: str | None) -> bool:
        """Pid runs, is not a zombie, and carries our manager (and session) marker."""
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            self._forget(pid)
            return False
        env = _environ(pid)
        if env is None or env.get(MANAGER_MARKER) != self.manager_id or zombie(pid):
            return False
        return session_id is None or self._session_of(env) == session_id

    def _session_of(self, env: Mapping[str, str]) -> str | None:
        """A processor's session: its marker, or the session a pooled one was bound to."""
        marker = env.get(SESSION_MARKER)
        if is_pool_id(marker):
            return self.bindings.session_of(str(marker)) or marker
        return marker

    async def _kill(self, pid: int, *, grace_s: float) -> None:
        """SIGTERM the group, wait ``grace_s``, SIGKILL, wait until it is gone (and reaped)."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait_s
            while self._running(pid):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(_POLL_S)
            else:
                self._forget(pid)
                return
        log.warning("processor survived SIGKILL", extra={"pid": pid})

    def _remove_socket(self, endpoint: str) -> None:
        """Remove a killed processor's socket (a later processor on its port would replace it).

        Until then the directory would keep it.
        """
        port = endpoint.rpartition(":")[2]
        if self.sockets is not None and port.isdigit():
            with contextlib.suppress(OSError):
                self.sockets.remove(int(port))

    def _running(self, pid: int) -> bool:
        return pid_running(pid, self._children.get(pid))

    def _forget(self, pid: int) -> None:
        """Drop an exited child, remembering its exit status for ``exit_cause``."""
        child = self._children.pop(pid, None)
        if child is None or child.returncode is None:
            return
        self._exit_codes[pid] = child.returncode
        if len(self._exit_codes) > _EXITS_KEPT:
            del self._exit_codes[next(iter(self._exit_codes))]


def _import_path() -> str:
    """The manager's module search path, as ``PYTHONPATH`` for a processor run with ``-S``.

    ``-S`` skips the ``site`` module (the ``.pth`` files of the virtualenv, an editable
    install's finder): about a sixth of a processor's start. The processor then finds the
    same packages through this path, with the directory holding ``processor_image`` first.
    """
    spec = importlib.util.find_spec("processor_image")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    roots = [str(Path(location).parent) for location in locations]
    found = [entry for entry in sys.path if entry and os.path.exists(entry)]
    return os.pathsep.join(dict.fromkeys([*roots, *found]))


def _pid(handle: ProcessorHandle) -> int | None:
    return int(handle.ref) if handle.ref.isdigit() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environ(pid: int) -> dict[str, str] | None:
    """A process's environment, or ``None`` when it is gone or not ours to read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open("rb") as handle:
            return [line.decode(errors="replace").rstrip() for line in deque(handle, maxlen=lines)]
    except OSError:
        return []
