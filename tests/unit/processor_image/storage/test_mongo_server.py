"""The test helper's SecantusDB server answers while in use and is gone afterwards."""

from __future__ import annotations

import pytest
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from tests.mongo_server import secantus_server


@pytest.mark.mongo
def test_secantus_server_answers_inside_and_stops_on_exit() -> None:
    with secantus_server() as url:
        client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=2000)
        try:
            assert client.admin.command("ping")["ok"] == 1.0
        finally:
            client.close()
    client = MongoClient(url, serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")
    finally:
        client.close()
