import json
from pathlib import Path

import pytest

from session_manager.gateway.registry import RegistryError, StaticProcessor, load_static_processors


def test_yaml_file_and_environment_are_merged(tmp_path: Path) -> None:
    path = tmp_path / "processors.yaml"
    path.write_text("processors:\n  - {id: p1, name: First, url: 'http://127.0.0.1:9001/'}\n")
    found = load_static_processors(str(path), json.dumps({"p2": "http://127.0.0.1:9002"}))
    assert found == [
        StaticProcessor(id="p1", name="First", url="http://127.0.0.1:9001"),
        StaticProcessor(id="p2", name="p2", url="http://127.0.0.1:9002"),
    ]


def test_json_file_with_a_plain_list(tmp_path: Path) -> None:
    path = tmp_path / "processors.json"
    path.write_text(json.dumps([{"id": "a", "url": "https://kato.example:8000"}]))
    assert load_static_processors(str(path), None) == [
        StaticProcessor(id="a", name="a", url="https://kato.example:8000")
    ]


def test_nothing_configured_is_an_empty_registry() -> None:
    assert load_static_processors(None, None) == []


@pytest.mark.parametrize(
    ("file_text", "env", "message"),
    [
        (None, "{not json", "KATO_PROCESSORS is not valid JSON"),
        (None, '["http://x"]', "expected a JSON object"),
        (None, '{"bad id": "http://127.0.0.1:1"}', "must match"),
        (None, '{"p": "ftp://127.0.0.1"}', "must be an http"),
        (None, '{"kato-api": "http://127.0.0.1:1"}', "reserved"),
        ("- {id: p, url: 'http://127.0.0.1:1'}", '{"p": "http://127.0.0.1:2"}', "registered twice"),
        ("- {name: x}", None, "PROCESSORS_FILE entry 0"),
        ("{a: [", None, "not valid YAML/JSON"),
    ],
)
def test_configuration_mistakes_are_named(
    tmp_path: Path, file_text: str | None, env: str | None, message: str
) -> None:
    path = None
    if file_text is not None:
        path = tmp_path / "p.yaml"
        path.write_text(file_text)
    with pytest.raises(RegistryError, match=message):
        load_static_processors(str(path) if path else None, env)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="No such file"):
        load_static_processors(str(tmp_path / "absent.yaml"), None)
