"""A request for a session that is being recovered waits, bounded, then is told to retry."""

from __future__ import annotations

from session_manager.models import SessionStatus
from session_manager.store import SessionStore
from tests.support.manager import SettingsFactory, StartManager, auth


async def test_a_session_still_recovering_after_the_wait_answers_503_with_retry_after(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """The record is put where a recovery running on another replica puts it (``starting``,
    no processor yet); this replica's request waits ``START_TIMEOUT_S + STOP_TIMEOUT_S``, then
    answers 503 ``SESSION_NOT_READY`` with ``Retry-After`` (not 504: nothing timed out that a
    retry would not fix). Once the recovery is done, the retried request is served."""
    manager = await start_manager(make_settings(start_timeout_s=1, stop_timeout_s=1))
    store: SessionStore = manager.app.state.store
    session = await manager.create()
    sid = session["session_id"]
    url = f"/session/{sid}/stm"
    record = await store.get(sid)
    assert record is not None
    recovering = await store.transition(
        sid, to=SessionStatus.STARTING, allowed=[SessionStatus.READY], fields={"endpoint": ""}
    )
    assert recovering.ok

    waited = await manager.client.get(url, headers=auth(session))
    assert waited.status_code == 503, waited.text
    assert waited.json()["error"]["code"] == "SESSION_NOT_READY"
    assert waited.headers["retry-after"] == "2"

    recovered = await store.transition(
        sid,
        to=SessionStatus.READY,
        allowed=[SessionStatus.STARTING],
        fields={"endpoint": record.endpoint},
    )
    assert recovered.ok
    retried = await manager.client.get(url, headers=auth(session))
    assert retried.status_code == 200, retried.text
