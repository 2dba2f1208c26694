"""Producing the next items of an iterator on a background thread while the caller works on this one."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of ``items`` in order, with up to ``depth`` of them produced ahead on a background thread.

    Producing an item (``next`` on the iterator) runs on that thread: image reads release the GIL, so
    they overlap the fitting of the item before. An exception raised producing an item is raised here,
    the same object, where that item would have come. ``depth`` 0: no thread, plain iteration.
    Closing the generator stops the thread after the item it is producing (it never runs past that).
    """
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        while not stop.is_set():
            try:
                item = next(source)
            except StopIteration:
                item = _END
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                item = _Failure(exc)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item is _END or isinstance(item, _Failure):
                return

    worker = threading.Thread(target=produce, name="loe-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
