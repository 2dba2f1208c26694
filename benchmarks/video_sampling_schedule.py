"""``video_sizes.py`` with error-driven sampling used for only part of an encode, to find where it
costs (see benchmarks/README.md, "Error-driven sampling")::

    python benchmarks/video_sampling_schedule.py qat-uniform bbb60.mkv best_err \\
        '{"fit": {"sampling": "error"}}' 0.02 --preset video-best --cache cache_0.02
    python benchmarks/video_sampling_schedule.py uniform-after=0.75 crop.mkv ann75 \\
        '{"fit": {"steps": 32000, "sampling": "error"}}' 0.02 --preset video-best

``qat-uniform``: the fit draws error-driven samples, the quantization-aware fine-tuning uniform ones
(the fit cache of the plain error-driven run is reused: it holds the fit before the fine-tuning).
``uniform-after=F``: the fit switches to uniform samples after the fraction ``F`` of its steps (give
the variant its own name: the fit cache does not know the switch).
"""

import dataclasses
import importlib
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec import fit  # noqa: E402


def qat_uniform() -> None:
    encode = importlib.import_module("loe_codec.encode")  # the module: loe_codec.encode is also the API call
    finetune = fit.finetune_quantized

    def uniform_finetune(model, steps, fit_cfg, *args, **kwargs):
        return finetune(model, steps, dataclasses.replace(fit_cfg, sampling="uniform"), *args, **kwargs)

    encode.finetune_quantized = uniform_finetune


def uniform_after(fraction: float) -> None:
    step = fit.FitLoop.step

    def switching_step(self, i):
        if self.pool.sampler is not None and i >= fraction * self.fit_cfg.steps:
            self.pool.sampler = None  # its next draw is uniform and unweighted
        return step(self, i)

    fit.FitLoop.step = switching_step


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "qat-uniform":
        qat_uniform()
    elif mode.startswith("uniform-after="):
        uniform_after(float(mode.split("=", 1)[1]))
    else:
        sys.exit(f"unknown mode {mode!r}: qat-uniform or uniform-after=F")
    sys.argv = ["video_sizes.py"] + sys.argv[2:]
    runpy.run_path(str(Path(__file__).resolve().parent / "video_sizes.py"), run_name="__main__")
