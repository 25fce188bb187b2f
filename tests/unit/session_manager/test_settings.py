"""Settings.from_env: the embedded default, conversions, and start-up errors naming variables."""

from __future__ import annotations

import pytest

from session_manager.settings import Settings, SettingsError


def test_no_variables_give_the_embedded_default() -> None:
    settings = Settings.from_env({"HOME": "/home/x"})
    assert settings.redis_url is None
    assert settings.backend == "process"
    assert settings.processor_storage == "memory"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.data_dir == "/home/x/.local/share/kato-sessions"
    assert settings.manager_id == ""  # the deployment id stored in Redis, read at start
    assert settings.public_base_url() == "http://127.0.0.1:8080"


def test_admin_token_is_generated_only_when_unset() -> None:
    generated = Settings.from_env({})
    assert generated.admin_token_generated
    assert len(generated.admin_token) >= 32
    assert Settings.from_env({}).admin_token != generated.admin_token
    given = Settings.from_env({"ADMIN_TOKEN": "x" * 20})
    assert given.admin_token == "x" * 20
    assert not given.admin_token_generated


def test_values_are_converted_and_empty_variables_count_as_unset() -> None:
    settings = Settings.from_env(
        {
            "LISTEN_PORT": "9000",
            "START_TIMEOUT_S": "2.5",
            "SESSION_AUTH": "none",
            "LOG_LEVEL": "debug",
            "REDIS_URL": "",
            "XDG_DATA_HOME": "/data",
        }
    )
    assert settings.listen_port == 9000
    assert settings.start_timeout_s == 2.5
    assert settings.session_auth == "none"
    assert settings.log_level == "DEBUG"
    assert settings.redis_url is None
    assert settings.data_dir == "/data/kato-sessions"


@pytest.mark.parametrize(
    ("env", "action"),
    [
        ({}, "hibernate"),  # make run: nothing may keep running behind a laptop's Ctrl-C
        ({"REDIS_URL": "redis://redis:6379/0"}, "keep"),
        ({"BACKEND": "docker", "REDIS_URL": "redis://redis:6379/0"}, "keep"),
        ({"BACKEND": "swarm"}, "keep"),  # a rolling restart must not interrupt users
        ({"BACKEND": "docker", "SHUTDOWN_ACTION": "delete"}, "delete"),
        ({"SHUTDOWN_ACTION": "keep"}, "keep"),
    ],
)
def test_the_shutdown_action_unset_follows_the_deployment(env: dict[str, str], action: str) -> None:
    assert Settings.from_env(env).effective_shutdown_action == action


def test_an_unknown_shutdown_action_is_named() -> None:
    with pytest.raises(SettingsError, match="SHUTDOWN_ACTION='stop'"):
        Settings.from_env({"SHUTDOWN_ACTION": "stop"})


def test_every_bad_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LISTEN_PORT": "eighty", "BACKEND": "k8s", "MAX_SESSIONS": "0"})
    message = str(caught.value)
    assert "LISTEN_PORT='eighty'" in message
    assert "BACKEND='k8s'" in message
    assert "MAX_SESSIONS='0'" in message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PROCESSOR_STORAGE": "mongodb"}, "MONGO_URL"),
        ({"BACKEND": "static"}, "PROCESSORS_FILE"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN"),
        ({"IDLE_TIMEOUT_S": "100", "MAX_AGE_S": "50"}, "IDLE_TIMEOUT_S"),
        ({"MANAGER_ID": "has space"}, "MANAGER_ID"),
    ],
)
def test_inconsistent_settings_fail_at_start_up(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_manager_id_is_never_derived_from_the_redis_prefix() -> None:
    assert Settings.from_env({"REDIS_PREFIX": "team-a:"}).manager_id == ""
    assert Settings.from_env({"REDIS_PREFIX": "x:", "MANAGER_ID": "m1"}).manager_id == "m1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"LISTEN_HOST": "0.0.0.0", "LISTEN_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"LISTEN_HOST": "::1"}, "http://[::1]:8080"),
        ({"PUBLIC_URL": "https://kato.example.com/api/"}, "https://kato.example.com/api"),
    ],
)
def test_public_url_defaults_to_the_listen_address(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).public_base_url() == expected


@pytest.mark.parametrize("url", ["kato.example.com", "ftp://x", "http://x/?q=1", "http://"])
def test_a_public_url_that_is_not_an_http_base_fails_at_start_up(url: str) -> None:
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        Settings.from_env({"PUBLIC_URL": url})


def test_env_example_documents_every_setting_with_its_default() -> None:
    from pathlib import Path

    import msgspec

    lines = (Path(__file__).resolve().parents[3] / ".env.example").read_text().splitlines()
    documented = dict(
        line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line
    )
    fields = {f.name.upper(): f for f in msgspec.structs.fields(Settings)}
    fields.pop("ADMIN_TOKEN_GENERATED")
    fields.pop("GENERATED_API_KEY")
    assert set(fields) <= set(documented)
    # The rest are compose.yaml's own variables, each used there with the same default.
    compose = (Path(__file__).resolve().parents[3] / "compose.yaml").read_text()
    for name in set(documented) - set(fields) - {"COMPOSE_PROJECT_NAME"}:
        assert f"${{{name}:-{documented[name]}}}" in compose, name
    for name, value in documented.items():
        if name not in fields:
            continue
        default = fields[name].default
        if value:
            assert msgspec.convert(value, fields[name].type, strict=False) == default, name
        else:
            assert default in (None, ""), name
