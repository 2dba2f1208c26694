import dataclasses
import hashlib

import numpy as np
import pytest
import torch

import loe_codec
from loe_codec.container import CodecReader
from loe_codec.encode import BlobSource, fit_and_pack, fit_batches
from loe_codec.errors import CodecRuntimeError
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid
from support import loe_header


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_input_and_seed_give_the_same_file(crop_png, tmp_path, fast_config):
    a, b, c = tmp_path / "a.loe", tmp_path / "b.loe", tmp_path / "c.loe"
    loe_codec.encode(crop_png, a, config=fast_config, device="cpu")
    loe_codec.encode(crop_png, b, config=fast_config, device="cpu")
    loe_codec.encode(crop_png, c, config=fast_config, seed=1, device="cpu")
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert loe_header(c)["config"]["fit"]["seed"] == 1


def test_encode_result_and_header(crop_png, tmp_path, fast_config):
    out = tmp_path / "x.loe"
    stages = []
    result = loe_codec.encode(crop_png, out, config=fast_config, device="cpu",
                              progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert result.path == str(out) and result.bytes == out.stat().st_size
    assert result.tiles == 6 and result.bpp == pytest.approx(result.bytes * 8 / (40 * 28))
    assert result.psnr is not None and result.seconds >= 0
    header = loe_header(out)
    assert header["source"] == {"width": 40, "height": 28, "channels": 3, "bit_depth": 8}
    assert header["stats"]["psnr"] == pytest.approx(result.psnr, abs=1e-4)
    assert header["encoder"].startswith("loe-codec ")
    # Progress: fit then measure, each ending complete, never going backwards.
    fit = [(d, t) for s, d, t in stages if s == "fit"]
    meas = [(d, t) for s, d, t in stages if s == "measure"]
    assert fit and meas and stages.index(("fit",) + fit[-1]) < stages.index(("measure",) + meas[0])
    assert fit[-1][0] == fit[-1][1] and meas[-1][0] == meas[-1][1]
    assert all(a[0] <= b[0] for a, b in zip(fit, fit[1:]))


def test_no_measure_skips_the_psnr(crop_png, tmp_path, fast_config):
    out = tmp_path / "x.loe"
    result = loe_codec.encode(crop_png, out, config=fast_config, device="cpu", measure_psnr=False)
    assert result.psnr is None and "psnr" not in loe_header(out)["stats"]


def test_overrides_apply(crop_png, tmp_path, fast_config):
    out = tmp_path / "x.loe"
    result = loe_codec.encode(crop_png, out, config=fast_config, tile=24, steps=3, device="cpu",
                              measure_psnr=False)
    header = loe_header(out)
    assert header["config"]["tile"]["size"] == 24 and header["config"]["fit"]["steps"] == 3
    assert result.tiles == 2 * 2


def test_in_memory_blobs_decode_like_the_file(crop_png, tmp_path, fast_config):
    out = tmp_path / "x.loe"
    loe_codec.encode(crop_png, out, config=fast_config, device="cpu", measure_psnr=False)
    image = ImageSource(crop_png)
    cfg = dataclasses.replace(fast_config, model=dataclasses.replace(fast_config.model, out_channels=3))
    grid = TileGrid(40, 28, cfg.tile.size, cfg.tile.margin)
    blobs, coded_with = fit_and_pack(image, grid, cfg, "cpu")
    assert coded_with == cfg  # no rate target: the config's own slope
    assert all(b.dtype == np.uint8 and b.ndim == 1 for b in blobs)
    mem = BlobSource(cfg, blobs)
    with CodecReader(out) as reader:
        assert [reader.tile_size(k) for k in range(len(grid))] == [b.size for b in blobs]
        for k in range(len(grid)):
            for x, y in zip(reader.read_tile(k)[0] + reader.read_tile(k)[1], mem.read_tile(k)[0] + mem.read_tile(k)[1]):
                assert np.array_equal(x.numpy(), y.numpy())


def test_tiles_per_batch_does_not_change_the_tile_count(crop_png, tmp_path, fast_config):
    cfg = dataclasses.replace(fast_config, fit=dataclasses.replace(fast_config.fit, tiles_per_batch=4))
    out = tmp_path / "x.loe"
    result = loe_codec.encode(crop_png, out, config=cfg, device="cpu")
    assert result.tiles == 6
    with loe_codec.open(out) as img:
        assert img.decode(device="cpu").shape == (28, 40, 3)


def test_encoded_file_is_format_4_with_referenced_laplace_tiles(crop_png, tmp_path, fast_config):
    out = tmp_path / "x.loe"
    result = loe_codec.encode(crop_png, out, config=fast_config, device="cpu", measure_psnr=False)
    header = loe_header(out)
    assert header["version"] == 4 and "tile_crc32" not in header
    assert header["config"]["quant"]["scheme"] == "laplace"
    assert header["config"]["quant"]["reference"] == "seeded-uniform-1"
    assert header["config"]["quant"]["slope"] == fast_config.quant.slope
    with CodecReader(out) as reader:
        sizes = [reader.tile_size(k) for k in range(result.tiles)]
        assert len(set(sizes)) > 1  # entropy-coded: tiles differ in size
        assert sum(sizes) < result.bytes


def test_coding_against_the_reference_saves_bits_at_equal_quality(crop_png, tmp_path, fast_config):
    """The same fit coded against its seeded initialisation, and without: fewer bytes, the same PSNR
    up to rounding noise (the steps are the same; only the grid's origin moves)."""
    results = {}
    for reference in ("seeded-uniform-1", "none"):
        cfg = dataclasses.replace(fast_config, quant=dataclasses.replace(fast_config.quant, reference=reference))
        results[reference] = loe_codec.encode(crop_png, tmp_path / f"{reference}.loe", config=cfg, device="cpu")
    ref, plain = results["seeded-uniform-1"], results["none"]
    assert ref.bytes < 0.9 * plain.bytes, (ref.bytes, plain.bytes)
    assert abs(ref.psnr - plain.psnr) < 0.5, (ref.psnr, plain.psnr)
    with loe_codec.open(tmp_path / "seeded-uniform-1.loe") as img:
        assert abs(img.evaluate(crop_png)["psnr"] - ref.psnr) < 1e-6


def test_a_larger_slope_gives_a_smaller_file(crop_png, tmp_path, fast_config):
    sizes = []
    for slope in (1e-4, 1e-2, 1.0):
        cfg = dataclasses.replace(fast_config, quant=dataclasses.replace(fast_config.quant, slope=slope))
        sizes.append(loe_codec.encode(crop_png, tmp_path / f"{slope}.loe", config=cfg, device="cpu",
                                      measure_psnr=False).bytes)
    assert sizes[0] > sizes[1] > sizes[2], sizes


def test_quantization_aware_finetuning_in_the_encoder(crop_png, tmp_path, fast_config):
    # qat_steps > 0 fine-tunes before packing: a different file that still decodes, and progress
    # reports a complete "quantize" stage between "fit" and "measure".
    cfg = dataclasses.replace(fast_config, quant=dataclasses.replace(fast_config.quant, qat_steps=4, slope=0.05))
    stages = []
    plain = loe_codec.encode(crop_png, tmp_path / "plain.loe", config=dataclasses.replace(
        cfg, quant=dataclasses.replace(cfg.quant, qat_steps=0)), device="cpu")
    tuned = loe_codec.encode(crop_png, tmp_path / "qat.loe", config=cfg, device="cpu",
                             progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert _sha(tmp_path / "plain.loe") != _sha(tmp_path / "qat.loe")
    assert tuned.psnr is not None and plain.psnr is not None
    names = [s for s, _, _ in stages]
    assert names.index("quantize") > max(i for i, n in enumerate(names) if n == "fit")
    assert names.index("measure") > max(i for i, n in enumerate(names) if n == "quantize")
    quant = [(d, t) for s, d, t in stages if s == "quantize"]
    assert quant[-1][0] == quant[-1][1] == 6 * 4
    assert all(a[0] <= b[0] for a, b in zip(quant, quant[1:]))


def test_tiles_drop_units_when_bits_are_dear_and_the_file_says_what_it_decodes(crop_png, tmp_path, fast_config):
    """A unit ladder at a coarse slope: some tiles keep fewer units (their dropped units' weights decode
    as zero), the file is smaller than without the ladder, and the PSNR it records is its decode's."""
    quant = dataclasses.replace(fast_config.quant, slope=3e-3, qat_steps=8)
    plain = dataclasses.replace(fast_config, quant=quant)
    laddered = dataclasses.replace(fast_config, quant=dataclasses.replace(quant, unit_ladder=(1.0, 0.5, 0.25)))
    results = {name: loe_codec.encode(crop_png, tmp_path / f"{name}.loe", config=cfg, device="cpu")
               for name, cfg in (("plain", plain), ("laddered", laddered))}
    assert results["laddered"].bytes < results["plain"].bytes
    with CodecReader(tmp_path / "laddered.loe") as reader:
        assert reader.config.quant.unit_ladder == (1.0, 0.5, 0.25)
        first_layers = [reader.read_tile(k)[0][0] for k in range(results["laddered"].tiles)]
    kept = [int((w.abs().sum(dim=(0, 1)) > 0).sum()) for w in first_layers]  # units with incoming weights
    assert min(kept) < fast_config.model.width and set(kept) <= {16, 8, 4}
    with loe_codec.open(tmp_path / "laddered.loe") as img:
        assert img.evaluate(crop_png, device="cpu")["psnr"] == pytest.approx(results["laddered"].psnr, abs=1e-6)


def _batches(image, cfg, prefetch):
    grid = TileGrid(image.width, image.height, cfg.tile.size, cfg.tile.margin)
    return fit_batches(image, grid, cfg, "cpu", prefetch=prefetch)


@pytest.fixture
def three_batches(fast_config):
    return dataclasses.replace(fast_config, fit=dataclasses.replace(fast_config.fit, tiles_per_batch=2))


def test_reading_the_next_batch_ahead_changes_nothing(crop_png, three_batches):
    runs = [list(_batches(ImageSource(crop_png), three_batches, prefetch)) for prefetch in (0, 1)]
    assert [len(run) for run in runs] == [3, 3]
    for (a, ta), (b, tb) in zip(*runs):
        assert [t.index for t in a.tiles] == [t.index for t in b.tiles]
        assert all(torch.equal(x.pixels, y.pixels) for x, y in zip(ta, tb))
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)


class _FailingImage(ImageSource):
    """Fails to read any window that starts at or right of x = 20."""

    def read(self, x, y, w, h):
        if x >= 20:
            raise CodecRuntimeError(f"cannot read the window at ({x}, {y})")
        return super().read(x, y, w, h)


def test_a_read_error_ahead_surfaces_as_the_same_error_in_its_turn(crop_png, three_batches):
    outcomes = []
    for prefetch in (0, 1):
        done = []
        with pytest.raises(CodecRuntimeError) as caught:
            for batch, _ in _batches(_FailingImage(crop_png), three_batches, prefetch):
                done.append([t.index for t in batch.tiles])
        outcomes.append((done, str(caught.value)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [[0, 1]]  # the first batch was fitted before the error
