import dataclasses
import json

import numpy as np
import pytest

import loe_codec
from loe_codec.api import resolve_device
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


def test_info(encoded):
    path, _, result = encoded
    data = loe_codec.info(path)
    assert data["width"] == 40 and data["height"] == 28 and data["channels"] == 3
    assert data["tiles"] == {"count": 6, "cols": 3, "rows": 2, "size": 16, "margin": 2}
    assert data["bytes"] == path.stat().st_size == result.bytes
    assert data["payload_bytes"] + data["header_bytes"] == data["bytes"]
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
