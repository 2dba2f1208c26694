"""Run under ``torchrun`` by ``test_distributed.py``: ``python distributed_worker.py IMAGE OUT_DIR``.

Every rank runs the same encodes through the API (:data:`JOBS`, then two that fail on one rank
only) and writes what it saw, its results, errors and progress calls, to ``OUT_DIR/rank{R}.json``;
rank 0 writes the files ``OUT_DIR/{job}.loe``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from support import tiny_config


def job_config(job: str = "slope"):
    """Tiny fits, 2 tiles per batch (the 40x28 crop's 6 tiles make 3 batches: ranks 0, 1, 0) and a
    few quantization-aware steps, so that every stage runs in a fraction of a second; the
    ``ladder*`` jobs let tiles choose their size."""
    cfg = tiny_config(steps=8, samples_per_tile=256)
    ladder = (1.0, 0.5, 0.25) if job.startswith("ladder") else (1.0,)
    return dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, tiles_per_batch=2),
                               quant=dataclasses.replace(cfg.quant, qat_steps=4, unit_ladder=ladder))


# name -> keyword arguments of loe_codec.encode ("cache" keeps its fits in OUT_DIR/cache).
JOBS = {"slope": {}, "bpp": {"bpp": 30.0}, "psnr": {"psnr": 22.0}, "cache": {}, "resume": {"resume": True},
        "ladder": {}, "ladder_bpp": {"bpp": 30.0}}


def main(image: str, out_dir: str) -> None:
    import loe_codec

    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    seen: dict = {}
    for name, kwargs in JOBS.items():
        calls = []
        if name == "cache":
            kwargs = {"cache_dir": out / "cache"}
        result = loe_codec.encode(image, out / f"{name}.loe", config=job_config(name), device="cpu",
                                  progress=lambda *args: calls.append(args), **kwargs)
        seen[name] = {"result": dataclasses.asdict(result), "progress_calls": len(calls)}
    # Failures on one rank only: every rank must raise the same error.
    failing = {"source_missing_on_rank_1": (image if rank == 0 else str(out / "missing.png"), out / "x.loe"),
               "output_folder_missing": (image, out / "no" / "such" / "folder" / "x.loe")}
    for name, (source, output) in failing.items():
        try:
            loe_codec.encode(source, output, config=job_config(), device="cpu")
            seen[name] = {"error": None}
        except loe_codec.LoeError as exc:
            seen[name] = {"error": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(*sys.argv[1:])
