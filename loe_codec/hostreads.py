"""Spotting the operations that read tensor values back to the host (each one a GPU sync on CUDA).

:class:`HostReads` records them on any device, the CPU included, so the sync-free training step
can be checked without a GPU; on a GPU, ``torch.cuda.set_sync_debug_mode("error")`` is the real check.
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode

HOST_READ_OPS = frozenset({
    "_local_scalar_dense",  # .item(), int(t), float(t), bool(t)
    "nonzero", "masked_select", "bincount", "unique", "_unique2", "unique_dim", "unique_consecutive",
    "equal", "is_nonzero", "_assert_async",
})
"""aten operations whose output size or value the host needs before it can go on."""


class HostReads(TorchDispatchMode):
    """A dispatch mode that records (``self.ops``) the host-reading aten operations run inside it."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READ_OPS:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))
