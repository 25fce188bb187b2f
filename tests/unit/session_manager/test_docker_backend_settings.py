"""Docker backend settings that could never reach a processor are refused at start-up."""

from __future__ import annotations

import pytest

from session_manager.backends.docker import DockerBackend
from session_manager.settings import Settings, SettingsError


def test_neither_a_network_nor_loopback_publishing_is_a_settings_error() -> None:
    settings = Settings.from_env(
        {"BACKEND": "docker", "DOCKER_PUBLISH": "none", "ADMIN_TOKEN": "x" * 32}
    )
    with pytest.raises(SettingsError, match="DOCKER_NETWORK"):
        DockerBackend.from_settings(settings)
