import copy
import dataclasses

import pytest
import torch

from loe_codec.config import FitConfig, ModelConfig, QuantConfig
from loe_codec.errors import CodecRuntimeError, UsageError
from loe_codec import fit as fitmod
from loe_codec.fit import FitLoop, _PixelPool, finetune_quantized, fit_tiles, learning_rate
from loe_codec.fitcache import FitSnapshots
from loe_codec.hostreads import HostReads
from loe_codec.model import TiledLoE
from loe_codec.reference import tile_seed
from loe_codec.quantize import MIN_STEP, storable_steps
from support import two_tile_targets, window_mse, window_mses

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=30, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5, seed=0)


_targets = two_tile_targets
_mse = window_mse


def test_same_inputs_and_seed_give_bit_identical_weights():
    a = fit_tiles(MODEL, FIT, _targets(), device="cpu")
    b = fit_tiles(MODEL, FIT, _targets(), device="cpu")
    for pa, pb in zip(list(a.weights) + list(a.biases), list(b.weights) + list(b.biases)):
        assert torch.equal(pa, pb)
    # ...and the seed matters (so the check above is not vacuous).
    c = fit_tiles(MODEL, FIT, _targets(seed=1), device="cpu")
    assert not torch.equal(a.weights[1], c.weights[1])


def test_loss_goes_down_on_a_tiny_image():
    targets = _targets()
    losses = []
    fitted = fit_tiles(MODEL, dataclasses.replace(FIT, steps=40), targets, device="cpu",
                       progress=lambda step, total, loss: losses.append((step, loss)))
    initial = fit_tiles(MODEL, dataclasses.replace(FIT, steps=0), targets, device="cpu")
    before, after = _mse(initial, targets), _mse(fitted, targets)
    assert after < 0.5 * before, (before, after)
    # Progress reports every step here (steps < 100), ending at the last one, with a falling loss.
    assert [s for s, _ in losses] == list(range(1, 41))
    first, last = sum(l for _, l in losses[:5]) / 5, sum(l for _, l in losses[-5:]) / 5
    assert last < first


def test_checkpoint_sees_the_model_after_every_step_without_changing_the_fit():
    targets = _targets()
    plain = fit_tiles(MODEL, FIT, targets, device="cpu")
    seen, mses = [], {}

    def checkpoint(step, model):
        seen.append(step)
        if step in (1, 10, FIT.steps):
            with torch.no_grad():
                mses[step] = _mse(model, targets)  # evaluating mid-fit, as a convergence curve does

    hooked = fit_tiles(MODEL, FIT, targets, device="cpu", checkpoint=checkpoint)
    assert seen == list(range(1, FIT.steps + 1))
    for pa, pb in zip(list(plain.weights) + list(plain.biases), list(hooked.weights) + list(hooked.biases)):
        assert torch.equal(pa, pb)
    assert mses[FIT.steps] == _mse(hooked, targets)  # the last checkpoint sees the returned weights
    assert mses[FIT.steps] < mses[10] < mses[1]


def test_fit_returns_cpu_float32_model_one_network_per_target():
    model = fit_tiles(MODEL, dataclasses.replace(FIT, steps=2), _targets(), device="cpu")
    assert model.num_tiles == 2
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    assert not model.training


def test_pixel_pool_samples_pixel_centres_with_their_values():
    targets = _targets()
    pool = _PixelPool(targets, torch.device("cpu"))
    tile, coords, target = pool.sample(64, torch.Generator().manual_seed(0))
    assert tile.tolist() == [0] * 64 + [1] * 64
    for k, (xy, value) in enumerate(zip(coords, target)):
        t = targets[int(tile[k])]
        # Invert p = (pos - domain) / extent with pos = window + col + 0.5.
        col = float(xy[0]) * t.extent_x + t.domain_x - t.window_x - 0.5
        row = float(xy[1]) * t.extent_y + t.domain_y - t.window_y - 0.5
        assert abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3
        pixel = t.pixels[round(row), round(col)].float() / 255 - 0.5
        torch.testing.assert_close(value, pixel)
        assert 0 <= float(xy.min()) and float(xy.max()) <= 1


def test_learning_rate_schedule():
    cfg = FitConfig(steps=100, learning_rate=1e-2, warmup_steps=10, final_lr_fraction=0.1)
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[9] == pytest.approx(1e-2)
    assert lrs[10] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine decay is monotone
    assert learning_rate(100, cfg) == pytest.approx(1e-3)
    assert min(lrs) >= 1e-3 - 1e-12


def test_hold_fraction_keeps_the_peak_then_runs_the_cosine_over_the_rest():
    plain = FitConfig(steps=110, learning_rate=1e-2, warmup_steps=10, final_lr_fraction=0.1)
    held = dataclasses.replace(plain, hold_fraction=0.5)
    assert [learning_rate(s, held) for s in range(10)] == [learning_rate(s, plain) for s in range(10)]
    assert all(learning_rate(s, held) == 1e-2 for s in range(10, 61))  # half the steps after the warm-up
    # The cosine squeezed into the second half: step 60 + k there is step 10 + 2k of the plain one.
    for k in (5, 20, 40, 50):
        assert learning_rate(60 + k, held) == pytest.approx(learning_rate(10 + 2 * k, plain))
    assert learning_rate(110, held) == pytest.approx(1e-3)
    with pytest.raises(UsageError, match="hold_fraction"):
        FitConfig(hold_fraction=1.0)


def test_the_fine_tuning_does_not_hold_its_learning_rate(well_fitted, monkeypatch):
    import loe_codec.fit as fit_module

    seen = []
    monkeypatch.setattr(fit_module, "train", lambda model, cfg, *a, **k: seen.append(cfg) or model)
    qat = QuantConfig(qat_steps=5, qat_learning_rate=3e-3)
    finetune_quantized(copy.deepcopy(well_fitted), _coarse_steps(well_fitted, 0.5),
                       dataclasses.replace(FIT, hold_fraction=0.25), qat, _targets())
    assert [(c.hold_fraction, c.warmup_steps, c.steps) for c in seen] == [(0.0, 0, 5)]


def test_tile_seeds_differ_per_tile_and_run():
    seeds = {tile_seed(s, t) for s in range(3) for t in range(50)}
    assert len(seeds) == 150
    assert tile_seed(4, 7) == tile_seed(4, 7)


def test_a_diverging_fit_is_an_error_not_a_silent_file():
    wild = dataclasses.replace(FIT, learning_rate=1e38, warmup_steps=1)
    with pytest.raises(CodecRuntimeError, match="diverged"):
        fit_tiles(MODEL, wild, _targets())


# --- quantization-aware fine-tuning ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def well_fitted():
    """The two tiles fitted to convergence (80 steps), float weights."""
    return fit_tiles(MODEL, dataclasses.replace(FIT, steps=80), _targets(), device="cpu")


def _coarse_steps(model, fraction: float) -> torch.Tensor:
    """Float16-exact steps ``[T, layers]`` of ``fraction`` times each layer's weight rms (coarse)."""
    rms = torch.stack([w.detach().pow(2).mean(dim=(1, 2, 3)).sqrt() for w in model.weights], 1)
    return storable_steps(fraction * rms)


def _quantized_mse(model, steps) -> float:
    model.quantize_in_loop(steps)
    try:
        return _mse(model, _targets())
    finally:
        model.quantize_in_loop(None)


def test_quantization_aware_finetuning_lowers_the_quantized_error(well_fitted):
    steps = _coarse_steps(well_fitted, 0.5)
    float_error = _mse(well_fitted, _targets())
    rounded_error = _quantized_mse(copy.deepcopy(well_fitted), steps)
    assert rounded_error > 3 * float_error  # the steps are coarse enough to hurt
    qat = QuantConfig(qat_steps=40, qat_learning_rate=3e-3)
    losses = []
    tuned = finetune_quantized(copy.deepcopy(well_fitted), steps, FIT, qat, _targets(), "cpu",
                               progress=lambda step, total, loss: losses.append((step, total)))
    assert tuned.quant_steps is None  # quantization in the loop is turned off again
    assert losses[-1] == (40, 40)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in tuned.parameters())
    tuned_error = _quantized_mse(tuned, steps)
    assert tuned_error < 0.5 * rounded_error, (rounded_error, tuned_error)
    # Not just 20 more steps of training: the same fine-tuning without the quantizer in the loop (steps so
    # fine that rounding changes nothing) leaves the rounded model much worse.
    control = finetune_quantized(copy.deepcopy(well_fitted), torch.full_like(steps, MIN_STEP), FIT, qat,
                                 _targets(), "cpu")
    assert tuned_error < 0.6 * _quantized_mse(control, steps)


def test_quantization_aware_finetuning_is_deterministic(well_fitted):
    steps = _coarse_steps(well_fitted, 0.5)
    qat = QuantConfig(qat_steps=5, qat_learning_rate=3e-3)
    a = finetune_quantized(copy.deepcopy(well_fitted), steps, FIT, qat, _targets())
    b = finetune_quantized(copy.deepcopy(well_fitted), steps, FIT, qat, _targets())
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.weights[1], well_fitted.weights[1])


def test_quantize_in_loop_is_turned_off_even_when_the_finetuning_fails(well_fitted):
    model = copy.deepcopy(well_fitted)
    wild = QuantConfig(qat_steps=5, qat_learning_rate=1e38)
    with pytest.raises(CodecRuntimeError, match="diverged"):
        finetune_quantized(model, _coarse_steps(model, 0.5), FIT, wild, _targets())
    assert model.quant_steps is None


# --- runtime options of the fit: bank dispatch and bfloat16 autocast --------------------------------

@pytest.mark.parametrize("dispatch", ["dense", "grouped"])
def test_sync_free_dispatch_fits_like_the_cpu_path(dispatch):
    packed = fit_tiles(MODEL, FIT, _targets(), device="cpu")
    other = fit_tiles(MODEL, FIT, _targets(), device="cpu", dispatch=dispatch)
    for a, b in zip(list(packed.parameters()), list(other.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_bfloat16_autocast_keeps_float32_weights_and_fits_nearly_as_well():
    targets = _targets()
    fp32 = fit_tiles(MODEL, dataclasses.replace(FIT, steps=40), targets, device="cpu")
    bf16 = fit_tiles(MODEL, dataclasses.replace(FIT, steps=40), targets, device="cpu", precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    assert _mse(bf16, targets) < 1.5 * _mse(fp32, targets)


@pytest.mark.parametrize("options", [{"precision": "fp16"}, {"dispatch": "fast"}])
def test_unknown_fit_options_are_usage_errors(options):
    with pytest.raises(UsageError, match="must be one of"):
        fit_tiles(MODEL, FIT, _targets(), device="cpu", **options)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("dispatch", ["dense", "grouped"])
def test_a_sync_free_training_step_reads_nothing_back_to_the_host(dispatch, precision):
    targets = _targets()
    model = TiledLoE.initialised(MODEL, [t.seed for t in targets])
    loop = FitLoop(model, FIT, _PixelPool(targets, torch.device("cpu")), 0, precision, dispatch)
    loop.step(0)  # the optimizer's state is made in the first step
    with HostReads() as reads:
        losses = [loop.step(step) for step in range(1, 4)]
    assert reads.ops == []
    assert all(loss.dim() == 0 for loss in losses)


def test_fit_loop_keeps_every_tiles_loss(monkeypatch):
    losses = []
    step = FitLoop.step

    def spy(loop, i):
        loss = step(loop, i)
        losses.append((float(loss), loop.tile_loss.tolist()))
        return loss

    monkeypatch.setattr(FitLoop, "step", spy)
    fit_tiles(ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=2),
              FitConfig(steps=3, samples_per_tile=64, warmup_steps=1), two_tile_targets(), device="cpu")
    assert len(losses) == 3
    for total, per_tile in losses:
        assert len(per_tile) == 2 and abs(total - sum(per_tile)) <= 1e-5 * total
        assert per_tile[0] != per_tile[1]


# --- the spike guard: a tile whose fit blows up is rolled back ----------------------------------------

GUARDED = dataclasses.replace(FIT, steps=400)


def _tile_mses(model, targets) -> list[float]:
    return [float(e) for e in window_mses(model, targets)]


def _blow_up(at_step: int):
    """A checkpoint that multiplies tile 1's hidden weights by 8 after step ``at_step`` (a blown-up fit)."""
    def checkpoint(step, model):
        if step == at_step:
            with torch.no_grad():
                model.weights[1][1].mul_(8)
                model.weights[2][1].mul_(8)
    return checkpoint


def test_a_tile_that_blows_up_is_rolled_back_and_the_other_tile_is_untouched(monkeypatch):
    targets = _targets()
    clean = fit_tiles(MODEL, GUARDED, targets)
    guarded = fit_tiles(MODEL, GUARDED, targets, checkpoint=_blow_up(250))
    monkeypatch.setattr(fitmod, "SPIKE_FACTOR", float("inf"))  # the guard never fires
    unguarded = fit_tiles(MODEL, GUARDED, targets, checkpoint=_blow_up(250))
    clean_mse, guarded_mse, unguarded_mse = (_tile_mses(m, targets) for m in (clean, guarded, unguarded))
    # Tiles are independent: tile 0 is the same bit for bit in all three fits.
    for m in (guarded, unguarded):
        assert all(torch.equal(a[0], b[0]) for a, b in zip(clean.parameters(), m.parameters()))
    assert unguarded_mse[1] > 10 * clean_mse[1], (unguarded_mse, clean_mse)  # not recovered from alone
    assert guarded_mse[1] < 2 * clean_mse[1], (guarded_mse, clean_mse)


def test_a_tile_gone_non_finite_mid_fit_is_rolled_back_instead_of_failing_the_fit():
    targets = _targets()

    def poison(step, model):
        if step == 250:
            with torch.no_grad():
                model.weights[2][1].fill_(float("nan"))

    fitted = fit_tiles(MODEL, GUARDED, targets, checkpoint=poison)
    assert all(torch.isfinite(p).all() for p in fitted.parameters())
    clean = fit_tiles(MODEL, GUARDED, targets)
    assert _tile_mses(fitted, targets)[1] < 2 * _tile_mses(clean, targets)[1]


def test_a_fit_that_never_blows_up_is_the_same_with_and_without_the_guard(monkeypatch):
    targets = _targets()
    guarded = fit_tiles(MODEL, GUARDED, targets)
    monkeypatch.setattr(fitmod, "SPIKE_FACTOR", float("inf"))
    plain = fit_tiles(MODEL, GUARDED, targets)
    assert all(torch.equal(a, b) for a, b in zip(guarded.parameters(), plain.parameters()))


def test_the_guard_restores_the_best_state_damps_the_tile_and_counts_it():
    targets = _targets()
    model = TiledLoE.initialised(MODEL, [t.seed for t in targets])
    loop = FitLoop(model, GUARDED, _PixelPool(targets, torch.device("cpu")), 0, guard=True)
    guard = loop.guard
    assert guard.window == fitmod.MIN_GUARD_WINDOW and guard.start == GUARDED.warmup_steps
    for step in range(GUARDED.warmup_steps + 2 * guard.window):
        loop.step(step)
    assert guard.best is not None and guard.rollbacks.tolist() == [0, 0]
    assert len(guard._state()) == 3 * len(list(model.parameters()))  # each parameter and its two Adam moments
    saved = [t.clone() for t in guard.saved]
    with torch.no_grad():
        model.weights[2][1].mul_(8)
    for step in range(step + 1, step + 1 + guard.window):
        loop.step(step)
    assert guard.rollbacks.tolist() == [0, 1] and guard.damped
    assert guard.scale.tolist() == [1.0, fitmod.DAMPING]
    # Tile 1's parameters and moments are back to the state saved at its best window (tile 0's moved on).
    for live, old in zip(guard._state(), saved):
        assert torch.equal(live[1], old[1])
        assert not torch.equal(live[0], old[0])
    # Damped: a step moves tile 1 by DAMPING of what Adam did, tile 0 by all of it.
    old = guard.before_step()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    guard.after_step(0, old, torch.zeros(2))
    for p, o in zip(model.parameters(), old):
        torch.testing.assert_close(p[0] - o[0], torch.ones_like(o[0]))
        torch.testing.assert_close(p[1] - o[1], torch.full_like(o[1], fitmod.DAMPING))


@pytest.mark.parametrize("damped", [False, True])
def test_guarded_steps_between_checks_read_nothing_back_to_the_host(damped):
    targets = _targets()
    model = TiledLoE.initialised(MODEL, [t.seed for t in targets])
    loop = FitLoop(model, GUARDED, _PixelPool(targets, torch.device("cpu")), 0, dispatch="dense", guard=True)
    loop.guard.damped = damped
    loop.step(0)
    with HostReads() as reads:
        for step in range(1, loop.guard.window):
            loop.step(step)
    assert reads.ops == []


class _Killed(Exception):
    pass


@pytest.mark.parametrize("sampling", ["uniform", "error"])
def test_a_fit_killed_mid_way_goes_on_from_its_snapshot_bit_for_bit(tmp_path, sampling):
    # Tile 1 blows up at step 150 and the guard rolls it back and damps it before the kill at step 300:
    # the resumed fit must take up the guard's state too, and the error sampler's.
    cfg = dataclasses.replace(GUARDED, sampling=sampling)
    plain = fit_tiles(MODEL, cfg, _targets(), device="cpu", checkpoint=_blow_up(150))
    snaps = FitSnapshots(tmp_path / "s.partial.pt", every_seconds=0.0)  # saved after every step

    def kill_at_300(step, total, loss):
        if step == 300:
            raise _Killed
    with pytest.raises(_Killed):
        fit_tiles(MODEL, cfg, _targets(), device="cpu", progress=kill_at_300, snapshots=snaps,
                  checkpoint=_blow_up(150))
    state = torch.load(snaps.path, weights_only=True)
    assert state["step"] == 299 and state["guard"]["rollbacks"].tolist() == [0, 1]  # step 300 was lost

    reported = []
    resumed = fit_tiles(MODEL, cfg, _targets(), device="cpu", snapshots=FitSnapshots(snaps.path, 0.0),
                        progress=lambda step, total, loss: reported.append(step), checkpoint=_blow_up(150))
    assert reported[0] == 299 and reported[1] == 300  # it went on from the snapshot
    for a, b in zip(plain.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_a_snapshot_of_another_fit_or_a_torn_one_is_ignored(tmp_path):
    cfg = dataclasses.replace(FIT, steps=40)
    plain = fit_tiles(MODEL, cfg, _targets(), device="cpu")
    other = FitSnapshots(tmp_path / "other.pt", every_seconds=0.0)
    fit_tiles(dataclasses.replace(MODEL, width=8), cfg, _targets(), device="cpu", snapshots=other)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(other.path.read_bytes()[:100])
    # One of this fit's own shape whose generator state is broken: it fails after the weights were taken up.
    own = FitSnapshots(tmp_path / "own.pt", every_seconds=0.0)
    fit_tiles(MODEL, cfg, _targets(), device="cpu", snapshots=own)
    state = torch.load(own.path, weights_only=True)
    state["generator"] = "not a generator state"
    torch.save(state, own.path)
    for path in (other.path, torn, own.path):
        again = fit_tiles(MODEL, cfg, _targets(), device="cpu", snapshots=FitSnapshots(path, 3600.0))
        assert torch.equal(again.weights[1], plain.weights[1])
