"""Encode a small crop of a real sample image, decode it, and check the quality is real."""

import json

import numpy as np
from typer.testing import CliRunner

import loe_codec
from cli.main import app
from loe_codec.metrics import psnr
from support import read_array


def test_encode_decode_psnr_is_well_above_trivial_predictions(encoded, full_decode, tmp_path):
    path, png, result = encoded
    ref = read_array(png)
    flat = np.full_like(ref, 128)
    mean_colour = np.broadcast_to(ref.reshape(-1, 3).mean(0).round().astype(np.uint8), ref.shape)
    quality = psnr(full_decode, ref)
    assert quality > psnr(flat, ref) + 6, (quality, psnr(flat, ref))
    assert quality > psnr(mean_colour, ref) + 3, (quality, psnr(mean_colour, ref))
    assert quality > 22
    # The file round-trips through an image file too.
    out = tmp_path / "decoded.png"
    with loe_codec.open(path) as img:
        img.decode_to_file(out, device="cpu")
    np.testing.assert_array_equal(read_array(out), full_decode)


def test_eval_json_reports_seam_and_interior_psnr(encoded):
    path, png, result = encoded
    r = CliRunner().invoke(app, ["eval", str(path), str(png), "--device", "cpu", "-q", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["psnr"] == result.psnr
    for key in ("psnr_seams", "psnr_interior"):
        assert isinstance(data[key], float) and 15 < data[key] < 100, data
    # No visible seams: the band along tile borders is not much worse than the tile interiors.
    assert data["psnr_seams"] > data["psnr_interior"] - 3
