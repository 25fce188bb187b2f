"""Every ``/admin`` route is declared in ``api/admin.py`` and refuses a missing admin token."""

from __future__ import annotations

from tests.support.manager import Manager


async def test_admin_routes_live_in_one_module_behind_the_admin_guard(manager: Manager) -> None:
    admin_routes = [r for r in manager.app.routes if r.path.startswith("/admin")]
    assert {r.path for r in admin_routes} >= {
        "/admin/sessions",
        "/admin/stats",
        "/admin/reap",
        "/admin/processors",
    }
    for route in admin_routes:
        ours = [h for h in route.route_handlers if not h.fn.__module__.startswith("litestar.")]
        assert ours, route.path
        assert {h.fn.__module__ for h in ours} == {"session_manager.api.admin"}, route.path
    for method, path in (("GET", "/admin/processors"), ("POST", "/admin/reap")):
        reply = await manager.client.request(method, path)
        assert reply.status_code == 401, (path, reply.text)
        assert reply.json()["error"]["code"] == "UNAUTHORIZED"
        reply = await manager.client.request(method, path, headers=manager.admin)
        assert reply.status_code == 200, (path, reply.text)
