"""``video_sizes.py`` with the fit's learning-rate schedule, Adam's ``beta2`` or the first layer's
learning rate changed, for trying them without a config field each (see benchmarks/README.md, "Holding
the peak learning rate")::

    python benchmarks/video_fit_variant.py exp 0.999 crop.mkv exp '{"fit": {"steps": 32000}}' 0.03 \\
        --preset video-best
    python benchmarks/video_fit_variant.py cosine 0.99 crop.mkv b2_099 '{"fit": {"steps": 32000}}' 0.03 \\
        --preset video-best

``--first-layer-lr S`` right after ``BETA2`` steps the first layer at ``S`` times the learning rate
(:func:`first_layer_lr`)::

    python benchmarks/video_fit_variant.py cosine 0.999 --first-layer-lr 0.1 crop.mkv fl01 \\
        '{"fit": {"steps": 32000}}' 0.03 --preset video-best

Schedules (after the fit's warm-up; ``t`` runs 0 -> 1 over the remaining steps, ``low`` is
``final_lr_fraction``): ``cosine`` (the codec's, :func:`loe_codec.fit.learning_rate`, with its
``hold_fraction`` if the changes set one), ``exp`` (``lr * low**t``: less time near the peak). The
quantization-aware fine-tuning (no warm-up) keeps its cosine. ``beta2`` applies to the fit and the
fine-tuning. Give every variant its own name: the fit cache does not know the change.
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from loe_codec import fit  # noqa: E402


def schedule(name: str) -> None:
    """Replace the fit's learning-rate schedule by ``name`` (``cosine``: unchanged, or ``exp``)."""
    if name == "cosine":
        return
    if name != "exp":
        raise ValueError(f"unknown schedule {name!r}: cosine or exp")
    cosine = fit.learning_rate

    def learning_rate(step: int, cfg) -> float:
        if cfg.warmup_steps == 0 or step < cfg.warmup_steps:  # the fine-tuning and the warm-up as they were
            return cosine(step, cfg)
        t = min((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 1.0)
        return cfg.learning_rate * cfg.final_lr_fraction ** t

    fit.learning_rate = learning_rate


def adam_beta2(beta2: float) -> None:
    """Make every fit's Adam use ``betas=(0.9, beta2)`` (the codec: torch's default 0.999)."""
    init = fit.FitLoop.__init__

    def with_beta2(self, model, fit_cfg, *args, **kwargs):
        init(self, model, fit_cfg, *args, **kwargs)
        self.opt = torch.optim.Adam(model.parameters(), lr=fit_cfg.learning_rate, betas=(0.9, beta2), fused=True)

    fit.FitLoop.__init__ = with_beta2


def first_layer_lr(scale: float) -> None:
    """Make every fit's first layer (weights and bias) step at ``scale`` times the learning rate. A sine
    network's first layer is multiplied by ``sine_w0`` (10 in the video presets), so at the same
    learning rate its pre-activations move ``sine_w0`` times as far per step as a later layer's."""
    if scale == 1.0:
        return
    init = fit.FitLoop.__init__

    def with_first_layer_scale(self, model, fit_cfg, *args, **kwargs):
        init(self, model, fit_cfg, *args, **kwargs)
        first = [model.weights[0], model.biases[0]]
        rest = [p for p in model.parameters() if all(p is not q for q in first)]
        opt = self.opt
        defaults = {k: v for k, v in opt.defaults.items() if k in ("betas", "eps")}
        self.opt = torch.optim.Adam([{"params": rest}, {"params": first, "scale": scale}], lr=fit_cfg.learning_rate,
                                    fused=True, **defaults)
        step = self.opt.step

        def scaled_step(*a, **k):  # FitLoop.step sets every group's rate just before this
            for group in self.opt.param_groups:
                group["lr"] *= group.get("scale", 1.0)
            return step(*a, **k)

        self.opt.step = scaled_step

    fit.FitLoop.__init__ = with_first_layer_scale


if __name__ == "__main__":
    try:
        schedule(sys.argv[1])
    except ValueError as exc:
        sys.exit(str(exc))
    adam_beta2(float(sys.argv[2]))
    rest = sys.argv[3:]
    if rest[:1] == ["--first-layer-lr"]:
        first_layer_lr(float(rest[1]))
        rest = rest[2:]
    sys.argv = ["video_sizes.py"] + rest
    runpy.run_path(str(Path(__file__).resolve().parent / "video_sizes.py"), run_name="__main__")
