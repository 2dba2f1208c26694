"""The fit cache: finished batches, and the snapshots of the batch being fitted."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from loe_codec.config import CodecConfig, FitConfig, ModelConfig
from loe_codec.fit import fit_tiles
from loe_codec.fitcache import FitCache
from loe_codec.rate import Probe
from support import two_tile_targets

CONFIG = CodecConfig(model=ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=2),
                     fit=FitConfig(steps=12, samples_per_tile=64, warmup_steps=2))


def test_storing_a_batch_removes_its_snapshot_and_other_batches_keep_theirs(tmp_path):
    cache = FitCache(tmp_path / "cache")
    src = tmp_path / "img.bin"
    src.write_bytes(b"pixels")
    key, other = cache.key(src, CONFIG, [0, 1], "cpu"), cache.key(src, CONFIG, [2, 3], "cpu")
    assert key != other
    model = fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets(), snapshots=cache.snapshots(key, 0.0))
    fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets(), snapshots=cache.snapshots(other, 0.0))
    assert cache.snapshots(key).path.is_file() and cache.snapshots(other).path.is_file()
    probe = Probe(torch.zeros(4, dtype=torch.long), torch.zeros(4, 2), torch.zeros(4, 3), torch.ones(2))
    cache.store(key, model, torch.ones(2, 3), probe)
    assert not cache.snapshots(key).path.exists() and cache.snapshots(other).path.is_file()
    loaded, _, _ = cache.load(key, CONFIG)
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))


def test_a_snapshot_is_saved_only_when_due(tmp_path):
    cache = FitCache(tmp_path)
    snaps = cache.snapshots("k", every_seconds=3600.0)
    fit_tiles(CONFIG.model, dataclasses.replace(CONFIG.fit, steps=5), two_tile_targets(), snapshots=snaps)
    assert not snaps.path.exists() and snaps.load() is None


def test_a_snapshot_that_cannot_be_written_is_warned_about_and_the_fit_goes_on(tmp_path, monkeypatch):
    snaps = FitCache(tmp_path).snapshots("k", every_seconds=0.0)
    plain = fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.warns(UserWarning, match="could not save the fit's snapshot"):
        model = fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets(), snapshots=snaps)
    assert not snaps.path.exists() and not list(tmp_path.iterdir())  # no torn file left either
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters()))


def _old_key(src, config, tiles) -> str:
    """The key as loe-codec computed it until 2026-12-06 (written out here, not imported)."""
    import hashlib
    import json
    import os
    from pathlib import Path
    cfg, stat = config.to_dict(), os.stat(src)
    identity = {"v": 3, "source": str(Path(src).resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
                "model": cfg["model"], "fit": cfg["fit"], "tile": cfg["tile"], "tiles": tiles, "device": "cpu",
                "torch": torch.__version__}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def test_the_key_follows_the_contents_not_the_path_or_time(tmp_path):
    import os
    import shutil
    cache = FitCache(tmp_path / "cache")
    src = tmp_path / "img.bin"
    src.write_bytes(b"pixels" * 1000)
    key = cache.key(src, CONFIG, [0, 1], "cpu")
    copy = tmp_path / "elsewhere" / "copy.bin"
    copy.parent.mkdir()
    shutil.copyfile(src, copy)
    os.utime(copy, ns=(1, 1))
    assert cache.key(copy, CONFIG, [0, 1], "cpu") == key  # re-provisioned, moved, touched: the same fits
    changed = bytearray(src.read_bytes())
    changed[3000] ^= 1  # one bit, same size
    src.write_bytes(bytes(changed))
    assert cache.key(src, CONFIG, [0, 1], "cpu") != key


def test_a_batch_and_a_snapshot_stored_under_the_old_key_are_adopted(tmp_path):
    cache = FitCache(tmp_path / "cache")
    src = tmp_path / "img.bin"
    src.write_bytes(b"pixels")
    old, old_other = _old_key(src, CONFIG, [0, 1]), _old_key(src, CONFIG, [2, 3])
    model = fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets())
    probe = Probe(torch.zeros(4, dtype=torch.long), torch.zeros(4, 2), torch.zeros(4, 3), torch.ones(2))
    cache.store(old, model, torch.ones(2, 3), probe)
    fit_tiles(CONFIG.model, CONFIG.fit, two_tile_targets(), snapshots=cache.snapshots(old_other, 0.0))
    snapshot = cache.snapshots(old_other).path.read_bytes()
    key, other = cache.key(src, CONFIG, [0, 1], "cpu"), cache.key(src, CONFIG, [2, 3], "cpu")
    assert key != old and not (tmp_path / "cache" / f"batch-{old}.pt").exists()
    loaded, _, _ = cache.load(key, CONFIG)
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))
    assert cache.snapshots(other).path.read_bytes() == snapshot and not cache.snapshots(old_other).path.exists()
