"""Encoding on several processes: ``torchrun`` on several GPUs or nodes (torch.distributed).

Every process (rank) runs the same encode; batch ``b`` of tiles is fitted by rank
``b % world_size`` and the results meet on rank 0, which writes the one file.
Tiles are seeded per tile and batches are the same whichever rank fits them, so
the file is the single-process file (see :func:`loe_codec.encode.fit_and_pack`).

Everything exchanged is a pickled Python object (fitted batches, tile blobs, the
slope, the result) sent with ``all_gather_object`` in a gloo group (CPU memory,
no GPU memory or NCCL watchdog involved); the default process group is NCCL
when the ranks have GPUs, gloo otherwise. Every exchange carries either a value or a
failure, so an error on any rank stops every rank at the same exchange with the
same exception (the same exit code) instead of waiting for a rank that gave up.
"""

from __future__ import annotations

import atexit
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, TypeVar

import torch
import torch.distributed as dist

from .errors import CodecRuntimeError, UsageError

T = TypeVar("T")

# Ranks wait for rank 0 while it alone solves the slope, measures the PSNR and writes the file
# (an hour or more for a gigapixel image on CPUs): far longer than torch's default timeouts.
TIMEOUT = timedelta(hours=6)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when this process was started by ``torchrun``, else None."""
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return None
    try:
        return tuple(int(os.environ[name]) for name in TORCHRUN_VARIABLES)  # type: ignore[return-value]
    except ValueError:
        return None


def process_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise): only rank 0 shows progress and prints."""
    env = torchrun_env()
    return env[0] if env is not None else 0


def _shared(exc: BaseException) -> bool:
    """Whether every rank already raised ``exc`` (it came through an exchange)."""
    return getattr(exc, "loe_shared", False)


def _portable(exc: Exception, rank: int) -> Exception:
    """``exc`` if it survives pickling, else a :class:`CodecRuntimeError` that tells what it was."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        return CodecRuntimeError(f"rank {rank}: {type(exc).__name__}: {exc}")


@dataclass
class Ranks:
    """The processes of one encode and how they share work: ``size == 1`` is a plain encode, where
    every method does the obvious local thing (no torch.distributed calls)."""

    rank: int = 0
    size: int = 1
    group: Any = None  # the (gloo) process group of the object exchanges

    @property
    def main(self) -> bool:
        """Rank 0: shows progress, solves the slope, measures and writes the file."""
        return self.rank == 0

    def owns(self, batch: int) -> bool:
        """Whether batch number ``batch`` is fitted here."""
        return batch % self.size == self.rank

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank. Raises (on every rank) the failure
        of the first rank that announced one in this exchange."""
        if self.size == 1:
            return [value]
        sent = self._exchange(None, value)
        self._raise_first(sent)
        return [v for _, v in sent]

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (the others pass anything, e.g. None)."""
        return self.gather(value if self.main else None)[0]

    def in_batch_order(self, per_rank: list[list[T]]) -> list[T]:
        """Items of every batch in batch order, from each rank's items of its own batches
        (``per_rank[r]`` holds batches ``r, r + size, r + 2 size, ...``)."""
        total = sum(len(items) for items in per_rank)
        return [per_rank[b % self.size][b // self.size] for b in range(total)]

    @contextmanager
    def sharing_failures(self) -> Iterator[None]:
        """An exception raised inside on one rank is announced in one exchange, the one the other
        ranks are waiting in, so every rank raises the same exception instead of waiting forever
        (the first rank's, when several ranks fail at once)."""
        try:
            yield
        except Exception as exc:
            if self.size > 1 and not _shared(exc) and not isinstance(exc, dist.DistError):
                self._raise_first(self._exchange(_portable(exc, self.rank), None), own=exc)
            raise

    def _exchange(self, failure: Exception | None, value: Any) -> list[tuple[Exception | None, Any]]:
        sent: list = [None] * self.size
        dist.all_gather_object(sent, (failure, value), group=self.group)
        return sent

    def _raise_first(self, sent: list[tuple[Exception | None, Any]], own: Exception | None = None) -> None:
        """Raise the failure of the lowest rank that announced one (``own``: this rank's
        exception, raised itself rather than its copy), marked as known to every rank."""
        for rank, (failure, _) in enumerate(sent):
            if failure is not None:
                failure = own if rank == self.rank and own is not None else failure
                failure.loe_shared = True  # type: ignore[union-attr]
                raise failure


SINGLE = Ranks()


def join(device: str) -> tuple[Ranks, str]:
    """The :class:`Ranks` of this encode and the device this process works on.

    Outside ``torchrun``: one process, ``device`` unchanged. Under ``torchrun``: joins (once) the
    process group (NCCL on GPUs, gloo on CPUs, addresses from ``torchrun``'s environment) and
    works on ``cuda:LOCAL_RANK`` when ``device`` is ``cuda``.
    """
    env = torchrun_env()
    if env is None:
        return SINGLE, device
    rank, size, local_rank = env
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"rank {rank} has LOCAL_RANK {local_rank} but its node has only "
                             f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_available():
        raise UsageError("this torch build has no torch.distributed: run without torchrun")
    global _object_group
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
        atexit.register(_leave)
        _object_group = None  # one of an earlier, destroyed default group is gone with it
    if _object_group is None:  # also beside a gloo default group: the CPU tests run the GPU code path
        _object_group = dist.new_group(backend="gloo", timeout=TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), _object_group), device


_object_group = None  # the gloo group of the object exchanges


def farewell() -> None:
    """After an error every rank raised: return once every rank got here. ``torchrun`` stops all
    ranks as soon as one exits with an error, so rank 0 prints the error before anyone exits."""
    if dist.is_available() and dist.is_initialized():
        dist.all_gather_object([None] * dist.get_world_size(), None, group=_object_group)


LEAVE_TIMEOUT = timedelta(seconds=60)


def _leave() -> None:
    global _object_group
    if dist.is_initialized():
        # Every rank done with the connections before any closes them: a gloo peer torn down while the
        # other still runs its own teardown aborted a process at exit ("terminate called without an
        # active exception", SIGABRT after all work was written) in about one CI run in five.
        try:
            dist.monitored_barrier(group=_object_group, timeout=LEAVE_TIMEOUT)
        except Exception:  # noqa: BLE001 - a rank that is gone already: nothing left to wait for
            pass
        if _object_group is not None:
            dist.destroy_process_group(_object_group)
            _object_group = None
        dist.destroy_process_group()
