"""`pipeline.video.clips.prefetch`: extract decodes ahead in a thread, in order, errors in place."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pipeline.video.clips import prefetch


def test_items_come_in_order_and_the_thread_ends() -> None:
    assert list(prefetch(iter(range(50)), 2)) == list(range(50))
    assert not [t for t in threading.enumerate() if t.name == "clip-prefetch"]


def test_a_producer_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("video v1 now decodes to 3 seconds")

    seen = []
    with pytest.raises(RuntimeError, match="decodes to 3 seconds"):
        for item in prefetch(items(), 4):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_closes_the_source_and_holds_at_most_depth_items() -> None:
    produced, closed = [], []

    def items() -> Iterator[int]:
        try:
            for number in range(1000):
                produced.append(number)
                yield number
        finally:
            closed.append(True)

    stream = prefetch(items(), 2)
    assert next(stream) == 0
    stream.close()
    assert closed == [True]
    assert len(produced) <= 5  # the item taken, the queue's 2, one waiting to be put, one more
