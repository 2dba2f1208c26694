import threading
import time

import pytest

from loe_codec.prefetch import prefetched


def test_items_come_in_order_with_or_without_a_thread():
    assert list(prefetched(iter(range(7)), 0)) == list(range(7))
    assert list(prefetched(iter(range(7)), 2)) == list(range(7))
    assert list(prefetched(iter([]), 1)) == []


def test_items_are_produced_on_another_thread_ahead_of_the_consumer():
    produced = []

    def items():
        for k in range(3):
            produced.append((k, threading.current_thread().name))
            yield k

    it = prefetched(items(), 1)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 2 and time.monotonic() < deadline:  # item 1 is read while item 0 is in use
        time.sleep(0.01)
    assert [k for k, _ in produced][:2] == [0, 1]
    assert all(name != threading.current_thread().name for _, name in produced)
    assert list(it) == [1, 2]


def test_depth_bounds_how_far_the_producer_runs_ahead():
    produced = []

    def items():
        for k in range(10):
            produced.append(k)
            yield k

    it = prefetched(items(), 2)
    next(it)
    time.sleep(0.3)
    assert len(produced) <= 4  # the item in use, two queued, one waiting to be queued
    it.close()
    assert len(produced) <= 4


def test_an_error_surfaces_where_its_item_would_have_come():
    error = OSError("cannot read tile 2")

    def items():
        yield 0
        yield 1
        raise error

    got = []
    with pytest.raises(OSError) as caught:
        for item in prefetched(items(), 1):
            got.append(item)
    assert got == [0, 1] and caught.value is error


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "loe-prefetch"]


def test_closing_early_stops_the_thread():
    # Only the prefetch worker is counted: threads of earlier tests may end at any time meanwhile.
    assert _prefetch_threads() == []
    it = prefetched(iter(range(100)), 1)
    next(it)
    assert len(_prefetch_threads()) == 1
    it.close()
    assert _prefetch_threads() == []
