"""Finding 7: URLs in replies come from ``PUBLIC_URL``, never from the request's ``Host``.

A client sending ``Host: evil.example:666`` used to get ``urls.http =
http://evil.example:666/…``, links it could hand to other users.
"""

from __future__ import annotations

from typing import Any

from tests.support.manager import ADMIN, Manager, SettingsFactory, StartManager, auth

_EVIL = {"Host": "evil.example:666"}


def _urls_in(body: Any) -> list[str]:
    """Every ``urls`` value anywhere in a reply."""
    if isinstance(body, dict):
        found = list(body["urls"].values()) if isinstance(body.get("urls"), dict) else []
        return found + [url for value in body.values() for url in _urls_in(value)]
    if isinstance(body, list):
        return [url for item in body for url in _urls_in(item)]
    return []


async def _every_reply_with_urls(manager: Manager) -> list[Any]:
    created = await manager.client.post(
        "/session/create", json={"user_id": "u"}, headers={**_EVIL, **manager.creator}
    )
    assert created.status_code == 201, created.text
    session = created.json()
    sid = session["session_id"]
    return [
        session,
        (await manager.client.get(f"/session/{sid}", headers=auth(session) | _EVIL)).json(),
        (await manager.client.get("/admin/sessions", headers=ADMIN | _EVIL)).json(),
        (await manager.client.get(f"/admin/sessions/{sid}", headers=ADMIN | _EVIL)).json(),
    ]


async def test_urls_use_public_url_whatever_the_host_header_says(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(public_url="https://kato.example.com/api/"))
    replies = await _every_reply_with_urls(manager)
    urls = [url for reply in replies for url in _urls_in(reply)]
    sid = replies[0]["session_id"]
    assert len(urls) == 8
    assert f"https://kato.example.com/api/session/{sid}/" in urls
    assert f"wss://kato.example.com/api/session/{sid}/ws" in urls
    assert all("evil" not in url for url in urls)


async def test_without_public_url_the_listen_address_is_used(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(listen_host="127.0.0.1", listen_port=8123))
    replies = await _every_reply_with_urls(manager)
    urls = [url for reply in replies for url in _urls_in(reply)]
    assert urls
    assert all(url.startswith(("http://127.0.0.1:8123/", "ws://127.0.0.1:8123/")) for url in urls)
