"""Records survive the hash round trip; cursors are opaque but checked."""

from __future__ import annotations

from session_manager.models import SessionRecord, SessionStatus
from session_manager.store.codec import (
    decode_cursor,
    encode_cursor,
    from_hash,
    index_member,
    member_session_id,
    to_hash,
)


def test_a_record_round_trips_through_its_hash() -> None:
    record = SessionRecord(
        session_id="s1",
        user_id="alice",
        kb_id="kb",
        processor_id="p1",
        status=SessionStatus.READY,
        created_at=1,
        last_activity=2,
        status_changed_at=3,
        idle_timeout_s=60,
        max_age_s=3600,
        endpoint="http://127.0.0.1:9",
        genes={"recall_threshold": 0.3},
        labels={"team": "a"},
        idle_deadline=10,
        hard_deadline=20,
        epoch=3,
    )
    fields = {k.encode(): str(v).encode() for k, v in to_hash(record).items()}
    assert from_hash(fields, 10.0, 20.0) == record
    # A record written before the epoch existed reads as epoch 0 (its processor's secret).
    del fields[b"epoch"]
    assert from_hash(fields, 10.0, 20.0).epoch == 0


def test_index_members_sort_by_creation_time_and_name_their_session() -> None:
    members = [index_member(t, "x") for t in (10, 9, 100)]
    assert sorted(members) == [index_member(t, "x") for t in (9, 10, 100)]
    assert member_session_id(index_member(5, "a:b")) == "a:b"


def test_a_cursor_decodes_to_its_member_and_a_foreign_one_to_none() -> None:
    member = index_member(1, "abc")
    assert decode_cursor(encode_cursor(member)) == member
    assert decode_cursor(encode_cursor("12:abc")) is None
    assert decode_cursor("%%%") is None
