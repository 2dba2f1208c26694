"""The ``loe`` command line, through Typer's CliRunner and as a real ``python -m cli`` subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from support import read_array, rewrite_loe_header, smooth_image, tile_byte_range, write_array

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--preset", "fast", "--steps", "3", "--tile", "16", "--device", "cpu", "--quiet"]  # encode: -q is --quality


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def tiny_png(tmp_path_factory):
    return write_array(tmp_path_factory.mktemp("cli") / "tiny.png", smooth_image(20, 28, 3, seed=5))


@pytest.fixture(scope="module")
def tiny_loe(runner, tiny_png):
    out = tiny_png.with_name("tiny.loe")
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


def _assert_clean_failure(result, codes=(2,), leftover: Path | None = None):
    """Exit code, a single ``error:`` line, no traceback, nothing written."""
    assert result.exit_code in codes, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    if leftover is not None:
        assert not leftover.exists()
        assert not [p for p in leftover.parent.iterdir() if p.name.startswith(f".{leftover.stem}")]


# --- success paths ------------------------------------------------------------------------------

def test_encode_prints_a_summary(runner, tiny_png, tmp_path):
    out = tmp_path / "x.loe"
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert out.exists() and "bpp" in result.stdout and "PSNR" in result.stdout


def test_encode_warns_when_a_psnr_target_is_out_of_reach(runner, tiny_png, tmp_path):
    out = tmp_path / "x.loe"
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST, "--psnr", "99"])
    assert result.exit_code == 0, result.output
    assert out.exists() and result.stderr.startswith("warning:") and "99 dB" in result.stderr


def test_encode_json(runner, tiny_png, tmp_path):
    out = tmp_path / "x.loe"
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST, "--json", "--seed", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(out) and data["bytes"] == out.stat().st_size and data["tiles"] == 4
    assert data["psnr"] > 0


def test_encode_with_progress_bars(runner, tiny_png, tmp_path):
    out = tmp_path / "x.loe"
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), "--preset", "fast", "--steps", "2",
                                 "--tile", "16", "--device", "cpu", "--no-measure"])
    assert result.exit_code == 0, result.output
    assert "not measured" in result.stdout


def test_decode_full_region_scale_and_width(runner, tiny_loe, tmp_path):
    full = tmp_path / "full.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(full), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert read_array(full).shape == (20, 28, 3) and "28x20" in r.stdout
    region = tmp_path / "region.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(region), "--region", "4,2,10,8", "--device", "cpu",
                            "-q"])
    assert r.exit_code == 0, r.output
    assert (read_array(region) == read_array(full)[2:10, 4:14]).all()
    big = tmp_path / "big.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(big), "--scale", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert read_array(big).shape == (40, 56, 3)
    thumb = tmp_path / "thumb.jpg"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(thumb), "--width", "14", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert read_array(thumb).shape == (10, 14, 3) and "14x10" in r.stdout


def test_info_text_and_json(runner, tiny_loe):
    r = runner.invoke(app, ["info", str(tiny_loe)])
    assert r.exit_code == 0, r.output
    assert "28x20" in r.stdout and "tiles" in r.stdout and "bpp" in r.stdout
    r = runner.invoke(app, ["info", str(tiny_loe), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert (data["width"], data["height"], data["channels"]) == (28, 20, 3)
    assert data["tiles"]["count"] == 4 and data["preset"] == "fast" and data["fit"]["steps"] == 3


def test_eval_text_and_json(runner, tiny_loe, tiny_png):
    r = runner.invoke(app, ["eval", str(tiny_loe), str(tiny_png), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.stdout and "bpp" in r.stdout
    r = runner.invoke(app, ["eval", str(tiny_loe), str(tiny_png), "--device", "cpu", "-q", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert {"bytes", "bpp", "psnr", "psnr_seams", "psnr_interior"} <= set(data)
    assert data["psnr"] > 0


def test_help_and_no_args(runner):
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "encode" in r.stdout and "decode" in r.stdout
    r = runner.invoke(app, [])
    assert r.exit_code in (0, 2) and "encode" in r.output


# --- failures: exit code, one error line, no traceback, nothing left behind -----------------------

@pytest.mark.parametrize("name, extra", [("missing.png", []), ("missing.png", ["--chunk", "4"]),
                                         ("missing.png", ["--motion", "none"]), ("missing.mp4", [])])
def test_encode_missing_input(runner, tmp_path, name, extra):
    """A missing source is told as such, before any option that fits only images or only videos."""
    out = tmp_path / "x.loe"
    r = runner.invoke(app, ["encode", str(tmp_path / name), "-o", str(out), *FAST, *extra])
    _assert_clean_failure(r, leftover=out)
    assert "no such file" in r.stderr


def test_encode_non_image_input(runner, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("this is text, not pixels\n")
    out = tmp_path / "x.loe"
    r = runner.invoke(app, ["encode", str(fake), "-o", str(out), *FAST])
    _assert_clean_failure(r, leftover=out)


def test_encode_16_bit_input(runner, tmp_path):
    deep = write_array(tmp_path / "deep.png", smooth_image(8, 8, 3).astype("uint16") * 257, fmt="ushort")
    out = tmp_path / "x.loe"
    r = runner.invoke(app, ["encode", str(deep), "-o", str(out), *FAST])
    _assert_clean_failure(r, leftover=out)


@pytest.mark.parametrize("args", [["--steps=-1"], ["--tile", "4"], ["--preset", "ultra"], ["--device", "tpu"],
                                  ["--bpp", "0"], ["--bpp=-2"], ["--bpp", "nan"], ["--bpp", "64"],
                                  ["--bpp", "4", "--quality", "50"]])
def test_encode_bad_options(runner, tiny_png, tmp_path, args):
    out = tmp_path / "x.loe"
    r = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), "--quiet", *args])
    _assert_clean_failure(r, leftover=out)


def test_encode_output_not_loe_or_missing_folder(runner, tiny_png, tmp_path):
    r = runner.invoke(app, ["encode", str(tiny_png), "-o", str(tmp_path / "x.png"), *FAST])
    _assert_clean_failure(r, leftover=tmp_path / "x.png")
    out = tmp_path / "missing" / "x.loe"
    r = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST])
    _assert_clean_failure(r)
    assert not out.parent.exists()


@pytest.mark.parametrize("resume", [True, False])
def test_an_interrupted_encode_says_how_to_go_on(runner, tiny_png, tmp_path, monkeypatch, resume):
    import loe_codec.fit

    def ctrl_c(loop, step):
        raise KeyboardInterrupt
    monkeypatch.setattr(loe_codec.fit.FitLoop, "step", ctrl_c)
    out = tmp_path / "i.loe"
    result = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST] + (["--resume"] if resume else []))
    _assert_clean_failure(result, codes=(130,), leftover=out)
    if resume:
        assert "run again goes on from" in result.stderr and (tmp_path / "i.loe.fits").is_dir()
    else:
        assert "--resume" in result.stderr and not (tmp_path / "i.loe.fits").exists()


def test_encode_unwritable_output(runner, tiny_png, tmp_path):
    out = tmp_path / ("n" * 300 + ".loe")  # the folder exists but the name cannot be created
    r = runner.invoke(app, ["encode", str(tiny_png), "-o", str(out), *FAST, "--steps", "1"])
    _assert_clean_failure(r, codes=(1, 2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_decode_into_read_only_folder(runner, tiny_loe, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        out = folder / "x.png"
        r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--device", "cpu", "-q"])
        _assert_clean_failure(r, codes=(1, 2), leftover=out)
    finally:
        folder.chmod(0o755)


def test_decode_unwritable_output(runner, tiny_loe, tmp_path):
    out = tmp_path / ("n" * 300 + ".png")
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--device", "cpu", "-q"])
    _assert_clean_failure(r, codes=(1, 2))
    assert list(tmp_path.iterdir()) == []


def test_decode_output_folder_missing(runner, tiny_loe, tmp_path):
    out = tmp_path / "missing" / "x.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--device", "cpu", "-q"])
    _assert_clean_failure(r)
    assert not out.parent.exists()


def test_decode_missing_codec(runner, tmp_path):
    out = tmp_path / "x.png"
    r = runner.invoke(app, ["decode", str(tmp_path / "missing.loe"), "-o", str(out), "-q"])
    _assert_clean_failure(r, leftover=out)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "image"])
def test_decode_corrupted_codec(runner, tiny_loe, tiny_png, tmp_path, damage):
    bad = tmp_path / "bad.loe"
    raw = bytearray(tiny_loe.read_bytes())
    if damage == "flip":
        start, end = tile_byte_range(tiny_loe, 2)
        raw[(start + end) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[:len(raw) - 100]
    elif damage == "garbage":
        raw = bytearray(os.urandom(2000))
    else:
        raw = bytearray(tiny_png.read_bytes())
    bad.write_bytes(bytes(raw))
    out = tmp_path / "x.png"
    r = runner.invoke(app, ["decode", str(bad), "-o", str(out), "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)
    r = runner.invoke(app, ["eval", str(bad), str(tiny_png), "--device", "cpu", "-q"])
    _assert_clean_failure(r)
    if damage != "flip":  # a damaged tile is only noticed when it is read
        r = runner.invoke(app, ["info", str(bad)])
        _assert_clean_failure(r)


def test_decode_structurally_malformed_header(runner, tiny_loe, tmp_path):
    # A header whose "tiles" entry is not an object: still a damaged file, so exit 2 with a format error
    # (not an "internal error").
    bad = rewrite_loe_header(tiny_loe, tmp_path / "bad.loe", lambda h: h.update(tiles=[2, 2, 4]))
    out = tmp_path / "x.png"
    r = runner.invoke(app, ["decode", str(bad), "-o", str(out), "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)
    assert "internal error" not in r.stderr


@pytest.mark.parametrize("region", ["20,10,10,10", "-1,0,5,5", "0,0,0,5", "0,0,29,20", "1,2,3", "a,b,c,d"])
def test_decode_region_outside_the_image(runner, tiny_loe, tmp_path, region):
    out = tmp_path / "x.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), f"--region={region}", "--device", "cpu",
                            "-q"])
    _assert_clean_failure(r, leftover=out)


@pytest.mark.parametrize("args", [["--scale", "0"], ["--scale=-2"], ["--scale", "nan"], ["--width", "0"],
                                  ["--scale", "2", "--width", "5"]])
def test_decode_bad_scale(runner, tiny_loe, tmp_path, args):
    out = tmp_path / "x.png"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), *args, "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)


def test_decode_unknown_output_format(runner, tiny_loe, tmp_path):
    out = tmp_path / "x.unknownfmt"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)


def test_eval_reference_problems(runner, tiny_loe, tmp_path):
    r = runner.invoke(app, ["eval", str(tiny_loe), str(tmp_path / "missing.png"), "--device", "cpu", "-q"])
    _assert_clean_failure(r)
    other = write_array(tmp_path / "other.png", smooth_image(10, 10, 3))
    r = runner.invoke(app, ["eval", str(tiny_loe), str(other), "--device", "cpu", "-q"])
    _assert_clean_failure(r)


# --- the real thing: a subprocess ------------------------------------------------------------------

def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_subprocess_info_and_corrupted_decode(tiny_loe, tmp_path):
    ok = _run_cli("info", str(tiny_loe), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["width"] == 28
    bad = tmp_path / "bad.loe"
    bad.write_bytes(b"\0" * 64)
    out = tmp_path / "x.png"
    fail = _run_cli("decode", str(bad), "-o", str(out), "--device", "cpu", "-q")
    assert fail.returncode == 2
    assert "Traceback" not in fail.stderr + fail.stdout
    lines = [ln for ln in fail.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), fail.stderr
    assert not out.exists()


# --- big outputs: pyramidal TIFF and Deep Zoom ------------------------------------------------------

def test_decode_pyramid_tiff_and_dzi(runner, tiny_loe, tmp_path):
    import pyvips

    out = tmp_path / "p.tif"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--pyramid", "--scale", "12", "--device", "cpu",
                            "-q"])
    assert r.exit_code == 0, r.output
    assert pyvips.Image.new_from_file(str(out)).get("n-pages") >= 2
    dzi = tmp_path / "d.dzi"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(dzi), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert "Width=\"28\"" in dzi.read_text() and (tmp_path / "d_files").is_dir()


@pytest.mark.parametrize("name", ["x.png", "x.jpg"])
def test_decode_pyramid_needs_a_tiff(runner, tiny_loe, tmp_path, name):
    out = tmp_path / name
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--pyramid", "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)
    assert "--pyramid" in r.stderr


@pytest.mark.parametrize("name,extra", [("x.dzi", []), ("x.tif", ["--pyramid"])])
def test_a_damaged_tile_leaves_no_half_written_pyramid(runner, tiny_loe, tmp_path, name, extra):
    bad = tmp_path / "bad.loe"
    raw = bytearray(tiny_loe.read_bytes())
    start, end = tile_byte_range(tiny_loe, 3)  # the last tile: found only after earlier strips were written
    raw[(start + end) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    out = tmp_path / "out" / name
    out.parent.mkdir()
    r = runner.invoke(app, ["decode", str(bad), "-o", str(out), *extra, "--scale", "20", "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)
    assert "corrupted" in r.stderr
    assert list(out.parent.iterdir()) == []


def test_decode_too_large_for_the_format(runner, tiny_loe, tmp_path):
    out = tmp_path / "x.webp"
    r = runner.invoke(app, ["decode", str(tiny_loe), "-o", str(out), "--scale", "600", "--device", "cpu", "-q"])
    _assert_clean_failure(r, leftover=out)
    assert "too large for .webp" in r.stderr
