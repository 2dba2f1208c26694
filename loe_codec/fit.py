"""Fitting a batch of tile networks to their pixels (Adam, random pixel sampling)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .config import FitConfig, ModelConfig, QuantConfig
from .errors import CodecRuntimeError, UsageError
from .model import TiledLoE
from .model.tile_major import DISPATCHES
from .sampling import SampledPool

PRECISIONS = ("fp32", "bf16")

ProgressFn = Callable[[int, int, float], None]
"""``progress(step_done, total_steps, current_loss)``."""

CheckpointFn = Callable[[int, TiledLoE], None]
"""``checkpoint(step_done, model)``: called after every step with the model being fitted (on the fitting
device, in training mode); it may evaluate the model (under ``torch.no_grad()``) but must not change it."""


class Snapshots(Protocol):
    """Where a fit keeps its state now and then, so that a fit that is killed goes on where it stopped
    (:class:`loe_codec.fitcache.FitSnapshots` keeps them in a file)."""

    def load(self) -> dict | None:
        """The last state saved (:meth:`FitLoop.state`), or None."""

    def due(self) -> bool:
        """Whether a state should be saved now."""

    def save(self, state: dict) -> None:
        """Keep ``state`` (:meth:`FitLoop.state`: tensors on the fitting device, numbers)."""


@dataclass
class TileTarget:
    """Pixels one tile network is fitted to.

    ``pixels`` is ``[h, w, C]`` uint8: the tile's fit window of the image, whose
    top-left pixel sits at image position ``(window_x, window_y)``. The tile's
    coordinate domain starts at ``(domain_x, domain_y)`` and spans
    ``(extent_x, extent_y)`` image pixels; tile-local ``p = (pos - domain) / extent``.
    """

    pixels: torch.Tensor
    window_x: int
    window_y: int
    domain_x: float
    domain_y: float
    extent_x: float
    extent_y: float
    seed: int


def learning_rate(step: int, cfg: FitConfig) -> float:
    """Linear warm-up, the peak ``learning_rate`` for ``hold_fraction`` of the remaining steps, then
    cosine decay to ``final_lr_fraction`` of it."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    t = min((step - cfg.warmup_steps) / span, 1.0)
    t = max(t - cfg.hold_fraction, 0.0) / (1 - cfg.hold_fraction)
    low = cfg.final_lr_fraction
    return cfg.learning_rate * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t)))


class _PixelPool(SampledPool):
    """All tiles' pixels flattened on the device, with per-tile geometry, for sampling."""

    def __init__(self, targets: list[TileTarget], device: torch.device):
        sizes = [t.pixels.shape[0] * t.pixels.shape[1] for t in targets]
        self.pixels = torch.cat([t.pixels.reshape(-1, t.pixels.shape[2]) for t in targets]).to(device)
        as_t = lambda vals, dt: torch.tensor(vals, dtype=dt, device=device).unsqueeze(1)  # noqa: E731
        self.offset = as_t([0] + list(torch.tensor(sizes).cumsum(0)[:-1].tolist()), torch.long)
        self.count = as_t(sizes, torch.long)
        self.width = as_t([t.pixels.shape[1] for t in targets], torch.long)
        self.origin_x = as_t([t.window_x + 0.5 - t.domain_x for t in targets], torch.float32)
        self.origin_y = as_t([t.window_y + 0.5 - t.domain_y for t in targets], torch.float32)
        self.extent_x = as_t([t.extent_x for t in targets], torch.float32)
        self.extent_y = as_t([t.extent_y for t in targets], torch.float32)
        self.num_tiles = len(targets)
        self.shapes = [(1, t.pixels.shape[0], t.pixels.shape[1]) for t in targets]
        self.tile = torch.arange(self.num_tiles, device=device).unsqueeze(1)

    def sample(self, per_tile: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random pixels: tile ``[N]``, coords ``[N, 2]`` (x, y), targets ``[N, C]`` in ``[-0.5, 0.5]``."""
        local = self.draw(per_tile, gen)
        row, col = local // self.width, local % self.width
        x = (col + self.origin_x) / self.extent_x
        y = (row + self.origin_y) / self.extent_y
        coords = torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
        target = self.pixels[(self.offset + local).reshape(-1)].float() / 255.0 - 0.5
        return self.tile.expand(-1, per_tile).reshape(-1), coords, target


def fit_tiles(model_cfg: ModelConfig, fit_cfg: FitConfig, targets: list[TileTarget],
              device: str | torch.device = "cpu", progress: ProgressFn | None = None,
              precision: str = "fp32", dispatch: str = "auto",
              checkpoint: CheckpointFn | None = None, snapshots: Snapshots | None = None) -> TiledLoE:
    """Fit one network per target, all in one batched model (``precision``, ``dispatch``, ``snapshots``:
    see :func:`train`).

    Returns the fitted :class:`TiledLoE` (on the CPU, float32, tile ``k`` = ``targets[k]``).
    ``checkpoint`` (see :data:`CheckpointFn`) sees the model after every step, e.g. to record a
    convergence curve; it does not change the fit.
    """
    if not targets:
        raise ValueError("fit_tiles needs at least one tile")
    model = TiledLoE.initialised(model_cfg, [t.seed for t in targets])
    # One sampling stream per batch, seeded by its first tile.
    return train(model, fit_cfg, targets, torch.device(device), targets[0].seed, progress,
                 precision=precision, dispatch=dispatch, checkpoint=checkpoint, snapshots=snapshots)


def finetune_quantized(model: TiledLoE, steps: torch.Tensor, fit_cfg: FitConfig, quant_cfg: QuantConfig,
                       targets: list, device: str | torch.device = "cpu",
                       progress: ProgressFn | None = None, pool_type: type = _PixelPool,
                       offsets: list[torch.Tensor] | None = None,
                       units: list[torch.Tensor] | None = None, precision: str = "fp32",
                       dispatch: str = "auto") -> TiledLoE:
    """Quantization-aware fine-tuning: ``quant_cfg.qat_steps`` more steps with the weights rounded to
    ``steps`` ``[T, layers]`` (on grids shifted by ``offsets``, per layer shaped like its weights)
    in the forward pass (straight-through gradients), the units not in ``units`` (bool ``[T, width]``
    per hidden layer; None: all) dropped.

    The learning rate decays from ``qat_learning_rate`` along the fit's cosine (no warm-up, no hold).
    Returns the model with quantization turned off again (its float weights now sit where rounding
    costs little).
    ``pool_type`` samples the targets (video blocks bring their own); ``precision``, ``dispatch``: see
    :func:`train`.
    """
    qat = dataclasses.replace(fit_cfg, steps=quant_cfg.qat_steps, learning_rate=quant_cfg.qat_learning_rate,
                              warmup_steps=0, hold_fraction=0.0)
    model.quantize_in_loop(steps, offsets, units)
    try:
        return train(model, qat, targets, torch.device(device), targets[0].seed + 1, progress, pool_type,
                     precision, dispatch)
    finally:
        model.quantize_in_loop(None)


SPIKE_FACTOR = 2.0  # a tile whose mean loss over a check's window is this many times its best has blown up
GUARD_CHECKS = 100  # checks per fit
MIN_GUARD_WINDOW = 50  # steps per check at least: a short window's mean is too noisy to judge
DAMPING = 0.5  # a rolled-back tile's step size is multiplied by this


class SpikeGuard:
    """Rolls back a tile whose fit blew up, and slows it down.

    Sine networks fitted with Adam at a high learning rate sometimes jump out of a good basin: the hidden
    weights grow, the loss jumps and never comes back (Big Buck Bunny at 0.05 bpp with ``video-best``: one
    640x360x60 block's first two hidden layers grew to 3-5x the others' weights, 26.4 dB where it alone reached
    36.3). Every ``window`` steps after the warm-up the guard compares each tile's mean training loss over
    the window with its best window so far. A tile :data:`SPIKE_FACTOR` times worse (or whose loss is no
    longer finite) gets back its parameters and Adam moments as of its best window's end, and its steps
    are scaled by :data:`DAMPING` from then on (again at each further rollback); a tile at a new best is
    saved.

    Tiles are independent in the batch, so a healthy tile's fit is the same bit for bit with or without
    the guard, and so is every tile of a fit that never blows up. Each check reads one flag back to the
    host (a GPU sync every ``window`` steps); the steps in between read nothing.
    ``rollbacks`` ``[T]`` counts each tile's rollbacks.
    """

    def __init__(self, params: list[torch.Tensor], opt: torch.optim.Optimizer, steps: int, start: int):
        self.params, self.opt = params, opt
        self.window = max(MIN_GUARD_WINDOW, steps // GUARD_CHECKS)
        self.start = start
        num_tiles, device = params[0].shape[0], params[0].device
        self.sum = torch.zeros(num_tiles, device=device)
        self.seen = 0
        self.best: torch.Tensor | None = None
        self.saved: list[torch.Tensor] = []
        self.scale = torch.ones(num_tiles, device=device)
        self.damped = False
        self.rollbacks = torch.zeros(num_tiles, dtype=torch.long, device=device)

    def state(self) -> dict:
        """What the guard has seen so far (for :meth:`FitLoop.state`)."""
        return {"sum": self.sum, "seen": self.seen, "best": self.best, "saved": self.saved, "scale": self.scale,
                "damped": self.damped, "rollbacks": self.rollbacks}

    def load_state(self, state: dict) -> None:
        device = self.sum.device
        self.sum, self.scale = state["sum"].to(device), state["scale"].to(device)
        self.rollbacks = state["rollbacks"].to(device)
        self.best = None if state["best"] is None else state["best"].to(device)
        self.saved = [t.to(device) for t in state["saved"]]
        self.seen, self.damped = int(state["seen"]), bool(state["damped"])

    def _state(self) -> list[torch.Tensor]:
        """The tensors a rollback restores: every parameter and its Adam moments (all tile-major)."""
        out = []
        for p in self.params:
            state = self.opt.state.get(p, {})
            out += [p.data] + [state[k] for k in ("exp_avg", "exp_avg_sq") if k in state]
        return out

    @staticmethod
    def _per_tile(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return mask.view(-1, *[1] * (like.dim() - 1))

    def before_step(self) -> list[torch.Tensor] | None:
        """The parameters before the Adam step, when some tile's steps are damped (else None)."""
        return [p.detach().clone() for p in self.params] if self.damped else None

    def after_step(self, step: int, old: list[torch.Tensor] | None, tile_loss: torch.Tensor) -> None:
        """Damp the step just taken (``old``: :meth:`before_step`'s), count ``tile_loss`` ``[T]`` (the
        step's loss per tile) and check at the end of each window."""
        if old is not None:
            with torch.no_grad():
                for p, o in zip(self.params, old):
                    scale = self._per_tile(self.scale, p)
                    p.copy_(torch.where(scale < 1, o + scale * (p - o), p))
        if step < self.start:
            return
        self.sum += tile_loss
        self.seen += 1
        if self.seen == self.window:
            self.check()

    @torch.no_grad()
    def check(self) -> None:
        """Judge the window counted so far and start a new one (a last window too short to judge is dropped)."""
        if self.seen < min(self.window, MIN_GUARD_WINDOW // 2):
            return
        mean = self.sum / self.seen
        self.sum.zero_()
        self.seen = 0
        if self.best is None:
            self.best, self.saved = mean, [t.clone() for t in self._state()]
            return
        spiked = ~(mean <= SPIKE_FACTOR * self.best)  # a non-finite loss counts as blown up
        better = (mean < self.best) & ~spiked
        for live, saved in zip(self._state(), self.saved):
            live.copy_(torch.where(self._per_tile(spiked, live), saved, live))
            saved.copy_(torch.where(self._per_tile(better, live), live, saved))
        self.best = torch.where(better, mean, self.best)
        self.scale = torch.where(spiked, self.scale * DAMPING, self.scale)
        self.rollbacks += spiked
        self.damped = self.damped or bool(spiked.any())


class FitLoop:
    """The Adam steps of :func:`train`, one :meth:`step` call each.

    A step samples ``samples_per_tile`` pixels of every tile, evaluates the model on them as a
    tile-major batch and takes one Adam step. On CUDA with the sync-free dispatch a step reads
    nothing back to the host (its loss stays on the device). ``tile_loss`` ``[T]`` holds the last
    step's loss of every tile (its samples' mean squared error, importance-weighted under error-driven
    sampling, before the step; a detached device tensor: for convergence traces). With ``guard`` a
    :class:`SpikeGuard` (``self.guard``) rolls back the tiles that blow up.
    """

    def __init__(self, model: TiledLoE, fit_cfg: FitConfig, pool, seed: int, precision: str = "fp32",
                 dispatch: str = "auto", guard: bool = False):
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if dispatch not in DISPATCHES:
            raise UsageError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
        self.model, self.fit_cfg, self.pool, self.dispatch = model, fit_cfg, pool, dispatch
        self.device = model.weights[0].device
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.opt = torch.optim.Adam(model.parameters(), lr=fit_cfg.learning_rate, fused=True)
        self.bf16 = precision == "bf16"
        self.tile_loss: torch.Tensor | None = None
        self.guard = SpikeGuard(list(model.parameters()), self.opt, fit_cfg.steps, fit_cfg.warmup_steps) \
            if guard else None

    def state(self, next_step: int) -> dict:
        """Everything the steps from ``next_step`` on depend on: the parameters, Adam's moments, the
        sampling generator, the guard and the error-driven sampler's running errors. Loaded into a new
        loop of the same model, config and targets (:meth:`load_state`), the fit goes on bit for bit as
        if it had not stopped."""
        sampler = getattr(self.pool, "sampler", None)
        return {"step": next_step, "params": [p.detach() for p in self.model.parameters()],
                "adam": self.opt.state_dict(), "generator": self.gen.get_state(),
                "guard": None if self.guard is None else self.guard.state(),
                "sampler_error": None if sampler is None else sampler.error}

    def load_state(self, state: dict) -> int:
        """Take up a :meth:`state` (checked against this loop's parameters); returns its next step."""
        params = list(self.model.parameters())
        saved = state["params"]
        sampler = getattr(self.pool, "sampler", None)
        moments = list(state["adam"]["state"].values())
        if (len(saved) != len(params) or any(a.shape != b.shape for a, b in zip(saved, params))
                or len(moments) != len(params)
                or any(m["exp_avg"].shape != p.shape for m, p in zip(moments, params))
                or (state["guard"] is None) != (self.guard is None)
                or (state["sampler_error"] is None) != (sampler is None)
                or (sampler is not None and state["sampler_error"].shape != sampler.error.shape)
                or not 0 <= int(state["step"]) <= self.fit_cfg.steps):
            raise ValueError("the saved fit state is not one of this fit")
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)
        self.opt.load_state_dict(state["adam"])
        self.gen.set_state(state["generator"])
        if self.guard is not None:
            self.guard.load_state(state["guard"])
        if sampler is not None:
            sampler.error = state["sampler_error"].to(sampler.error.device)
        return int(state["step"])

    def step(self, step: int) -> torch.Tensor:
        """Adam step number ``step`` (it sets the learning rate); returns the loss before it (a 0-d
        device tensor: the sum over tiles of their mean squared error)."""
        cfg = self.fit_cfg
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        tile, coords, target = self.pool.sample(cfg.samples_per_tile, self.gen)
        # bfloat16 autocast: the products run in bfloat16, the weights and the loss stay float32.
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
            pred = self.model(tile, coords, tile_major=True, dispatch=self.dispatch)
        err = (pred.float() - target) ** 2
        weights = getattr(self.pool, "weights", None)
        if weights is not None:  # error-driven samples: importance weights keep the uniform objective
            self.pool.observe(err.detach().mean(dim=1))
            err = err * weights.unsqueeze(1)
        # Sum of per-tile means: each tile's gradient is independent of the batch size.
        per_tile = err.view(self.model.num_tiles, -1).mean(dim=1)
        loss = per_tile.sum()
        self.tile_loss = per_tile.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        old = self.guard.before_step() if self.guard is not None else None
        self.opt.step()
        if self.guard is not None:
            self.guard.after_step(step, old, self.tile_loss)
        return loss.detach()


def train(model: TiledLoE, fit_cfg: FitConfig, targets: list, device: torch.device, seed: int,
          progress: ProgressFn | None, pool_type: type = _PixelPool, precision: str = "fp32",
          dispatch: str = "auto", checkpoint: CheckpointFn | None = None,
          snapshots: Snapshots | None = None) -> TiledLoE:
    """``fit_cfg.steps`` Adam steps on random samples of ``targets`` drawn by ``pool_type(targets, device)``
    (anything with ``sample(per_tile, generator) -> (tile, coords, target)``); the model comes back on
    the CPU. ``checkpoint(step_done, model)``, if given, is called after every step.

    ``precision``: ``fp32``, or ``bf16`` for bfloat16 autocast (meant for CUDA; float32 weights and
    loss). ``dispatch``: the bank dispatch of :meth:`TiledLoE.forward` (``auto``: today's exact path on
    the CPU, the sync-free one on CUDA). Both are choices of this run, not of the codec config: the
    fitted networks differ in rounding only. A :class:`SpikeGuard` watches every fit (its last, partial
    window too).

    ``snapshots``: the fit starts from the state saved there, if any, and saves its state whenever
    ``snapshots.due()``; the result is the same bit for bit as a fit that never stopped.
    """
    model = model.to(device)
    if model.quant_steps is not None:
        model.quantize_in_loop(model.quant_steps, model.quant_offsets, model.quant_units)  # follow the model to the device
    pool = pool_type(targets, device)
    if fit_cfg.sampling == "error":
        pool.sample_by_error()
    loop = FitLoop(model, fit_cfg, pool, seed, precision, dispatch, guard=True)
    first = 0
    saved = snapshots.load() if snapshots is not None else None
    if saved is not None:
        initial = [p.detach().clone() for p in model.parameters()]
        try:
            first = loop.load_state(saved)
        except (ValueError, KeyError, TypeError, AttributeError):  # not this fit's: start afresh
            with torch.no_grad():  # a state that failed half-way may have been partly taken up
                for p, value in zip(model.parameters(), initial):
                    p.copy_(value)
            loop = FitLoop(model, fit_cfg, pool, seed, precision, dispatch, guard=True)
            first = 0
        if progress is not None and first > 0:
            progress(first, fit_cfg.steps, float("nan"))
    report_every = max(1, fit_cfg.steps // 100)
    for step in range(first, fit_cfg.steps):
        loss = loop.step(step)
        if progress is not None and ((step + 1) % report_every == 0 or step + 1 == fit_cfg.steps):
            progress(step + 1, fit_cfg.steps, float(loss) / len(targets))
        if checkpoint is not None:
            checkpoint(step + 1, model)
        if snapshots is not None and step + 1 < fit_cfg.steps and snapshots.due():
            snapshots.save(loop.state(step + 1))
    loop.guard.check()  # the last, partial window
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CodecRuntimeError("fitting diverged (non-finite weights); try a lower learning rate or fewer steps")
    return model.cpu().eval()
