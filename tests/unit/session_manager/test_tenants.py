"""The API key registry: keys kept only as hashes, found in constant time, mistakes named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from session_manager.sessions.tokens import hash_token
from session_manager.settings import Settings, SettingsError
from session_manager.tenants import Tenants

KEY = "a-key-of-tenant-acme-0123456789"


def settings(**env: str) -> Settings:
    return Settings.from_env({"ADMIN_TOKEN": "x" * 20, **env})


def test_without_keys_one_is_generated_for_the_default_tenant_with_both_scopes() -> None:
    configured = settings()
    assert len(configured.generated_api_key) >= 32
    assert settings().generated_api_key != configured.generated_api_key
    tenants = Tenants.from_settings(configured)
    key = tenants.find(configured.generated_api_key)
    assert key is not None
    assert key.tenant.name == "default"
    assert key.scopes == {"sessions:create", "admin"}
    assert not settings(API_KEYS=json.dumps({"keys": []})).generated_api_key


def test_plain_keys_are_hashed_at_load_and_quotas_default_to_the_global_limits() -> None:
    document = {
        "tenants": {"acme": {"max_sessions": 7}},
        "keys": [{"tenant": "acme", "scopes": ["sessions:create"], "key": KEY}],
    }
    tenants = Tenants.from_settings(
        settings(API_KEYS=json.dumps(document), MAX_SESSIONS_PER_USER="3")
    )
    (key,) = tenants.keys
    assert key.key_hash == hash_token(KEY)
    assert KEY not in repr(tenants.keys)
    assert tenants.find(KEY) == key
    assert tenants.find(KEY + "x") is None
    assert (key.tenant.max_sessions, key.tenant.max_sessions_per_user) == (7, 3)


def test_a_yaml_file_with_hashes_is_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        f"keys:\n  - tenant: acme\n    scopes: [admin]\n    sha256: {hash_token(KEY).upper()}\n"
    )
    key = Tenants.from_settings(settings(API_KEYS_FILE=str(path))).find(KEY)
    assert key is not None
    assert key.allows("admin")
    assert not key.allows("sessions:create")


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"tenant": "acme", "scopes": ["admin"]}, "exactly one of sha256 and key"),
        ({"tenant": "acme", "scopes": ["admin"], "key": "short"}, "at least 16"),
        ({"tenant": "acme", "scopes": ["admin"], "sha256": "abc"}, "64 hex digits"),
        ({"tenant": "acme", "scopes": ["root"], "key": KEY}, "scopes"),
        ({"tenant": "a:b", "scopes": ["admin"], "key": KEY}, "tenant"),
    ],
)
def test_a_bad_key_entry_is_a_settings_error_that_never_quotes_a_key(
    entry: dict[str, object], named: str
) -> None:
    with pytest.raises(SettingsError, match=named) as caught:
        Tenants.from_settings(settings(API_KEYS=json.dumps({"keys": [entry]})))
    assert KEY not in str(caught.value)


def test_the_same_key_twice_and_both_sources_are_refused(tmp_path: Path) -> None:
    entry = {"tenant": "acme", "scopes": ["admin"], "key": KEY}
    with pytest.raises(SettingsError, match="twice"):
        Tenants.from_settings(settings(API_KEYS=json.dumps({"keys": [entry, entry]})))
    with pytest.raises(SettingsError, match="not both"):
        settings(API_KEYS="{}", API_KEYS_FILE=str(tmp_path / "k.yaml"))
    with pytest.raises(SettingsError, match="not valid YAML/JSON") as caught:
        Tenants.from_settings(settings(API_KEYS=f"keys: [{KEY}"))
    assert KEY not in str(caught.value)


def _with_memory(max_memory_mb: int, limit: str) -> Settings:
    document = {
        "tenants": {"acme": {"max_memory_mb": max_memory_mb}},
        "keys": [{"tenant": "acme", "scopes": ["sessions:create"], "key": KEY}],
    }
    return settings(API_KEYS=json.dumps(document), PROCESSOR_MEMORY_LIMIT=limit)


def test_a_memory_quota_is_a_number_of_sessions_of_the_processor_limit() -> None:
    (key,) = Tenants.from_settings(_with_memory(1000, "256m")).keys
    assert key.tenant.max_memory_mb == 1000
    assert key.tenant.sessions_within_memory(256 * 1024 * 1024) == 3


@pytest.mark.parametrize(
    ("max_memory_mb", "limit", "problem"),
    [(1000, "0", "needs PROCESSOR_MEMORY_LIMIT"), (100, "256m", "below one session's")],
)
def test_a_memory_quota_that_cannot_work_is_refused_at_start(
    max_memory_mb: int, limit: str, problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        Tenants.from_settings(_with_memory(max_memory_mb, limit))
