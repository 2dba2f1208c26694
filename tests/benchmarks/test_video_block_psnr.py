"""The per-block PSNR of benchmarks/video_block_psnr.py, on a tiny encode of the sample clip."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

from loe_codec.metrics import psnr_from_mse
from loe_codec.video import LoeVideo, encode_video
from loe_codec.videoio import VideoSource
from support import load_script
from test_video import CLIP, tiny_video_config


def test_blocks_and_whole_frame_match_a_direct_computation(tmp_path):
    script = load_script("benchmarks/video_block_psnr.py")
    path = tmp_path / "clip.loe"
    encode_video(CLIP, path, config=tiny_video_config(steps=10), device="cpu", measure_psnr=False)
    result = script.block_psnr(CLIP, path)
    with LoeVideo(path) as video:
        tiles = video.grid.space.tiles()
        decoded = video.decode(device="cpu").astype(np.float64)
        assert result["all"] == pytest.approx(video.evaluate(CLIP, device="cpu")["psnr"], abs=1e-9)
    reference = np.stack(list(VideoSource(CLIP).iter_frames())).astype(np.float64)
    assert set(result) == {f"r{t.row}c{t.col}" for t in tiles} | {"all"} and len(tiles) == 9
    last = tiles[-1]  # the bottom-right core
    err = (decoded - reference)[:, last.y0:last.y1, last.x0:last.x1] ** 2
    expected = np.mean([psnr_from_mse(float(e.mean())) for e in err])
    assert result[f"r{last.row}c{last.col}"] == pytest.approx(expected, abs=1e-9)
    assert len({round(v, 6) for v in result.values()}) > 2  # the blocks differ


def test_a_source_of_another_size_is_refused(tmp_path):
    script = load_script("benchmarks/video_block_psnr.py")
    path = tmp_path / "clip.loe"
    encode_video(CLIP, path, config=tiny_video_config(steps=5), device="cpu", measure_psnr=False)
    other = tmp_path / "short.mkv"
    load_script("benchmarks/video_crop.py").crop(str(CLIP), str(other), 5, (0, 0, 64, 48))
    with pytest.raises(SystemExit, match="holds"):
        script.block_psnr(other, path)


def _file_networks(tmp_path, config=None, **encode):
    """A tiny encode of the sample clip (``config``, default the tiny one at 10 steps; ``encode``: more of
    ``encode_video``'s arguments), and its dequantized networks as a fit-cache batch holds them: per layer
    weights ``[blocks, banks, in, out]`` and biases ``[blocks, out]``."""
    path = tmp_path / "clip.loe"
    encode_video(CLIP, path, config=config or tiny_video_config(steps=10), device="cpu", measure_psnr=False,
                 **encode)
    with LoeVideo(path) as video:
        tiles = [video.reader.read_tile(k) for k in range(len(video.grid))]
        layers = video.config.model.layers
    return path, {"weights": [torch.stack([t[0][i] for t in tiles]) for i in range(layers)],
                  "biases": [torch.stack([t[1][i] for t in tiles]) for i in range(layers)]}


def _first_units(stored: dict, width: int, blocks: list[int] | None = None) -> dict:
    """``stored``'s networks (of ``blocks``, default all) cut to their first ``width`` hidden units, as a
    sized block's narrower fit holds them."""
    layers = len(stored["weights"])
    pick = slice(None) if blocks is None else blocks
    return {"weights": [w[pick][..., :w.shape[-2] if i == 0 else width, :w.shape[-1] if i == layers - 1 else width]
                        .contiguous() for i, w in enumerate(stored["weights"])],
            "biases": [b[pick][..., :b.shape[-1] if i == layers - 1 else width].contiguous()
                       for i, b in enumerate(stored["biases"])]}


def test_float_fit_decodes_given_networks_in_the_files_grid(tmp_path):
    script = load_script("benchmarks/video_block_psnr.py")
    # The file's own dequantized networks, stored as a fit-cache batch: the same decode, to the bit.
    path, stored = _file_networks(tmp_path)
    torch.save(stored, tmp_path / "same.pt")
    decoded = script.block_psnr(CLIP, path)
    assert script.block_psnr(CLIP, path, float_fit=[tmp_path / "same.pt"]) == decoded
    # Split in two batches (as a fit of two time chunks leaves them), given in order: the same again.
    for name, part in (("first.pt", slice(None, 4)), ("rest.pt", slice(4, None))):
        torch.save({key: [t[part] for t in value] for key, value in stored.items()}, tmp_path / name)
    halves = [tmp_path / "first.pt", tmp_path / "rest.pt"]
    assert script.block_psnr(CLIP, path, float_fit=halves) == decoded
    assert script.block_psnr(CLIP, path, float_fit=halves[::-1]) != decoded
    # Other networks decode to other pictures.
    stored["biases"] = [b + 0.05 for b in stored["biases"]]
    torch.save(stored, tmp_path / "moved.pt")
    assert script.block_psnr(CLIP, path, float_fit=[tmp_path / "moved.pt"])["all"] != decoded["all"]
    stored["weights"] = [w[:-1] for w in stored["weights"]]  # a block short
    torch.save(stored, tmp_path / "short.pt")
    with pytest.raises(SystemExit, match="blocks of the file"):
        script.block_psnr(CLIP, path, float_fit=[tmp_path / "short.pt"])


def test_float_fit_pads_narrower_networks_with_zero_units(tmp_path):
    script = load_script("benchmarks/video_block_psnr.py")
    path, stored = _file_networks(tmp_path)
    layers = len(stored["weights"])
    # The last hidden unit of every layer switched off (zero in and out, zero bias) ...
    off = [w.clone() for w in stored["weights"]], [b.clone() for b in stored["biases"]]
    for i in range(layers):
        if i < layers - 1:
            off[0][i][..., -1] = 0
            off[1][i][..., -1] = 0
        if i > 0:
            off[0][i][..., -1, :] = 0
    torch.save({"weights": off[0], "biases": off[1]}, tmp_path / "off.pt")
    # ... decodes as the networks one unit narrower, given as a batch of their own (the sized blocks' case)
    cut = {"weights": [w[..., :w.shape[-2] - (i > 0), :w.shape[-1] - (i < layers - 1)].contiguous()
                       for i, w in enumerate(off[0])],
           "biases": [b[..., :b.shape[-1] - (i < layers - 1)].contiguous() for i, b in enumerate(off[1])]}
    torch.save(cut, tmp_path / "cut.pt")
    switched_off = script.block_psnr(CLIP, path, float_fit=[tmp_path / "off.pt"])
    assert script.block_psnr(CLIP, path, float_fit=[tmp_path / "cut.pt"]) == switched_off
    assert switched_off != script.block_psnr(CLIP, path)  # the unit mattered: the test can tell


def test_float_fit_refuses_a_network_narrower_than_the_units_its_block_keeps(tmp_path):
    """Sized blocks' batches out of the file's order would give a block another's narrower network."""
    script = load_script("benchmarks/video_block_psnr.py")
    path, stored = _file_networks(tmp_path, dataclasses.replace(tiny_video_config(steps=16), block_sizes="pilot"),
                                  bpp=2.0)
    with LoeVideo(path) as video:
        kept = [int(video.reader.tile_units(k)[0].sum()) for k in range(len(video.grid))]
        assert len(set(kept)) > 1  # the blocks got widths of their own
        torch.save(stored, tmp_path / "full.pt")
        script.FloatFit([tmp_path / "full.pt"], video)  # every block's network as wide as the file's: taken
        n = min(kept)  # every block cut to the narrowest block's width
        torch.save(_first_units(stored, n), tmp_path / "cut.pt")
        wider = next(k for k, units in enumerate(kept) if units > n)
        with pytest.raises(SystemExit, match=f"block {wider} of the file keeps {kept[wider]} units"):
            script.FloatFit([tmp_path / "cut.pt"], video)


def test_float_cache_finds_a_sized_encodes_blocks_in_the_file_order(tmp_path, monkeypatch):
    """A cache folder as the encoder leaves it (a chunk's blocks of one width as one batch, widest first,
    chunk after chunk) is read back into the file's blocks, leaving snapshots and other batches out."""
    script = load_script("benchmarks/video_block_psnr.py")
    path, stored = _file_networks(tmp_path, dataclasses.replace(tiny_video_config(steps=16), block_sizes="pilot"),
                                  bpp=2.0)
    cache = tmp_path / "cache"
    cache.mkdir()
    with LoeVideo(path) as video:
        kept = [int(video.reader.tile_units(k)[0].sum()) for k in range(len(video.grid))]
        per_chunk = len(video.grid.space.tiles())
        written = [("other", _first_units(stored, 1, [0])), ("snapshot.partial", _first_units(stored, kept[0], [0]))]
        expected = [None] * len(kept)
        for start in range(0, len(kept), per_chunk):
            chunk = range(start, start + per_chunk)
            for width in sorted({kept[k] for k in chunk}, reverse=True):
                blocks = [k for k in chunk if kept[k] == width]
                written.append((f"c{start}w{width}", _first_units(stored, width, blocks)))
                for row, k in enumerate(blocks):
                    expected[k] = (cache / f"batch-c{start}w{width}.pt", row)
        for age, (name, batch) in enumerate(written):
            torch.save(batch, cache / f"batch-{name}.pt")
            os.utime(cache / f"batch-{name}.pt", (1000 + age, 1000 + age))
        held: dict = {}  # batch -> the blocks it holds
        for k, (batch, _) in enumerate(expected):
            held.setdefault(batch, []).append(k)
        assert any(ks != list(range(ks[0], ks[0] + len(ks))) for ks in held.values())  # some not neighbours
        assert script.cache_blocks_in_file_order(cache, video) == expected
        torch.save(stored, tmp_path / "full.pt")
    # Each block decoded with its own network: as the file's full-width networks decode; so does the command.
    floats = script.block_psnr(CLIP, path, float_fit=[tmp_path / "full.pt"])
    assert script.block_psnr(CLIP, path, float_fit=expected) == floats
    out = tmp_path / "blocks.jsonl"
    monkeypatch.setattr(sys, "argv", ["video_block_psnr.py", str(CLIP), str(path), "--float-cache", str(cache),
                                      "--out", str(out)])
    script.main()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["psnr"] for line in lines] == [{k: round(v, 2) for k, v in psnr.items()}
                                                for psnr in (script.block_psnr(CLIP, path), floats)]
    assert lines[1]["float_cache"] == str(cache) and len(lines[1]["float_fit"]) == len(written) - 2
    expected[0][0].unlink()  # the first block's batch gone
    with LoeVideo(path) as video, pytest.raises(SystemExit, match="no fit-cache batch holds block"):
        script.cache_blocks_in_file_order(cache, video)
