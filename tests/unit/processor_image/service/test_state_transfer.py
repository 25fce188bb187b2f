"""State bodies: which ``Accept-Encoding`` gets zstd, and the GC pause leaves the GC as it was."""

from __future__ import annotations

import gc
import threading

import pytest

from processor_image.service.state_transfer import wants_zstd, without_gc


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        ("zstd", True),
        ("gzip, deflate, br, zstd", True),
        ("ZSTD;q=0.5", True),
        ("zstd;q=0", False),
        ("zstd; q=0.0", False),
        ("gzip", False),
        ("identity", False),
        ("", False),
        (None, False),
    ],
)
def test_zstd_is_sent_only_when_accepted(header: str | None, wanted: bool) -> None:
    assert wants_zstd(header) is wanted


def test_the_gc_is_paused_during_the_call_and_back_after_overlapping_calls() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def slow() -> None:
        inside.set()
        release.wait(10)

    worker = threading.Thread(target=without_gc, args=(slow,))
    worker.start()
    assert inside.wait(10)
    seen.append(without_gc(gc.isenabled))  # overlapping pause
    seen.append(gc.isenabled())  # still paused: the first call runs on
    release.set()
    worker.join(10)
    assert seen == [False, False]
    assert gc.isenabled()


def test_a_gc_disabled_elsewhere_stays_disabled() -> None:
    gc.disable()
    try:
        without_gc(lambda: None)
        assert not gc.isenabled()
    finally:
        gc.enable()
