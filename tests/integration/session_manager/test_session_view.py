"""``GET /session/{id}``: the genes given at create; ``?live_genes=true`` adds the processor's."""

from __future__ import annotations

from tests.support.manager import ADMIN, Manager


async def test_the_session_view_shows_live_genes_after_an_update(manager: Manager) -> None:
    session = await manager.create(genes={"recall_threshold": 0.3})
    base = f"/session/{session['session_id']}"
    headers = {"Authorization": f"Bearer {session['token']}"}
    updated = await manager.client.post(
        f"{base}/genes/update", json={"genes": {"max_predictions": 7}}, headers=headers
    )
    assert updated.status_code == 200, updated.text

    plain = (await manager.client.get(base, headers=headers)).json()
    assert plain["genes"] == {"recall_threshold": 0.3}
    assert plain["live_genes"] is None  # the record alone does not ask the processor

    view = (await manager.client.get(f"{base}?live_genes=true", headers=headers)).json()
    assert view["genes"] == {"recall_threshold": 0.3}
    assert view["live_genes"]["recall_threshold"] == 0.3
    assert view["live_genes"]["max_predictions"] == 7
    assert view["live_genes"]["persistence"] == 5  # a default, never given

    admin = await manager.client.get(
        f"/admin/sessions/{session['session_id']}?live_genes=true", headers=ADMIN
    )
    assert admin.json()["live_genes"] == view["live_genes"]


async def test_live_genes_are_null_while_no_processor_runs(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    headers = {"Authorization": f"Bearer {session['token']}"}
    assert session["live_genes"] is None  # the create reply carries the record only
    assert await manager.app.state.sessions.hibernate(sid)
    view = (await manager.client.get(f"/session/{sid}?live_genes=true", headers=headers)).json()
    assert view["status"] == "hibernated"
    assert view["live_genes"] is None
