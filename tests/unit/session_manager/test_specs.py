"""The processor a session gets is configured from the manager's settings (its environment)."""

from __future__ import annotations

from processor_image.service.config import ServiceConfig
from session_manager.models import SessionRecord, SessionStatus
from session_manager.sessions.specs import processor_spec
from session_manager.settings import Settings


def record() -> SessionRecord:
    return SessionRecord(
        session_id="s1",
        user_id="u1",
        kb_id="kb1",
        processor_id="p1",
        status=SessionStatus.STARTING,
        created_at=0,
        last_activity=0,
        status_changed_at=0,
        idle_timeout_s=60,
        max_age_s=600,
    )


def processor_config(env: dict[str, str]) -> ServiceConfig:
    """What the processor started with this spec reads from its environment."""
    settings = Settings.from_env({"PROCESSOR_SECRET_KEY": "k" * 32, **env})
    return ServiceConfig.from_env(processor_spec(settings, record()).env)


def test_processors_keep_a_bounded_predictions_history_by_default() -> None:
    config = processor_config({})
    assert config.predictions_history == 1000
    assert config.predictions_ttl_s == 0


def test_the_predictions_settings_reach_the_processor() -> None:
    config = processor_config(
        {"PROCESSOR_PREDICTIONS_HISTORY": "0", "PROCESSOR_PREDICTIONS_TTL_S": "86400"}
    )
    assert config.predictions_history == 0
    assert config.predictions_ttl_s == 86400
