"""Static processors from ``PROCESSORS_FILE`` (YAML or JSON) and ``KATO_PROCESSORS`` (JSON).

Configuration mistakes are start-up errors with the offending entry named, never a
half-registered gateway.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

__all__ = ("RegistryError", "StaticProcessor", "load_static_processors")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED_IDS = frozenset({"kato-api", "connect"})  # the legacy gateway's root routes


class RegistryError(ValueError):
    """The static processor configuration cannot be used."""


class StaticProcessor(msgspec.Struct, frozen=True, kw_only=True):
    """One registered processor: its id (the routing key), a display name and its base URL."""

    id: str
    url: str
    name: str = ""
    classifier: str = "CVC"
    """The node kind the older gateway's ``GET /connect`` reported (its genome's nodes had one)."""


def load_static_processors(
    processors_file: str | None, kato_processors: str | None
) -> list[StaticProcessor]:
    """Every configured processor; ids are unique across both sources."""
    entries: list[StaticProcessor] = []
    if processors_file:
        entries.extend(_from_file(Path(processors_file)))
    if kato_processors:
        entries.extend(_from_env(kato_processors))
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise RegistryError(f"processor id {entry.id!r} is registered twice")
        seen.add(entry.id)
    return entries


def _from_file(path: Path) -> list[StaticProcessor]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RegistryError(f"PROCESSORS_FILE {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RegistryError(f"PROCESSORS_FILE {path} is not valid YAML/JSON: {exc}") from exc
    if isinstance(data, dict) and "processors" in data:
        data = data["processors"]
    if not isinstance(data, list):
        raise RegistryError(f"PROCESSORS_FILE {path}: expected a list of {{id, name, url}}")
    return [_entry(item, f"PROCESSORS_FILE entry {n}") for n, item in enumerate(data)]


def _from_env(raw: str) -> list[StaticProcessor]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"KATO_PROCESSORS is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError("KATO_PROCESSORS: expected a JSON object of id -> url")
    return [
        _entry({"id": key, "url": value, "name": key}, f"KATO_PROCESSORS[{key!r}]")
        for key, value in data.items()
    ]


def _entry(item: Any, where: str) -> StaticProcessor:
    if not isinstance(item, dict):
        raise RegistryError(f"{where}: expected an object with id and url")
    try:
        entry = msgspec.convert(item, StaticProcessor)
    except msgspec.ValidationError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    if not _ID.match(entry.id):
        raise RegistryError(f"{where}: id {entry.id!r} must match {_ID.pattern}")
    if entry.id in _RESERVED_IDS:
        raise RegistryError(f"{where}: id {entry.id!r} is reserved for the legacy gateway's routes")
    parts = urlsplit(entry.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"{where}: url {entry.url!r} must be an http(s) URL")
    return msgspec.structs.replace(entry, url=entry.url.rstrip("/"), name=entry.name or entry.id)
