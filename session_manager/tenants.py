"""Application API keys and their tenants: who may create sessions or administer, within what.

One document, from ``API_KEYS`` or the file ``API_KEYS_FILE`` (YAML or JSON)::

    tenants:                        # optional: a tenant not listed gets the global limits
      acme: {max_sessions: 100, max_sessions_per_user: 5, max_memory_mb: 4096}
    keys:
      - tenant: acme
        scopes: [sessions:create]   # an app backend creating sessions for its users
        sha256: 9f86d08188...       # hex SHA-256 of the key (nothing secret in the config), or
      - tenant: acme
        scopes: [admin]             # /admin, limited to acme's sessions
        key: a-long-random-key      # the key itself, hashed at load and then forgotten

Only SHA-256 hashes are kept; a presented key is hashed and compared with every configured
hash in constant time (``sessions.tokens``). With no document at all the settings carry one
generated key (tenant ``default``, both scopes), printed at start-up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from session_manager.models import DEFAULT_TENANT, Tenant
from session_manager.sessions.tokens import hash_token, same_secret
from session_manager.settings import Settings, SettingsError

__all__ = ("ADMIN", "CREATE", "ApiKey", "Scope", "Tenants")

Scope = Literal["sessions:create", "admin"]
CREATE: Scope = "sessions:create"
ADMIN: Scope = "admin"

TenantName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
"""Letters, digits, ``_``, ``-``: never a ``:`` or a space (Redis keys and owner values rely on
it)."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MIN_KEY_LENGTH = 16


class _Quota(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_sessions: Annotated[int, Meta(ge=1)] | None = None
    max_sessions_per_user: Annotated[int, Meta(ge=1)] | None = None
    max_memory_mb: Annotated[int, Meta(ge=1)] | None = None
    """Sum of the memory limits (``PROCESSOR_MEMORY_LIMIT`` each) of the tenant's sessions."""


class _KeyEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tenant: TenantName
    scopes: Annotated[list[Scope], Meta(min_length=1)]
    sha256: str | None = None
    key: str | None = None


class _Document(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keys: list[_KeyEntry]
    tenants: dict[TenantName, _Quota] = {}


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """One configured key: its hash, its tenant and what it may do."""

    key_hash: str
    tenant: Tenant
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        """Whether the key carries ``scope``."""
        return scope in self.scopes


class Tenants:
    """The configured keys; ``default`` is the tenant of trusted key-less creates."""

    def __init__(self, keys: list[ApiKey], default: Tenant) -> None:
        self.keys = keys
        self.default = default

    @classmethod
    def from_settings(cls, settings: Settings) -> Tenants:
        """The keys of ``API_KEYS``/``API_KEYS_FILE``, or the generated one.

        Raises ``SettingsError`` naming what is wrong with the document (never a key).
        """
        if settings.api_keys_file:
            source = f"API_KEYS_FILE {settings.api_keys_file}"
            document = _read_file(Path(settings.api_keys_file), source)
        elif settings.api_keys:
            source = "API_KEYS"
            document = _parse(settings.api_keys, source, as_json=False)
        else:
            source = "generated key"
            document = {
                "keys": [
                    {
                        "tenant": DEFAULT_TENANT,
                        "scopes": [CREATE, ADMIN],
                        "key": settings.generated_api_key,
                    }
                ]
            }
        try:
            parsed = msgspec.convert(document, _Document)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"{source}: {exc}") from exc
        _check_memory_quotas(parsed, settings, source)
        return cls(_keys(parsed, settings, source), _tenant(DEFAULT_TENANT, parsed, settings))

    def find(self, key: str) -> ApiKey | None:
        """The configured key ``key`` is, or ``None``; every hash is compared, in constant time."""
        given = hash_token(key)
        found: ApiKey | None = None
        for candidate in self.keys:
            if same_secret(given, candidate.key_hash):
                found = candidate
        return found


def _read_file(path: Path, source: str) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"{source}: {exc.strerror}") from exc
    return _parse(text, source, as_json=path.suffix == ".json")


def _parse(text: str, source: str, *, as_json: bool) -> Any:
    """YAML (JSON is YAML too); errors never quote the text, which may hold keys."""
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
    raise SettingsError(f"{source} is not valid YAML/JSON (at {where})")


def _tenant(name: str, document: _Document, settings: Settings) -> Tenant:
    quota = document.tenants.get(name, _Quota())
    return Tenant(
        name=name,
        max_sessions=quota.max_sessions or settings.max_sessions,
        max_sessions_per_user=quota.max_sessions_per_user or settings.max_sessions_per_user,
        max_memory_mb=quota.max_memory_mb,
    )


def _check_memory_quotas(document: _Document, settings: Settings, source: str) -> None:
    """A memory quota needs a per-processor limit, and room for at least one session."""
    per_session = settings.processor_memory_limit_bytes
    for name, quota in document.tenants.items():
        if quota.max_memory_mb is None:
            continue
        where = f"{source}: tenants.{name}.max_memory_mb"
        if per_session <= 0:
            raise SettingsError(f"{where} needs PROCESSOR_MEMORY_LIMIT (it is 0: no limit)")
        if quota.max_memory_mb * 1024 * 1024 < per_session:
            raise SettingsError(
                f"{where} ({quota.max_memory_mb}) is below one session's "
                f"PROCESSOR_MEMORY_LIMIT ({settings.processor_memory_limit})"
            )


def _keys(document: _Document, settings: Settings, source: str) -> list[ApiKey]:
    keys: list[ApiKey] = []
    for n, entry in enumerate(document.keys):
        where = f"{source}: keys[{n}] (tenant {entry.tenant})"
        if entry.sha256 is not None and entry.key is None:
            key_hash = entry.sha256.lower()
            if not _SHA256.match(key_hash):
                raise SettingsError(f"{where}: sha256 must be 64 hex digits")
        elif entry.key is not None and entry.sha256 is None:
            if len(entry.key) < _MIN_KEY_LENGTH:
                raise SettingsError(f"{where}: a key must be at least {_MIN_KEY_LENGTH} characters")
            key_hash = hash_token(entry.key)
        else:
            raise SettingsError(f"{where}: give exactly one of sha256 and key")
        if any(known.key_hash == key_hash for known in keys):
            raise SettingsError(f"{where}: the same key is configured twice")
        keys.append(
            ApiKey(
                key_hash=key_hash,
                tenant=_tenant(entry.tenant, document, settings),
                scopes=frozenset(entry.scopes),
            )
        )
    return keys
