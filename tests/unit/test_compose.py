"""compose.yaml stays consistent with the settings and with the loopback-only port rule."""

from pathlib import Path

import msgspec
import yaml

from session_manager.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    data: dict = yaml.safe_load((ROOT / "compose.yaml").read_text())  # type: ignore[type-arg]
    return data


def test_every_published_port_is_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_manager_variables_are_settings_the_manager_reads() -> None:
    fields = {field.name.upper() for field in msgspec.structs.fields(Settings)}
    manager = compose()["services"]["manager"]
    assert set(manager["environment"]) <= fields
    assert manager["environment"]["BACKEND"] == "docker"
    assert manager["environment"]["DOCKER_NETWORK"] == compose()["networks"]["kato"]["name"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in manager["volumes"]


def test_processor_image_is_built_but_never_run() -> None:
    processor = compose()["services"]["processor"]
    assert processor["profiles"] == ["build"]
    assert processor["image"] == Settings().docker_image
