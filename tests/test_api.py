import dataclasses
import json

import numpy as np
import pytest

import loe_codec
from loe_codec.api import resolve_device
from loe_codec.encode import RateTarget, overshoot_note
from loe_codec.errors import UsageError
from support import read_array, tiny_config


def test_width_keeps_aspect(encoded):
    with loe_codec.open(encoded[0]) as img:
        assert img.decode(width=20, device="cpu").shape == (14, 20, 3)
        assert img.decode(height=7, device="cpu").shape == (7, 10, 3)
        assert img.decode(width=30, height=5, device="cpu").shape == (5, 30, 3)  # both: no aspect
        assert img.decode(region=(0, 0, 20, 10), width=10, device="cpu").shape == (5, 10, 3)
        req = img.request(width=57)
        assert (req.out_width, req.out_height) == (57, round(28 * 57 / 40))


def test_decode_to_file_writes_the_decoded_pixels(encoded, tmp_path):
    out = tmp_path / "region.png"
    with loe_codec.open(encoded[0]) as img:
        size = img.decode_to_file(out, region=(4, 4, 24, 16), scale=0.5, device="cpu")
        pixels = img.decode(region=(4, 4, 24, 16), scale=0.5, device="cpu")
    assert size == (12, 8)
    np.testing.assert_array_equal(read_array(out), pixels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_streamed_decode_equals_the_in_memory_decode(encoded, tmp_path, suffix):
    # Scale 10: a 400x280 output, two strips of blocks high and two blocks wide.
    out = tmp_path / f"big{suffix}"
    with loe_codec.open(encoded[0]) as img:
        assert img.decode_to_file(out, scale=10, device="cpu") == (400, 280)
        pixels = img.decode(scale=10, device="cpu")
    np.testing.assert_array_equal(read_array(out), pixels)


def test_decode_to_pyramid_and_deep_zoom(encoded, tmp_path):
    import pyvips

    with loe_codec.open(encoded[0]) as img:
        assert img.decode_to_file(tmp_path / "p.tif", scale=10, device="cpu", pyramid=True) == (400, 280)
        img.decode_to_file(tmp_path / "d.dzi", region=(0, 0, 20, 20), scale=20, device="cpu")
    assert pyvips.Image.new_from_file(str(tmp_path / "p.tif")).get("n-pages") >= 2
    assert (tmp_path / "d.dzi").is_file() and (tmp_path / "d_files" / "9" / "0_0.jpeg").is_file()
    with loe_codec.open(encoded[0]) as img, pytest.raises(UsageError, match="--pyramid"):
        img.decode_to_file(tmp_path / "x.png", device="cpu", pyramid=True)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kwargs", [
    dict(region=(-1, 0, 10, 10)),
    dict(region=(0, -1, 10, 10)),
    dict(region=(35, 0, 10, 10)),  # past the right edge (image is 40 wide)
    dict(region=(0, 20, 10, 10)),  # past the bottom edge (28 high)
    dict(region=(0, 0, 0, 10)),
    dict(region=(0, 0, 10, -3)),
    dict(region=(100, 100, 5, 5)),
    dict(scale=0),
    dict(scale=-1.5),
    dict(scale=float("nan")),
    dict(scale=float("inf")),
    dict(width=0),
    dict(height=-2),
    dict(scale=2, width=10),
    dict(scale=100000.0),  # far too large an output
])
def test_bad_requests_raise_usage_error(encoded, kwargs, tmp_path):
    with loe_codec.open(encoded[0]) as img:
        with pytest.raises(UsageError):
            img.decode(device="cpu", **kwargs)
        out = tmp_path / "out.png"
        with pytest.raises(UsageError):
            img.decode_to_file(out, device="cpu", **kwargs)
    assert not out.exists()


def test_a_region_outside_is_told_against_the_image(encoded):
    with loe_codec.open(encoded[0]) as img:
        with pytest.raises(UsageError, match=rf"inside the {img.width}x{img.height} image"):
            img.request(region=(img.width - 4, 0, 8, 8))


def test_info(encoded):
    path, _, result = encoded
    data = loe_codec.info(path)
    assert data["width"] == 40 and data["height"] == 28 and data["channels"] == 3
    assert data["tiles"] == {"count": 6, "cols": 3, "rows": 2, "size": 16, "margin": 2}
    assert data["bytes"] == path.stat().st_size == result.bytes
    assert data["payload_bytes"] + data["header_bytes"] == data["bytes"]
    split = data["rate_split"]
    assert set(split) == {"weights", "biases", "steps_and_models", "header"} and min(split.values()) > 0
    assert sum(split.values()) == data["bytes"] and split["header"] == data["header_bytes"]
    assert data["bpp"] == pytest.approx(data["bytes"] * 8 / (40 * 28))
    assert list(data["model"]["banks"]) == [1, 2, 2, 1]
    assert data["model"]["parameters_per_tile"] == tiny_config().model.parameter_count()
    assert data["stats"]["psnr"] == pytest.approx(result.psnr, abs=1e-3)
    json.dumps(data, default=str)


def test_evaluate_matches_the_decode(encoded, full_decode):
    path, png, result = encoded
    data = loe_codec.evaluate(path, png, device="cpu")
    ref = read_array(png)
    assert data["psnr"] == pytest.approx(loe_codec.metrics.psnr(full_decode, ref))
    # What the encoder measured in memory is exactly what a decoder of the file reproduces.
    assert data["psnr"] == pytest.approx(result.psnr, abs=1e-9)
    assert data["bytes"] == result.bytes and data["bpp"] == pytest.approx(result.bpp)
    assert data["psnr_seams"] is not None and data["psnr_interior"] is not None


def test_evaluate_refuses_a_reference_of_another_size(encoded, tmp_path):
    import pyvips
    other = tmp_path / "other.png"
    pyvips.Image.new_from_file(str(encoded[1])).crop(0, 0, 30, 28).write_to_file(str(other))
    with pytest.raises(UsageError):
        loe_codec.evaluate(encoded[0], other, device="cpu")


def test_encode_argument_checks(crop_png, tmp_path):
    cfg = tiny_config(steps=1)
    with pytest.raises(UsageError):
        loe_codec.encode(crop_png, tmp_path / "out.png", config=cfg, device="cpu")  # not .loe
    with pytest.raises(UsageError):
        loe_codec.encode(crop_png, tmp_path / "missing" / "out.loe", config=cfg, device="cpu")
    (tmp_path / "dir.loe").mkdir()
    with pytest.raises(UsageError):
        loe_codec.encode(crop_png, tmp_path / "dir.loe", config=cfg, device="cpu")
    for bad in (dict(steps=-1), dict(tile=-5), dict(seed=-1), dict(tile=4)):
        with pytest.raises(UsageError):
            loe_codec.encode(crop_png, tmp_path / "out.loe", config=cfg, device="cpu", **bad)
    with pytest.raises(UsageError):
        loe_codec.encode(crop_png, tmp_path / "out.loe", preset="nope", device="cpu")
    with pytest.raises(UsageError):
        loe_codec.encode(tmp_path / "missing.png", tmp_path / "out.loe", config=cfg, device="cpu")
    assert not (tmp_path / "out.loe").exists()


def test_encode_refuses_a_3d_model_for_an_image(crop_png, tmp_path):
    cfg = tiny_config(steps=1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dims=3))
    with pytest.raises(UsageError):
        loe_codec.encode(crop_png, tmp_path / "out.loe", config=cfg, device="cpu")


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(UsageError):
        resolve_device("tpu")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(UsageError):
            resolve_device("cuda")


def test_open_refuses_missing_and_non_loe_files(tmp_path, crop_png):
    with pytest.raises(UsageError):
        loe_codec.open(tmp_path / "missing.loe")
    with pytest.raises(loe_codec.FormatError):
        loe_codec.open(crop_png)


# --- rate targets ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rate_png(tmp_path_factory):
    """A 64x48 crop (4 x 3 tiles of 16): big enough that the tiles, not the header, make most of a file."""
    from support import crop_sample
    return crop_sample(tmp_path_factory.mktemp("rate") / "rate.png", "kodim23.png", 280, 160, 64, 48)


def _rate_config():
    cfg = tiny_config(steps=8)
    return dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, samples_per_tile=256))


def _encode_at(png, path, bpp):
    result = loe_codec.encode(png, path, config=_rate_config(), bpp=bpp, device="cpu", measure_psnr=False)
    size = path.stat().st_size
    assert result.bytes == size
    return size * 8 / (64 * 48)


@pytest.fixture(scope="module")
def rate_files(rate_png, tmp_path_factory):
    """``{target bpp: (path, actual bpp)}`` of the crop encoded at a few reachable targets."""
    out = tmp_path_factory.mktemp("rate_files")
    return {b: (out / f"{b}.loe", _encode_at(rate_png, out / f"{b}.loe", b)) for b in (30.0, 52.0, 60.0)}


@pytest.mark.parametrize("bpp", [52.0, 60.0])
def test_bpp_target_is_hit_within_5_percent(rate_files, bpp):
    path, actual = rate_files[bpp]
    assert actual == pytest.approx(bpp, rel=0.05), actual
    # The slope the target resolved to is recorded, and the file decodes.
    with loe_codec.open(path) as img:
        assert img.config.quant.slope != _rate_config().quant.slope
        assert img.decode(device="cpu").shape == (48, 64, 3)


def test_bpp_target_is_hit_within_5_percent_when_the_header_is_a_large_share(rate_png, tmp_path):
    actual = _encode_at(rate_png, tmp_path / "x.loe", 20.0)
    assert actual == pytest.approx(20.0, rel=0.05), actual


@pytest.mark.parametrize("bpp", [30.0, 52.0])
def test_bpp_target_with_a_unit_ladder_is_hit_and_its_tiles_choose_sizes(rate_png, tmp_path, bpp):
    # The slope is solved with each tile's choice of size counted, so the target still lands (networks
    # fitted well enough that a full one is the better choice where bits are cheap).
    cfg = tiny_config(steps=100)
    cfg = dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, qat_steps=8, unit_ladder=(1.0, 0.5, 0.25)))
    last = {}
    loe_codec.encode(rate_png, tmp_path / "x.loe", config=cfg, bpp=bpp, device="cpu", measure_psnr=False,
                     progress=lambda stage, done, total: last.__setitem__(stage, (done, total)))
    actual = (tmp_path / "x.loe").stat().st_size * 8 / (64 * 48)
    assert actual == pytest.approx(bpp, rel=0.05), actual
    assert {"fit", "sizes", "quantize"} <= set(last)
    assert last["sizes"][0] == last["sizes"][1] > 0  # the candidates' bar ends full
    kept = loe_codec.info(tmp_path / "x.loe")["units_kept"]
    assert sum(kept["tiles_by_fraction"].values()) == 12


def test_a_larger_bpp_target_gives_a_larger_file(rate_files):
    sizes = [actual for _, actual in rate_files.values()]
    assert sizes[0] < sizes[1] < sizes[2], sizes
    slopes = [loe_codec.info(path)["quantization"]["slope"] for path, _ in rate_files.values()]
    assert slopes[0] > slopes[1] > slopes[2], slopes


def test_psnr_target_is_used(encoded, tmp_path):
    # The session's file (a 100-step fit at the default slope) is the reference; 4 dB less needs coarser steps.
    _, png, default = encoded
    target = default.psnr - 4.0
    result = loe_codec.encode(png, tmp_path / "psnr.loe", config=tiny_config(steps=100), psnr=target, device="cpu")
    assert loe_codec.info(tmp_path / "psnr.loe")["quantization"]["slope"] > tiny_config().quant.slope
    assert result.bytes < default.bytes
    assert result.psnr >= target - 0.5, (result.psnr, target)


def test_psnr_target_fine_tunes_again_where_fine_tuning_beat_the_estimate(encoded, tmp_path):
    # The first slope is solved on the estimate before fine-tuning; fine-tuning beats it, so the fits
    # are fine-tuned again at a coarser slope, and the file still reaches the target.
    _, png, default = encoded
    cfg = tiny_config(steps=100)
    cfg = dataclasses.replace(cfg, quant=dataclasses.replace(cfg.quant, qat_steps=30))
    target = default.psnr - 3.0
    stages = set()
    result = loe_codec.encode(png, tmp_path / "psnr.loe", config=cfg, psnr=target, device="cpu",
                              progress=lambda stage, done, total: stages.add(stage))
    assert "quantize again" in stages, stages
    assert result.psnr >= target - 0.3, (result.psnr, target)


def test_unreachable_psnr_target_is_coded_near_the_ceiling_with_a_note(encoded, tmp_path):
    _, png, default = encoded
    result = loe_codec.encode(png, tmp_path / "high.loe", config=tiny_config(steps=100), psnr=99.0, device="cpu")
    assert len(result.notes) == 1 and "99 dB" in result.notes[0]
    # Not the finest steps the slope range allows: those would cost far more bits for nothing.
    finest = loe_codec.encode(png, tmp_path / "finest.loe", config=tiny_config(steps=100).with_overrides(slope=1e-7),
                              device="cpu")
    assert result.bytes < 0.9 * finest.bytes
    assert result.psnr > finest.psnr - 0.5
    assert default.notes == ()


def test_unreachable_bpp_target_says_so(encoded, tmp_path):
    _, png, _ = encoded
    result = loe_codec.encode(png, tmp_path / "tiny.loe", config=tiny_config(steps=20), bpp=0.001, device="cpu")
    assert result.bpp > 0.01
    assert len(result.notes) == 1 and "0.001 bpp cannot be reached" in result.notes[0]
    reachable = loe_codec.encode(png, tmp_path / "ok.loe", config=tiny_config(steps=20), bpp=1.1 * result.bpp,
                                 device="cpu")
    assert reachable.notes == ()


def test_overshoot_note_only_well_above_the_target():
    assert overshoot_note(RateTarget(bpp=1.0), 1.09, 0.5, "fast", "image") is None
    assert overshoot_note(RateTarget(psnr=30.0), 5.0, 0.5, "fast", "image") is None
    note = overshoot_note(RateTarget(bpp=1.0), 1.2, 0.5, "fast", "image")
    assert "1 bpp cannot be reached" in note and "1.2 bpp" in note and "0.5 of them" in note


def test_rate_choices_are_exclusive(crop_png, tmp_path):
    for kwargs in (dict(bpp=4.0, psnr=30.0), dict(bpp=4.0, quality=50), dict(psnr=30.0, quality=50)):
        with pytest.raises(UsageError):
            loe_codec.encode(crop_png, tmp_path / "out.loe", config=tiny_config(steps=1), device="cpu", **kwargs)
    assert not (tmp_path / "out.loe").exists()


@pytest.mark.parametrize("bpp", [0, 0.0, -1.0, float("nan"), float("inf"), 64.0, 1e6])
def test_bpp_target_outside_its_range_is_refused(crop_png, tmp_path, bpp):
    out = tmp_path / "out.loe"
    with pytest.raises(UsageError, match="bpp"):
        loe_codec.encode(crop_png, out, config=tiny_config(steps=1), bpp=bpp, device="cpu")
    assert not out.exists()


def test_info_of_a_format_4_file(encoded):
    path, _, _ = encoded
    data = loe_codec.info(path)
    assert data["format_version"] == 4 and data["quantization"]["scheme"] == "laplace"
    assert data["quantization"]["reference"] == "seeded-uniform-1"
    with loe_codec.open(path) as img:
        assert data["payload_bytes"] == sum(img._reader.tile_size(k) for k in range(6))
    assert 0 < data["header_bytes"] < data["bytes"]


def test_quality_choice_follows_the_preset_ladder():
    from loe_codec.api import rate_choice
    from loe_codec.config import preset
    low, _ = rate_choice(preset("balanced"), None, None, 50)
    high, target = rate_choice(preset("balanced"), None, None, 80)
    assert low.model.width == 22 and high.model.width == 32 and high.quant.slope < low.quant.slope
    assert target.bpp is None and target.psnr is None
    kept, _ = rate_choice(preset("balanced"), 0.5, None, None)  # a bpp target keeps the preset's network
    assert kept.model == preset("balanced").model


def test_an_image_encode_killed_inside_its_fit_resumes_from_the_snapshot(encoded, tmp_path, monkeypatch):
    loe_path, png, _ = encoded
    monkeypatch.setattr("loe_codec.fitcache.SNAPSHOT_SECONDS", 0.0)  # a snapshot after every step
    out = tmp_path / "k.loe"

    class Killed(Exception):
        pass

    def kill(stage, done, total):
        if stage == "fit" and done >= total / 2:
            raise Killed
    with pytest.raises(Killed):
        loe_codec.encode(png, out, config=tiny_config(steps=100), device="cpu", resume=True, progress=kill)
    assert len(list((tmp_path / "k.loe.fits").glob("*.partial.pt"))) == 1 and not out.exists()
    first_steps = []
    real = loe_codec.fit.FitLoop.step
    monkeypatch.setattr(loe_codec.fit.FitLoop, "step", lambda loop, i: first_steps.append(i) or real(loop, i))
    loe_codec.encode(png, out, config=tiny_config(steps=100), device="cpu", resume=True)
    assert first_steps[0] == 49  # the snapshot after step 49: step 50 was being reported when it was killed
    assert out.read_bytes() == loe_path.read_bytes() and not (tmp_path / "k.loe.fits").exists()
