"""benchmarks/video_warm_start.py on a tiny encode of the sample clip."""

from __future__ import annotations

import pytest

from loe_codec.video import encode_video
from support import load_script
from test_video import CLIP, tiny_video_config


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "clip.loe"
    encode_video(CLIP, path, config=tiny_video_config(steps=30), device="cpu", measure_psnr=False)
    return path


def test_no_steps_keep_the_first_block_and_cost_no_bits(encoded):
    script = load_script("benchmarks/video_warm_start.py")
    result = script.warm_start(CLIP, encoded, steps=0, lr=1e-3, tile=4, eval_samples=4096)
    assert (result["block_a"], result["block_b"]) == (4, 13)  # 3x3 tiles: the second chunk starts at 9
    assert result["fitted_float_psnr"] == pytest.approx(result["a_file_on_b_psnr"], abs=1e-6)
    for scale in script.STEP_SCALES:
        assert result[f"change_x{scale:g}_entropy_bits"] == 0.0
        assert result[f"change_x{scale:g}_psnr"] == pytest.approx(result["a_file_on_b_psnr"], abs=1e-6)
    assert 0 < result["b_file_entropy_bits"] <= 8 * result["b_file_coded_bytes"] * 1.05


def test_steps_fit_the_second_block_and_its_change_costs_bits(encoded):
    script = load_script("benchmarks/video_warm_start.py")
    result = script.warm_start(CLIP, encoded, steps=30, lr=1e-2, tile=4, eval_samples=4096)
    assert result["fitted_float_psnr"] > result["a_file_on_b_psnr"] + 0.5
    bits = [result[f"change_x{scale:g}_entropy_bits"] for scale in script.STEP_SCALES]
    assert bits[0] > 0 and bits == sorted(bits, reverse=True)  # coarser steps, fewer bits
    cold = script.warm_start(CLIP, encoded, steps=30, lr=1e-2, tile=4, eval_samples=4096, cold=True)
    assert cold["cold"] and "change_x1_entropy_bits" not in cold
    assert cold["fitted_float_psnr"] != result["fitted_float_psnr"]


def test_a_file_of_one_chunk_is_refused(tmp_path):
    script = load_script("benchmarks/video_warm_start.py")
    path = tmp_path / "short.loe"
    short = tmp_path / "short.mkv"
    load_script("benchmarks/video_crop.py").crop(str(CLIP), str(short), 4, (0, 0, 64, 48))
    encode_video(short, path, config=tiny_video_config(steps=5), device="cpu", measure_psnr=False)
    with pytest.raises(SystemExit, match="one time chunk"):
        script.warm_start(short, path, steps=0, lr=1e-3)
