"""Which swarm nodes a processor may be pinned to: ``SWARM_CONSTRAINTS`` as the swarm reads them.

The manager pins each processor service to a node it picks (the swarm balanced single-task
services badly); the swarm enforces the constraints again, so a node this evaluation wrongly
admitted would leave the task pending: the evaluation must agree with the swarm's, and must
say "cannot tell" (the swarm then places it) for attributes it does not read.
"""

from __future__ import annotations

from typing import Any

from session_manager.backends.swarm import _meets, _schedulable

NODE: dict[str, Any] = {
    "ID": "n1",
    "Spec": {
        "Labels": {"kato": "processors", "zone": "z1"},
        "Role": "worker",
        "Availability": "active",
    },
    "Description": {
        "Hostname": "host-1",
        "Platform": {"OS": "linux", "Architecture": "x86_64"},
        "Engine": {"Labels": {"ssd": "yes"}},
    },
    "Status": {"State": "ready"},
}


def test_constraints_on_labels_role_and_hostname() -> None:
    assert _meets(NODE, ()) is True
    assert _meets(NODE, ("node.labels.kato==processors", "node.role==worker")) is True
    assert _meets(NODE, ("node.labels.kato != processors",)) is False
    assert _meets(NODE, ("node.labels.missing==x",)) is False
    assert _meets(NODE, ("node.labels.missing!=x",)) is True
    assert _meets(NODE, ("node.hostname==host-2",)) is False
    assert _meets(NODE, ("engine.labels.ssd==yes", "node.platform.os==linux")) is True


def test_an_attribute_not_read_here_is_left_to_the_swarm() -> None:
    assert _meets(NODE, ("node.labels.kato==processors", "node.unknown==1")) is None


def test_only_ready_active_nodes_take_processors() -> None:
    assert _schedulable(NODE)
    assert not _schedulable({**NODE, "Status": {"State": "down"}})
    assert not _schedulable({**NODE, "Spec": {**NODE["Spec"], "Availability": "drain"}})
