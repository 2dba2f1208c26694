"""Frozen configuration dataclasses and the named presets.

A `.loe` file stores the full :class:`CodecConfig` it was encoded with, so it
describes itself; :func:`CodecConfig.from_dict` rebuilds it on decode.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import UsageError

ARRANGEMENTS = ("coarse_to_fine", "fine_to_coarse", "uniform_coarse", "uniform_fine")
BLENDS = ("nearest", "linear")
ACTIVATIONS = ("sine", "relu", "gelu")
SAMPLINGS = ("uniform", "error")
"""How the fit draws its samples: uniformly, or more where the error is (:mod:`loe_codec.sampling`)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one tile network (every tile of a file shares it).

    ``banks[i]`` is the bank count *per dimension* of linear layer ``i``
    (``n`` in the paper: the layer owns ``n**dims`` weight matrices); there
    are ``len(banks)`` linear layers, the last one producing the channels.
    A layer with ``banks[i] == 1`` is a plain linear layer, so all-ones banks
    give a plain MLP.

    ``time_banks`` (3-D only; None: as ``banks``) gives the bank count along the last
    axis (time) of every layer separately: ``(1, 1, ...)`` tiles the banks over space
    only, so a block's banks hold its whole time span (``banks[i]**2`` matrices).
    """

    dims: int = 2
    width: int = 22
    banks: tuple[int, ...] = (1, 2, 2, 2, 1)
    arrangement: str = "coarse_to_fine"
    subdivide: int = 2
    blend: str = "nearest"
    pe_frequencies: int = 4
    activation: str = "sine"
    sine_w0: float = 10.0
    out_channels: int = 3
    time_banks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise UsageError(f"dims must be 2 or 3, got {self.dims}")
        if self.width < 1 or len(self.banks) < 2 or any(b < 1 for b in self.banks):
            raise UsageError("width must be >= 1 and banks needs >= 2 layers of >= 1 bank")
        if self.arrangement not in ARRANGEMENTS:
            raise UsageError(f"arrangement must be one of {ARRANGEMENTS}, got {self.arrangement!r}")
        if self.blend not in BLENDS:
            raise UsageError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if self.activation not in ACTIVATIONS:
            raise UsageError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.subdivide < 1 or self.pe_frequencies < 0 or self.out_channels < 1:
            raise UsageError("subdivide >= 1, pe_frequencies >= 0 and out_channels >= 1 are required")
        object.__setattr__(self, "banks", tuple(int(b) for b in self.banks))
        if self.time_banks is not None:
            if self.dims != 3:
                raise UsageError("time_banks needs a 3-D (video) model")
            if len(self.time_banks) != len(self.banks) or any(int(b) < 1 for b in self.time_banks):
                raise UsageError(f"time_banks needs one count >= 1 per layer ({len(self.banks)}), "
                                 f"got {tuple(self.time_banks)}")
            object.__setattr__(self, "time_banks", tuple(int(b) for b in self.time_banks))

    @property
    def layers(self) -> int:
        return len(self.banks)

    @property
    def in_features(self) -> int:
        """Width of the positional encoding: raw coordinate plus sin/cos per frequency."""
        return self.dims * (1 + 2 * self.pe_frequencies)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer."""
        sizes = [self.in_features] + [self.width] * (self.layers - 1) + [self.out_channels]
        return list(zip(sizes[:-1], sizes[1:]))

    def axis_banks(self, layer: int) -> tuple[int, ...]:
        """Bank count of ``layer`` along every dimension (x first)."""
        n = self.banks[layer]
        if self.time_banks is None:
            return (n,) * self.dims
        return (n,) * (self.dims - 1) + (self.time_banks[layer],)

    def bank_counts(self) -> list[int]:
        """Total banks (``n**dims``, the product of :meth:`axis_banks`) of every layer."""
        return [math.prod(self.axis_banks(layer)) for layer in range(self.layers)]

    def banked_layers(self) -> list[int]:
        """The layers with more than one bank."""
        return [layer for layer, count in enumerate(self.bank_counts()) if count > 1]

    def widest_within(self, budget: float, lowest: int = 1, highest: int | None = None) -> "ModelConfig":
        """This model at the largest width in ``[lowest, highest]`` (no upper bound: None) whose
        :meth:`parameter_count` is at most ``budget``; at ``lowest`` if none is."""
        model = dataclasses.replace(self, width=lowest)
        while highest is None or model.width < highest:
            wider = dataclasses.replace(model, width=model.width + 1)
            if wider.parameter_count() > budget:
                break
            model = wider
        return model

    def parameter_count(self) -> int:
        """Parameters of one tile network (weights of every bank plus the biases)."""
        return sum(nb * i * o + o for nb, (i, o) in zip(self.bank_counts(), self.layer_shapes()))

    def scales(self) -> list[float]:
        """Per-layer grid scale ``alpha_i``: cells per unit of tile coordinate.

        Coarse-to-fine: the first banked layer's grid of ``n`` cells covers the
        whole tile (each bank once) and every later banked layer is
        ``subdivide`` times finer. The other arrangements exist for ablation.
        """
        banked = self.banked_layers()
        base = float(max(self.axis_banks(banked[0]))) if banked else 1.0
        levels = [base * self.subdivide**k for k in range(len(banked))]
        if self.arrangement == "fine_to_coarse":
            levels = levels[::-1]
        elif self.arrangement == "uniform_coarse":
            levels = [levels[0]] * len(levels) if levels else []
        elif self.arrangement == "uniform_fine":
            levels = [levels[-1]] * len(levels) if levels else []
        out = [1.0] * self.layers
        for i, a in zip(banked, levels):
            out[i] = a
        return out


@dataclass(frozen=True)
class FitConfig:
    """How tile networks are fitted (``sampling``: one of :data:`SAMPLINGS`).

    The learning rate warms up linearly over ``warmup_steps``, stays at ``learning_rate`` for the
    fraction ``hold_fraction`` of the remaining steps, then decays along a cosine to
    ``final_lr_fraction`` of it (:func:`loe_codec.fit.learning_rate`).
    """

    steps: int = 16000
    samples_per_tile: int = 1024
    learning_rate: float = 1e-2
    final_lr_fraction: float = 0.05
    warmup_steps: int = 50
    tiles_per_batch: int = 16
    seed: int = 0
    sampling: str = "uniform"
    hold_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.samples_per_tile < 1 or self.tiles_per_batch < 1:
            raise UsageError("steps >= 0, samples_per_tile >= 1 and tiles_per_batch >= 1 are required")
        if not self.learning_rate > 0:
            raise UsageError("learning_rate must be > 0")
        if self.sampling not in SAMPLINGS:
            raise UsageError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not 0 <= self.hold_fraction < 1:
            raise UsageError(f"hold_fraction must be in [0, 1), got {self.hold_fraction}")


QUANT_SCHEMES = ("laplace", "int8")
SEEDED_REFERENCE = "seeded-uniform-1"
REFERENCES = ("none", SEEDED_REFERENCE)
"""Weight references a tile can be coded against (see :mod:`loe_codec.reference`)."""


@dataclass(frozen=True)
class QuantConfig:
    """Quantization and entropy coding of the bank weights.

    ``laplace`` (formats 2 and 3): layer ``l`` of tile ``t`` is quantized with a uniform
    step ``step[t, l]`` chosen from the rate-distortion slope ``slope`` and the
    layer's measured sensitivity (a Lagrangian choice: where a weight's noise
    costs less squared error, its step is coarser), fine-tuned with the
    quantizer in the loop for ``qat_steps`` steps at ``qat_learning_rate``, then
    range-coded under a discrete Laplace model per layer. ``slope`` is the
    squared error (pixel values in [0, 1], averaged over channels, summed over
    pixels) traded per bit: larger means smaller files.

    ``reference`` (format 3): the weights coded are ``w - gain * r`` where ``r``
    is the tile's seeded initialisation, regenerated by the decoder (see
    :mod:`loe_codec.reference`); ``"none"`` codes ``w`` itself (format 2).

    ``unit_ladder`` (format 4): the fractions of each hidden layer's units a tile may
    keep, widest first. With more than one rung the encoder fine-tunes every tile at
    every rung (its least important units pruned) and keeps, per tile, the rung of
    least ``error + slope * bits`` (a Lagrangian choice over model sizes: flat tiles
    get small networks); the tile's bytes then carry the masks of its kept units
    and only those units' weights. ``(1.0,)``: every tile keeps all units, no masks.

    ``int8`` (format 1, read only): symmetric ``bits``-bit integers with a
    float16 scale per (bank, output channel), stored raw.
    """

    scheme: str = "laplace"
    slope: float = 1e-3
    qat_steps: int = 0
    qat_learning_rate: float = 1e-3
    bits: int = 8
    bias_dtype: str = "float16"
    reference: str = SEEDED_REFERENCE
    unit_ladder: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        ladder = tuple(float(f) for f in self.unit_ladder)
        object.__setattr__(self, "unit_ladder", ladder)
        if not ladder or ladder[0] != 1.0 or any(not 0 < b < a for a, b in zip(ladder, ladder[1:])):
            raise UsageError(f"unit_ladder must start at 1.0 and decrease within (0, 1], got {ladder}")
        if self.reference not in REFERENCES:
            raise UsageError(f"this version knows the weight references {REFERENCES}, not {self.reference!r}; "
                             "a newer loe-codec may")
        if self.scheme not in QUANT_SCHEMES:
            raise UsageError(f"quantization scheme must be one of {QUANT_SCHEMES}, got {self.scheme!r}")
        if not 2 <= self.bits <= 8:
            raise UsageError(f"quantization bits must be in 2..8, got {self.bits}")
        if not self.slope > 0 or self.qat_steps < 0 or not self.qat_learning_rate > 0:
            raise UsageError("slope > 0, qat_steps >= 0 and qat_learning_rate > 0 are required")
        if self.bias_dtype not in ("float16", "float32"):
            raise UsageError("bias_dtype must be float16 or float32")

    @property
    def prunes_units(self) -> bool:
        """Whether tiles choose how many units to keep (their bytes then carry unit masks)."""
        return len(self.unit_ladder) > 1


@dataclass(frozen=True)
class TileConfig:
    """Tiling of the image: nominal tile size and the overlap margin blended at seams."""

    size: int = 256
    margin: int = 4

    def __post_init__(self) -> None:
        if self.size < 8:
            raise UsageError(f"tile size must be >= 8 pixels, got {self.size}")
        if self.margin < 0 or 2 * self.margin >= self.size:
            raise UsageError("tile margin must be >= 0 and smaller than half the tile size")


@dataclass(frozen=True)
class CodecConfig:
    """Everything an encode needs; stored whole in the file header."""

    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    tile: TileConfig = field(default_factory=TileConfig)
    preset: str = "custom"

    def to_dict(self) -> dict:
        """Plain dict of every field; ``model.time_banks``, ``fit.sampling`` and ``fit.hold_fraction``
        only where not their defaults (files without them are read by decoders from before them)."""
        d = dataclasses.asdict(self)
        if d["model"]["time_banks"] is None:
            del d["model"]["time_banks"]
        if d["fit"]["sampling"] == "uniform":
            del d["fit"]["sampling"]
        if d["fit"]["hold_fraction"] == 0:
            del d["fit"]["hold_fraction"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise ``ValueError``."""
        try:
            model = dict(d["model"])
            model["banks"] = tuple(model["banks"])
            if model.get("time_banks") is not None:
                model["time_banks"] = tuple(model["time_banks"])
            return cls(
                model=ModelConfig(**model),
                fit=FitConfig(**d["fit"]),
                quant=QuantConfig(**d["quant"]),
                tile=TileConfig(**d["tile"]),
                preset=str(d.get("preset", "custom")),
            )
        except (KeyError, TypeError, UsageError) as exc:
            raise ValueError(f"invalid codec config: {exc}") from exc

    def with_overrides(self, *, steps: int | None = None, tile: int | None = None,
                       seed: int | None = None, slope: float | None = None) -> "CodecConfig":
        """The same config with the common CLI overrides applied."""
        cfg = self
        if slope is not None:  # six significant digits keep the stored header short
            cfg = dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, slope=float(f"{slope:.6g}")))
        if steps is not None:
            cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps=steps))
        if seed is not None:
            cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, seed=seed))
        if tile is not None:
            margin = min(cfg.tile.margin, max(0, (tile - 1) // 2))
            cfg = dataclasses.replace(cfg, tile=TileConfig(size=tile, margin=margin))
        return cfg


def _preset(name: str, model: ModelConfig, fit: FitConfig, tile: TileConfig, quant: QuantConfig) -> CodecConfig:
    return CodecConfig(model=model, fit=fit, quant=quant, tile=tile, preset=name)


# Chosen on Kodak-like content on a 2-core CPU (see benchmarks/README.md): small
# batches and many Adam steps converge faster than big batches; a sine network
# over a 4-octave positional encoding beat ReLU and raw-coordinate SIREN inputs.
# lr 3e-2 fits faster in short runs but diverged on some tiles over 16k steps;
# 1e-2 and 2e-2 were stable there.
# Per tile, keep all, 3/4, 1/2 or 1/4 of the hidden units, whichever costs least at the slope: on kodim23
# (balanced, 6 tiles) this moved the low-rate end from 26.45 dB at 0.232 bpp to 27.90 dB at 0.226 bpp,
# and left the curve where it was above 0.4 bpp (benchmarks/README.md, "Unit ladder"); the rungs'
# short fine-tuning adds about one fine-tuning's time (~6% of a balanced encode).
UNIT_LADDER = (1.0, 0.75, 0.5, 0.25)

PRESETS: dict[str, CodecConfig] = {
    "fast": _preset(
        "fast",
        # Short fits gain from higher input frequencies: 6 PE octaves and w0 20 beat 4 and 10 on all
        # 6 Kodak images of benchmarks/results/ablation_fast_cpu.md (BD-PSNR +0.06..+0.61 dB,
        # BD-rate -8.5..-18.8%); at 16k steps (balanced) the same change is a tie.
        ModelConfig(width=16, banks=(1, 2, 2, 1), pe_frequencies=6, sine_w0=20.0),
        # Short runs gain from a higher rate (kodim20 / kodim05 at 2000 steps:
        # 24.6 / 19.3 dB at 1e-2, 26.0 / 20.3 dB at 3e-2).
        FitConfig(steps=2000, learning_rate=3e-2),
        TileConfig(size=256, margin=4),
        QuantConfig(slope=1e-3, qat_steps=200, qat_learning_rate=3e-3, unit_ladder=UNIT_LADDER),
    ),
    # Fine-tuning with the quantizer in the loop at lr 1e-3 beat 3e-3 after a converged fit.
    "balanced": _preset("balanced", ModelConfig(), FitConfig(), TileConfig(size=256, margin=4),
                        QuantConfig(slope=1e-3, qat_steps=1000, qat_learning_rate=1e-3, unit_ladder=UNIT_LADDER)),
    "best": _preset(
        "best",
        ModelConfig(),
        FitConfig(steps=64000),
        TileConfig(size=256, margin=4),
        QuantConfig(slope=1e-3, qat_steps=4000, qat_learning_rate=1e-3, unit_ladder=UNIT_LADDER),
    ),
}


# Slope at quality 0 and at quality 100, log-linear between: quality 50 is 1e-3, the presets'
# slope, where the coded file matched the float network's PSNR on Kodak (kodim23, balanced);
# 1e-5 costs ~55% more bits for < 0.1 dB, 1e-1 loses ~8 dB before fine-tuning.
QUALITY_SLOPES = (1e-1, 1e-5)


def slope_for_quality(quality: int) -> float:
    """The rate–distortion slope of a quality level 0..100 (higher quality: smaller slope, more bits)."""
    if not 0 <= quality <= 100:
        raise UsageError(f"quality must be in 0..100, got {quality}")
    low, high = (math.log10(s) for s in QUALITY_SLOPES)
    return 10 ** (low + (high - low) * quality / 100)


@dataclass(frozen=True)
class QualityRung:
    """From ``min_quality`` up, a preset's network is ``width`` wide and the slope runs log-linearly
    from ``slopes[0]`` at ``min_quality`` to ``slopes[1]`` at quality 100."""

    min_quality: int
    width: int
    slopes: tuple[float, float]


# Above q60 the `balanced` network saturates (kodim23: q50 -> q70 spends 21% more bits for
# 0.16 dB); width 32 carries the curve on (benchmarks/results/ablation_cpu.md: 35.87 dB at
# 1.00 bpp on kodim23 where width 22 stops at 34.2; 27.21 at 1.23 on kodim05 vs 24.4). Its
# slopes restart coarser so that each quality step above 60 buys quality, not only bits.
QUALITY_LADDERS: dict[str, tuple[QualityRung, ...]] = {
    "balanced": (QualityRung(61, 32, (3e-3, 1e-5)),),
    "best": (QualityRung(61, 32, (3e-3, 1e-5)),),
}


def config_for_quality(config: CodecConfig, quality: int) -> CodecConfig:
    """``config`` at a quality level 0..100: the slope of :func:`slope_for_quality`, or, for a named
    preset's own network with a :data:`QUALITY_LADDERS` rung at that quality, the rung's wider
    network and slope. Other configs keep their network."""
    slope = slope_for_quality(quality)  # checks the range
    rungs = [r for r in QUALITY_LADDERS.get(config.preset, ()) if r.min_quality <= quality]
    if not rungs or config.model != dataclasses.replace(PRESETS[config.preset].model,
                                                        out_channels=config.model.out_channels):
        return config.with_overrides(slope=slope)
    rung = rungs[-1]
    low, high = (math.log10(s) for s in rung.slopes)
    slope = 10 ** (low + (high - low) * (quality - rung.min_quality) / (100 - rung.min_quality))
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, width=rung.width))
    return wider.with_overrides(slope=slope)


def preset(name: str) -> CodecConfig:
    """The named preset (``fast``, ``balanced`` or ``best``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def mlp_baseline(config: CodecConfig, learning_rate: float | None = None) -> CodecConfig:
    """``config`` as a plain MLP: all banks 1, the widest width within the LoE parameter count.

    Bits, steps, sampling and tiling stay the same, so both files cost about the same bytes;
    ``learning_rate`` (default: the preset's) lets the baseline get its own best rate.
    """
    budget = config.model.parameter_count()
    model = dataclasses.replace(config.model, banks=(1,) * config.model.layers, time_banks=None).widest_within(budget)
    fit = config.fit if learning_rate is None else dataclasses.replace(config.fit, learning_rate=learning_rate)
    return dataclasses.replace(config, model=model, fit=fit, preset=f"{config.preset}-mlp")
