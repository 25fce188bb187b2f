"""A fork server: processors start as forks of one parent that has imported everything.

``python -m processor_image.forkserver <socket>`` imports the processor's web stack once, then
listens on a unix socket (in a 0700 directory of the manager's). Each request is one JSON line
``{"env": {...}, "log": "<path>"}``; the server forks, answers ``{"pid": <pid>}`` and the child

* starts its own session (``setsid``: its own process group, which the backend signals),
* sends stdin to ``/dev/null`` and stdout/stderr to ``log``,
* takes ``env`` as its environment, also as the kernel shows it (``/proc/<pid>/environ``, where
  the process backend reads its markers): the manager starts the server with a large padding
  variable so that its environment block, which every fork inherits, has room for the child's,
* runs ``python -m processor_image`` in-process, serving the app the server built for the
  body limit the manager gave it (``MAX_BODY_BYTES``), so that the app's objects, too, stay
  shared instead of being built again in each child.

Start-up is a fork instead of an interpreter that imports Litestar, uvicorn and the engine
(~0.4 s of CPU), and the imported code and data stay shared, copy-on-write, between all
children (``gc.freeze`` keeps the collector from touching those pages: the server's objects
stay frozen in every child, they are never garbage). Children are not the
manager's but the server's; it ignores ``SIGCHLD`` so the kernel reaps them at once (a child
that exited is simply gone from ``/proc``). The server exits with the manager that started
it (``PR_SET_PDEATHSIG``; it removes its socket and directory then, which a manager killed
with SIGKILL cannot), or when its socket is closed by ``close``; its children go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import sys
from pathlib import Path

from processor_image.unix_socket import listening_unix_socket

__all__ = ("main",)

_PR_SET_PDEATHSIG = 1


def _preload() -> None:
    """Import what every processor imports, so a fork has it already."""
    import processor_image.__main__
    import processor_image.storage.memory
    from processor_image.service.app import prebuild_app, serving_app
    from processor_image.service.config import DEFAULT_MAX_BODY_BYTES, ServiceConfig

    # Building one app (thrown away) runs the imports and caches Litestar does lazily.
    serving_app(ServiceConfig(processor_id="forkserver-warm-up", await_claim=True))
    # Processors with the manager's body limit (MAX_BODY_BYTES) serve one built here.
    prebuild_app(int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)))

    with contextlib.suppress(ImportError):  # pymongo: shared, not imported again per claim
        import processor_image.storage.mongodb  # noqa: F401
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401


def _rewrite_environ(env: dict[str, str]) -> None:
    """Make ``/proc/self/environ`` show ``env`` (the inherited block, overwritten in place)."""
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    start, end = int(fields[50 - 3]), int(fields[51 - 3])
    block = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    if len(block) > end - start:
        raise RuntimeError(f"environment of {len(block)} B does not fit in {end - start} B")
    os.environ.clear()  # C's environ must not point into the block while it changes
    ctypes.memmove(start, block.ljust(end - start, b"\0"), end - start)
    os.environ.update(env)


def _child(request: dict[str, object]) -> None:
    """In the fork: become the processor ``request`` describes; never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        env = {str(k): str(v) for k, v in dict(request["env"]).items()}  # type: ignore[call-overload]
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        _rewrite_environ(env)
        from processor_image.__main__ import main as serve

        code = serve()
    except BaseException as exc:  # the child must never return into the server's loop
        with contextlib.suppress(Exception):
            print(f"kato processor (fork): {exc!r}", file=sys.stderr, flush=True)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _clean_up_on_term(socket_path: Path) -> None:
    """On SIGTERM (the manager died, ``PR_SET_PDEATHSIG``), remove the socket and its directory.

    A manager killed with SIGKILL runs no code of its own, so its fork server removes what the
    manager made for it; the directory is the manager's private one and holds only the socket.
    A fork resets SIGTERM first thing; the pid check covers a signal in between.
    """
    server = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() == server:
            with contextlib.suppress(OSError):
                socket_path.unlink()
            with contextlib.suppress(OSError):
                socket_path.parent.rmdir()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)


def _serve(path: str) -> None:
    server = listening_unix_socket(path, 64)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        with connection:
            line = connection.makefile("rb").readline()
            if not line:
                continue
            try:
                request = json.loads(line)
            except ValueError:
                connection.sendall(b'{"error": "not JSON"}\n')
                continue
            pid = os.fork()
            if pid == 0:
                server.close()
                connection.close()
                _child(request)
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def main() -> int:
    """Preload, then serve forks on the socket named by the one argument."""
    if len(sys.argv) != 2:
        print("usage: python -m processor_image.forkserver <socket>", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    _clean_up_on_term(Path(sys.argv[1]))
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children at once
    _preload()
    gc.collect()
    gc.freeze()
    _serve(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
