"""``GET /session/{id}``: the genes given at create; ``?live_genes=true`` adds the processor's."""

from __future__ import annotations

from tests.support.manager import Manager


async def test_the_session_view_shows_live_genes_after_an_update(manager: Manager) -> None:
    session = await manager.kato.create("alice", genes={"recall_threshold": 0.3})
    await session.update_genes({"max_predictions": 7})

    plain = await session.info()
    assert plain.genes == {"recall_threshold": 0.3}
    assert plain.live_genes is None  # the record alone does not ask the processor

    view = await session.info(live_genes=True)
    assert view.genes == {"recall_threshold": 0.3}
    assert view.live_genes is not None
    assert view.live_genes["recall_threshold"] == 0.3
    assert view.live_genes["max_predictions"] == 7
    assert view.live_genes["persistence"] == 5  # a default, never given

    admin = await manager.kato.inspect(session.session_id, live_genes=True)
    assert admin.live_genes == view.live_genes


async def test_live_genes_are_null_while_no_processor_runs(manager: Manager) -> None:
    session = await manager.kato.create("alice")
    assert session.created is not None
    assert session.created.live_genes is None  # the create reply carries the record only
    assert await manager.app.state.sessions.hibernate(session.session_id)
    view = await session.info(live_genes=True)
    assert view.status == "hibernated"
    assert view.live_genes is None
