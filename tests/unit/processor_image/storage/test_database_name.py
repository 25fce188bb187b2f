"""Database names for kb_ids: valid for MongoDB, deterministic, never shared by two ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor_image.storage.mongodb import database_name

ALLOWED = re.compile(r"[a-z0-9_~-]{1,63}")


@pytest.mark.parametrize("kb_id", ["p1", "proc-0a1b2c", "user_42", "a" * 63])
def test_safe_kb_id_is_the_database_name(kb_id: str) -> None:
    assert database_name(kb_id) == kb_id


@pytest.mark.parametrize(
    "kb_id",
    ["admin", "local", "config", "", "Alice", "a.b", "a b", "x/y$z", "é", "a" * 64, "名" * 40],
)
def test_unsafe_kb_id_gets_a_hashed_valid_name(kb_id: str) -> None:
    name = database_name(kb_id)
    assert ALLOWED.fullmatch(name)
    assert len(name.encode()) <= 63
    assert re.fullmatch(r"[a-z0-9_-]*~[0-9a-f]{32}", name)
    assert database_name(kb_id) == name  # deterministic


def test_ids_differing_only_in_case_or_punctuation_get_different_databases() -> None:
    names = {database_name(kb_id) for kb_id in ["alice", "Alice", "ALICE", "a.lice", "a_lice"]}
    assert len(names) == 5


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_ids_never_share_a_database_name(first: str, second: str) -> None:
    if first != second:
        assert database_name(first) != database_name(second)
    assert ALLOWED.fullmatch(database_name(first))
    assert len(database_name(first).encode()) <= 63
