"""A folder of fitted batches, so that work already done is not done again.

An encode that is killed and restarted with the same cache skips the batches
it finished and takes up the batch it was fitting from its last snapshot
(resumable encodes), and encodes of one image at several rates share one fit
(the fit does not depend on the quantization settings). A batch is keyed by the
source file's contents (:func:`source_identity`: a copied, moved or touched file
keeps its fits), the tiles and every setting the fit depends on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import torch

from .config import CodecConfig
from .errors import CodecRuntimeError
from .files import adopted, atomic_output
from .model import TiledLoE
from .rate import Probe

CACHE_VERSION = 3  # 2: initial weights from the seeded reference generator; 3: fits under the spike guard
SNAPSHOT_SECONDS = 300.0  # a fit being killed loses at most about this much of its work


HASH_CHUNK = 8 << 20


def source_identity(source: str | os.PathLike) -> dict:
    """What names a source file's contents: its size and SHA-256 (hashed once per process for a path, size and
    modification time). Not its path or time: a source copied again (its data re-provisioned, rsynced,
    moved) keeps its cuts and fits, which an identity by modification time lost."""
    path = Path(source).resolve()
    stat = path.stat()
    return {"size": stat.st_size, "sha256": _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)}


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def legacy_source_identity(source: str | os.PathLike) -> dict:
    """The identity caches were keyed by until 2026-12-06 (resolved path, size, modification time in ns): what
    batches an earlier loe-codec stored are named by (:meth:`FitCache.key` adopts them)."""
    stat = Path(source).stat()
    return {"source": str(Path(source).resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


class FitSnapshots:
    """One batch's fit state in a file, saved every ``every_seconds`` (:class:`loe_codec.fit.Snapshots`).

    A fit killed and started again goes on from its last snapshot, bit for bit as if it had not stopped
    (:func:`loe_codec.fit.train`). An unreadable file counts as none: the fit starts afresh.
    """

    def __init__(self, path: Path, every_seconds: float | None = None):
        self.path = Path(path)
        self.every = SNAPSHOT_SECONDS if every_seconds is None else every_seconds
        self.last = time.monotonic()

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # torn or foreign
            return None

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def save(self, state: dict) -> None:
        """Keep ``state``; a snapshot that cannot be written (a full disk) is only warned about: the fit
        goes on, and tries again at the next due time."""
        try:
            with atomic_output(self.path) as tmp:
                torch.save(state, tmp)
        except (OSError, CodecRuntimeError) as exc:  # atomic_output turns an OSError into the latter
            warnings.warn(f"could not save the fit's snapshot {self.path} ({exc}); the fit goes on without it")
        self.last = time.monotonic()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class FitCache:
    """Fitted float networks, sensitivities and probes of batches, one file per batch."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def key(self, source: str | os.PathLike, config: CodecConfig, tiles: list[int], device: str,
            extra: dict | None = None) -> str:
        """The batch's name: ``cuda:1`` counts as ``cuda`` (a batch fitted by another rank is found).

        ``extra``: more settings the fit depends on (a video's time chunks)."""
        cfg = config.to_dict()
        fields = {"v": CACHE_VERSION, "model": cfg["model"], "fit": cfg["fit"], "tile": cfg["tile"], "tiles": tiles,
                  "device": torch.device(device).type, "torch": torch.__version__}
        if extra:
            fields["extra"] = extra
        key = _digest({**fields, **source_identity(source)})
        legacy = _digest({**fields, **legacy_source_identity(source)})  # batches of versions keying by mtime
        adopted(self._path(key), self._path(legacy))
        adopted(self.snapshots(key).path, self.snapshots(legacy).path)
        return key

    def _path(self, key: str) -> Path:
        return self.directory / f"batch-{key}.pt"

    def snapshots(self, key: str, every_seconds: float | None = None) -> FitSnapshots:
        """Where the batch ``key``'s fit keeps its state while it runs (removed once the batch is stored)."""
        return FitSnapshots(self.directory / f"batch-{key}.partial.pt", every_seconds)

    def load(self, key: str, config: CodecConfig) -> tuple[TiledLoE, torch.Tensor, Probe] | None:
        """The stored batch, or None if absent or unreadable (then it is simply fitted again)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            model = TiledLoE(config.model, d["weights"], d["biases"]).eval()
            return model, d["sensitivity"], Probe(d["probe_tile"], d["probe_coords"], d["probe_target"],
                                                  d["probe_pixels"])
        except Exception:  # a torn or foreign file: refit rather than fail
            return None

    def store(self, key: str, model: TiledLoE, sensitivity: torch.Tensor, probe: Probe) -> None:
        data = {"weights": [w.detach().cpu() for w in model.weights],
                "biases": [b.detach().cpu() for b in model.biases], "sensitivity": sensitivity,
                "probe_tile": probe.tile, "probe_coords": probe.coords, "probe_target": probe.target,
                "probe_pixels": probe.pixels}
        with atomic_output(self._path(key)) as tmp:
            torch.save(data, tmp)
        self.snapshots(key).discard()
