"""Would a block be cheaper as a change of the block before it? Fit one tile's second time chunk starting
from its first chunk's decoded network, and price the difference.

Every block of a video `.loe` file is fitted from its own seeded initialisation and coded against it. Where
consecutive chunks of a tile show the same scene, the later block could instead start from the earlier
block's decoded weights and code only ``w - w_before`` (as video codecs code a frame as a change of the one
before). This script measures that on one tile of an existing file, without changing the format::

    python benchmarks/video_warm_start.py SOURCE FILE.loe STEPS LR [--tile K] [--out results.jsonl]

Block A is tile K of the first time chunk, block B tile K of the second. B's voxels are put in A's
coordinates (A's spatial domain, the camera path referred to A's frames), a network starting from A's
decoded weights is fitted to them for STEPS steps at peak learning rate LR (the file's fit otherwise), and
its change from A is rounded with B's own per-layer quantization steps in the file (times 1, 1.25, 1.5, 2).
Printed (one JSON line): PSNR on random voxels of B's fit window of B's network in the file (in its own
coordinates), of A's network on B, of the fitted network (float and rounded), and the bits of B's coded
integers and of the rounded change under ideal per-layer entropy coders (empirical entropy, no model
costs). ``--cold`` fits B from its seeded initialisation instead (PSNR only): the same steps without
the warm start. The clip is read whole: meant for short clips (Big Buck Bunny's 60 frames: 166 MB).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from entropy_headroom import empirical_bits  # noqa: E402
from video_sizes import print_and_append  # noqa: E402
from loe_codec.fit import train  # noqa: E402
from loe_codec.metrics import psnr_from_mse  # noqa: E402
from loe_codec.model import TiledLoE  # noqa: E402
from loe_codec.rate import Probe  # noqa: E402
from loe_codec.tileblob import read_laplace  # noqa: E402
from loe_codec.video_container import VideoReader  # noqa: E402
from loe_codec.video_encode import block_target  # noqa: E402
from loe_codec.video_fit import BlockTarget, _VoxelPool  # noqa: E402
from loe_codec.video_tiling import Block  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402

STEP_SCALES = (1.0, 1.25, 1.5, 2.0)


def second_block_in_first_coordinates(frames: torch.Tensor, reader: VideoReader, tile: int
                                      ) -> tuple[Block, Block, BlockTarget, BlockTarget]:
    """Tile ``tile``'s blocks in the first two chunks (A, B), B's fit target as the file fitted it, and
    the same voxels in A's coordinates."""
    grid, path, seed = reader.header.grid, reader.header.motion, reader.config.fit.seed
    chunks = grid.time.chunks()
    if len(chunks) < 2:
        raise SystemExit("the file has one time chunk: there is no block before another")
    if not 0 <= tile < len(grid.space):
        raise SystemExit(f"--tile must be in [0, {len(grid.space)})")
    a, b = grid.blocks_of_chunk(chunks[0])[tile], grid.blocks_of_chunk(chunks[1])[tile]
    target_a = block_target(frames, 0, grid, a, seed, path)
    target_b = block_target(frames, 0, grid, b, seed, path)
    shift = None
    if path is not None:
        fb0, fb1 = grid.time.window(b.chunk)
        shift = path.shifts(*grid.time.window(a.chunk), torch.arange(fb0, fb1, dtype=torch.float64) + 0.5).float()
    return a, b, target_b, dataclasses.replace(target_b, origin=target_a.origin[:2] + target_b.origin[2:],
                                               extent=target_a.extent[:2] + target_b.extent[2:], shift=shift)


def warm_start(source: str | Path, codec: str | Path, steps: int, lr: float, tile: int = 0,
               eval_samples: int = 262144, cold: bool = False, progress=None) -> dict:
    """The measurements the module docstring lists, as a dict."""
    with VideoReader(codec) as reader:
        config = reader.config
        frames = torch.from_numpy(np.stack(list(VideoSource(source).iter_frames())))
        if tuple(frames.shape[:3]) != (reader.header.source.frames, reader.header.source.height,
                                       reader.header.source.width):
            raise SystemExit(f"{source} is not the clip {codec} was encoded from")
        block_a, block_b, own, target = second_block_in_first_coordinates(frames, reader, tile)
        index_a, index_b = block_a.index, block_b.index
        del frames
        wa, ba = reader.read_tile(index_a)
        wb, bb = reader.read_tile(index_b)
        coded_b = read_laplace(config, reader.tile_blob(index_b))

    def sampled(t: BlockTarget) -> Probe:
        """``eval_samples`` random voxels of ``t``'s window (the same draw for every target)."""
        pool = _VoxelPool([t], torch.device("cpu"))
        return Probe(*pool.sample(eval_samples, torch.Generator().manual_seed(1234)), torch.ones(1, dtype=torch.float64))

    def psnr(weights, biases, probe: Probe) -> float:
        model = TiledLoE(config.model, [w.unsqueeze(0).clone() for w in weights],
                         [b.unsqueeze(0).clone() for b in biases]).eval()
        return psnr_from_mse(float(probe.squared_error(model)[0]) * 255.0 ** 2)  # 8-bit predictions, as decoded

    in_a, in_b = sampled(target), sampled(own)
    result = {"tile": tile, "block_a": index_a, "block_b": index_b, "weights": int(sum(i.size for i in coded_b.ints)),
              "b_file_psnr": psnr(wb, bb, in_b), "b_file_entropy_bits": sum(empirical_bits(i) for i in coded_b.ints),
              "b_file_coded_bytes": int(coded_b.coded_bytes), "a_file_on_b_psnr": psnr(wa, ba, in_a),
              "cold": cold, "steps": steps, "lr": lr}
    if cold:
        model = TiledLoE.initialised(config.model, [target.seed])
    else:
        model = TiledLoE(config.model, [w.unsqueeze(0).clone() for w in wa], [b.unsqueeze(0).clone() for b in ba])
    start = time.time()
    fit = dataclasses.replace(config.fit, steps=steps, learning_rate=lr)
    model = train(model, fit, [target], torch.device("cpu"), target.seed, progress, _VoxelPool)
    weights = [w[0].detach() for w in model.weights]
    biases = [b[0].detach() for b in model.biases]
    result.update(seconds=round(time.time() - start), fitted_float_psnr=psnr(weights, biases, in_a))
    if not cold:
        for scale in STEP_SCALES:
            rounded, bits = [], 0.0
            for w, before, step in zip(weights, wa, coded_b.steps):
                k = torch.round((w - before) / (float(step) * scale))
                bits += empirical_bits(k.numpy().astype(np.int64))
                rounded.append(before + k * float(step) * scale)
            result[f"change_x{scale:g}_psnr"] = psnr(rounded, biases, in_a)
            result[f"change_x{scale:g}_entropy_bits"] = bits
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the clip the file was encoded from")
    ap.add_argument("codec", help="a video .loe file of at least two time chunks")
    ap.add_argument("steps", type=int, help="fit steps of the second block")
    ap.add_argument("lr", type=float, help="peak learning rate of that fit")
    ap.add_argument("--tile", type=int, default=0, help="the spatial tile (default 0: top left)")
    ap.add_argument("--cold", action="store_true", help="fit from the seeded initialisation instead (PSNR only)")
    ap.add_argument("--eval-samples", type=int, default=262144, help="random voxels the PSNRs are measured on")
    ap.add_argument("--out", help="append the JSON line here")
    args = ap.parse_args()
    last = [time.time()]

    def progress(step: int, total: int, loss: float) -> None:
        if time.time() - last[0] > 120 or step == total:
            last[0] = time.time()
            print(f"step {step}/{total} loss {loss:.3g}", file=sys.stderr, flush=True)

    result = warm_start(args.source, args.codec, args.steps, args.lr, args.tile, args.eval_samples, args.cold, progress)
    print_and_append({"file": args.codec, **result}, args.out)


if __name__ == "__main__":
    main()
