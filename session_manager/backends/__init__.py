"""Backends: where processors run; ``make_backend`` picks the one ``BACKEND`` names.

Each backend module exposes a class with ``from_settings(settings) -> Backend``:
``process.ProcessBackend``, ``docker.DockerBackend``, ``swarm.SwarmBackend``,
``static.StaticBackend``. Modules are imported only when chosen, so the ``process`` default
needs no Docker SDK.
"""

from __future__ import annotations

import importlib

from session_manager.backends.base import Backend
from session_manager.settings import Settings, SettingsError

__all__ = ("make_backend",)

_BACKENDS = {
    "process": ("session_manager.backends.process", "ProcessBackend"),
    "docker": ("session_manager.backends.docker", "DockerBackend"),
    "swarm": ("session_manager.backends.swarm", "SwarmBackend"),
    "static": ("session_manager.backends.static", "StaticBackend"),
}


def make_backend(settings: Settings) -> Backend:
    """The backend for ``settings.backend``, built from the settings.

    ``settings.manager_id`` must be resolved (``MANAGER_ID`` or the deployment id): an empty
    one would mark processors no deployment can tell apart.
    """
    if not settings.manager_id:
        raise SettingsError("no manager id: MANAGER_ID unset and no deployment id read")
    module_name, class_name = _BACKENDS[settings.backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise SettingsError(f"BACKEND={settings.backend} is not available in this build") from exc
    backend: Backend = getattr(module, class_name).from_settings(settings)
    return backend
