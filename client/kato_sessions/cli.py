"""``kato-sessions``: start the manager, list, inspect, keep alive and remove sessions, stats.

The manager's URL comes from ``--url`` or ``KATO_SESSIONS_URL`` (default
``http://127.0.0.1:8080``), the credential from ``--token`` or ``KATO_SESSIONS_TOKEN``: the
admin token (``ADMIN_TOKEN``), or an API key with scope ``admin`` for its own tenant's
sessions (``stats``, ``reap`` and ``processors`` take the admin token only). Every command
prints a table, or JSON with ``--json``. Exit status: 0, 1 when the service refused (the
error code on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import msgspec

from kato_sessions._calls import DEFAULT_URL, ENV_TOKEN, ENV_URL
from kato_sessions.errors import KatoError
from kato_sessions.models import AdminSession, ProcessorHealth, ReapReport, Stats
from kato_sessions.sync import Client

__all__ = ("main",)

_SERVER_MISSING = (
    "kato-sessions serve needs the server (the session_manager package) installed beside "
    "the client: in the repository, `make run` (or pip install '.[manager]' ./client)\n"
)
_STATUSES = ("starting", "ready", "hibernating", "hibernated", "terminating")


class _Progress:
    """``label done/total`` rewritten in place on stderr, for commands that take a while.

    Shown when stderr is a terminal, or with ``--progress``; never on stdout (pipes stay clean).
    """

    def __init__(self, label: str, total: int | None, *, shown: bool, out: TextIO) -> None:
        self.label, self.total, self.shown, self.out = label, total, shown, out
        self.done = 0

    def step(self) -> None:
        self.done += 1
        if self.shown:
            of = f"/{self.total}" if self.total is not None else ""
            self.out.write(f"\r{self.label} {self.done}{of}")
            self.out.flush()

    def finish(self) -> None:
        if self.shown and self.done:
            self.out.write("\n")
            self.out.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; headers upper-case."""
    cells = [[h.upper() for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _when(iso: str | None) -> str:
    """An ISO-8601 UTC timestamp as ``YYYY-MM-DD HH:MM:SS`` (``-`` for none)."""
    return iso[:19].replace("T", " ") if iso else "-"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _genes(genes: dict[str, Any]) -> str:
    return " ".join(f"{k}={_json(v).strip()}" for k, v in sorted(genes.items())) or "-"


def _json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n"


# -- commands ------------------------------------------------------------------------------------


def _serve(err: TextIO) -> int:
    """What ``python -m session_manager`` does (settings from the environment)."""
    try:
        from session_manager.__main__ import main as serve
    except ImportError as exc:
        err.write(f"{_SERVER_MISSING}({exc})\n")
        return 1
    return serve()


def _ls(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    progress = _Progress("listed", None, shown=args.progress, out=err)
    found: list[AdminSession] = []
    for session in client.iter_sessions(
        status=args.status,
        user_id=args.user,
        label=args.label,
        tenant=args.tenant,
        page_size=min(args.limit or 500, 500),
    ):
        found.append(session)
        progress.step()
        if args.limit and len(found) >= args.limit:
            break
    progress.finish()
    if args.json:
        out.write(_json(found))
        return 0
    if not found:
        out.write("no sessions\n")
        return 0
    out.write(
        table(
            ("session", "tenant", "user", "status", "kb", "created", "idle expires", "labels"),
            (
                (
                    s.session_id,
                    s.tenant,
                    s.user_id,
                    s.status,
                    s.kb_id,
                    _when(s.created_at),
                    _when(s.idle_expires_at),
                    _labels(s.labels),
                )
                for s in found
            ),
        )
    )
    return 0


def _show(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    s = client.inspect(args.session_id, live_genes=args.live_genes)
    if args.json:
        out.write(_json(s))
        return 0
    rows = [
        ("session", s.session_id),
        ("tenant", s.tenant),
        ("user", s.user_id),
        ("status", f"{s.status} (since {_when(s.status_changed_at)})"),
        ("kb", s.kb_id),
        ("processor", s.processor_id),
        ("backend", f"{s.backend} {s.ref}".strip()),
        ("endpoint", s.endpoint or "-"),
        ("created", _when(s.created_at)),
        ("last activity", _when(s.last_activity)),
        ("idle expires", f"{_when(s.idle_expires_at)} (idle timeout {s.idle_timeout_s} s)"),
        ("expires", f"{_when(s.expires_at)} (max age {s.max_age_s} s)"),
        ("labels", _labels(s.labels)),
        ("genes", _genes(s.genes)),
    ]
    if s.live_genes is not None:
        rows.append(("live genes", _genes(s.live_genes)))
    if s.last_event:
        rows.append(("last event", f"{s.last_event} at {_when(s.last_event_at)}"))
    if s.out_of_memory_count:
        rows.append(("out of memory", str(s.out_of_memory_count)))
    out.write("".join(f"{k + ':':<15}{v}\n" for k, v in rows))
    return 0


def _each(
    args: argparse.Namespace,
    client: Client,
    err: TextIO,
    label: str,
    act: Callable[[str], Any],
) -> tuple[list[tuple[str, Any]], list[tuple[str, KatoError]]]:
    """Apply ``act`` to the ids given (or, with ``--all``, every session the filters match)."""
    ids: list[str] = list(args.session_ids)
    if args.all:
        ids += [
            s.session_id
            for s in client.iter_sessions(
                status=args.status, user_id=args.user, label=args.label, tenant=args.tenant
            )
        ]
    progress = _Progress(label, len(ids), shown=args.progress, out=err)
    done: list[tuple[str, Any]] = []
    failed: list[tuple[str, KatoError]] = []
    for session_id in ids:
        try:
            done.append((session_id, act(session_id)))
        except KatoError as exc:
            failed.append((session_id, exc))
        progress.step()
    progress.finish()
    return done, failed


def _report_failed(failed: list[tuple[str, KatoError]], err: TextIO) -> int:
    for session_id, exc in failed:
        err.write(f"kato-sessions: {session_id}: {exc}\n")
    return 1 if failed else 0


def _rm(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    done, failed = _each(args, client, err, "removed", client.remove)
    if args.json:
        out.write(_json({"removed": [i for i, _ in done], "failed": _failures(failed)}))
    else:
        out.write("".join(f"removed {session_id}\n" for session_id, _ in done))
        if not done and not failed:
            out.write("no sessions\n")
    return _report_failed(failed, err)


def _failures(failed: list[tuple[str, KatoError]]) -> dict[str, str]:
    return {session_id: exc.code for session_id, exc in failed}


def _keepalive(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    done, failed = _each(args, client, err, "kept alive", client.keepalive)
    if args.json:
        out.write(_json({"kept_alive": [r for _, r in done], "failed": _failures(failed)}))
    elif done:
        out.write(
            table(
                ("session", "status", "last activity", "idle expires"),
                ((i, r.status, _when(r.last_activity), _when(r.idle_expires_at)) for i, r in done),
            )
        )
    return _report_failed(failed, err)


def _reap(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    if args.progress:
        err.write("reaping…\n")
    report: ReapReport = client.reap()
    if args.json:
        out.write(_json(report))
        return 0
    rows = [
        ("examined", str(report.examined)),
        ("hibernated", _count_ids(report.hibernated)),
        *((f"ended ({reason})", _count_ids(ids)) for reason, ids in sorted(report.ended.items())),
        ("skipped", str(report.skipped)),
        ("failed", _count_ids(sorted(report.failed))),
        ("duration", f"{report.duration_ms:.0f} ms"),
    ]
    out.write("".join(f"{k + ':':<16}{v}\n" for k, v in rows))
    return 0


def _count_ids(ids: Sequence[str]) -> str:
    return f"{len(ids)}" + (f"  {' '.join(ids)}" if ids else "")


def _stats(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    stats: Stats = client.stats()
    if args.json:
        out.write(_json(stats))
        return 0
    by_status = {status: stats.sessions_by_status.get(status, 0) for status in _STATUSES}
    by_status.update(stats.sessions_by_status)
    c, snap = stats.capacity, stats.snapshots
    out.write(f"manager {stats.manager_id}, backend {stats.backend}, reap: {stats.reap_action}\n\n")
    counts = [(status, str(n)) for status, n in by_status.items()]
    out.write(table(("status", "sessions"), [*counts, ("total", str(stats.total))]))
    out.write("\n")
    capacity = [
        ("sessions", f"{c.used} of {c.max_sessions} ({c.left} left)"),
        ("per user", str(c.max_sessions_per_user)),
        ("starts", f"{c.starts_in_progress} of {c.max_concurrent_starts} in progress"),
        ("snapshots", f"{snap.count} ({snap.bytes} bytes, {snap.average_bytes} on average)"),
    ]
    if (pool := stats.warm_pool) is not None:
        capacity.append(
            (
                "warm pool",
                f"{pool.ready} ready of {pool.target} ({pool.refilling} starting); "
                f"claims {pool.hits} hit, {pool.misses} missed",
            )
        )
    out.write("".join(f"{k + ':':<11}{v}\n" for k, v in capacity))
    return 0


def _processors(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    found: list[ProcessorHealth] = client.processors()
    if args.json:
        out.write(_json(found))
        return 0
    if not found:
        out.write("no static processors (gateway mode is off)\n")
        return 0
    out.write(
        table(
            ("id", "name", "url", "healthy", "latency", "error"),
            (
                (
                    p.id,
                    p.name,
                    p.url,
                    "yes" if p.healthy else "no",
                    f"{p.latency_ms:.1f} ms" if p.latency_ms is not None else "-",
                    p.error or "-",
                )
                for p in found
            ),
        )
    )
    return 0


# -- arguments -----------------------------------------------------------------------------------

Command = Callable[[argparse.Namespace, Client, TextIO, TextIO], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kato-sessions",
        description="Run and administer a kato-sessions session manager.",
        epilog=f"Environment: {ENV_URL} (default {DEFAULT_URL}), {ENV_TOKEN} (admin token).",
    )
    parser.add_argument("--url", help=f"the manager's base URL (default: ${ENV_URL})")
    parser.add_argument("--token", help=f"admin token or admin API key (default: ${ENV_TOKEN})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--status", choices=_STATUSES, help="only sessions in this status")
    filters.add_argument("--user", help="only this user's sessions (user_id)")
    filters.add_argument("--label", metavar="KEY:VALUE", help="only sessions with this label")
    filters.add_argument("--tenant", help="only this tenant's sessions")

    serve = commands.add_parser("serve", help="start the session manager (settings: environment)")
    serve.set_defaults(run=None)

    sessions = commands.add_parser("sessions", help="list, show, keep alive, remove sessions")
    verbs = sessions.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("ls", parents=[output, filters], help="list live sessions")
    ls.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    ls.set_defaults(run=_ls)
    show = verbs.add_parser("show", parents=[output], help="one session in detail")
    show.add_argument("session_id")
    show.add_argument("--live-genes", action="store_true", help="read genes from the processor")
    show.set_defaults(run=_show)
    for name, run, what in (
        ("rm", _rm, "end sessions (reason: deleted)"),
        ("keepalive", _keepalive, "push sessions' idle deadlines forward"),
    ):
        verb = verbs.add_parser(name, parents=[output, filters], help=what)
        verb.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
        verb.add_argument(
            "--all", action="store_true", help="every session the filters match (or every one)"
        )
        verb.set_defaults(run=run)

    for name, run, what in (
        ("reap", _reap, "run a reaper pass now and show what it did"),
        ("stats", _stats, "sessions by status, capacity, snapshots, warm pool"),
        ("processors", _processors, "static processors of gateway mode and their health"),
    ):
        commands.add_parser(name, parents=[output], help=what).set_defaults(run=run)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command; the exit status (0 done, 1 refused by the service, 2 usage)."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    wants_ids = args.command == "sessions" and args.verb in ("rm", "keepalive")
    if wants_ids and not args.session_ids and not args.all:
        parser.error(f"sessions {args.verb}: give session ids, or --all")
    run: Command | None = args.run
    if run is None:
        return _serve(err)
    with Client(args.url, api_key=args.token, timeout_s=args.timeout) as client:
        if client.admin_token is None:
            err.write(f"kato-sessions: no token: give --token or set {ENV_TOKEN}\n")
            return 2
        try:
            return run(args, client, out, err)
        except KatoError as exc:
            err.write(f"kato-sessions: {exc}\n")
            return 1
