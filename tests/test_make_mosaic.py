"""samples/make_mosaic.py: a mosaic of photos written as a tiled BigTIFF, on tiny sizes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import load_script, read_array, smooth_image, write_array

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "samples" / "make_mosaic.py"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_array(folder / "a.png", smooth_image(90, 120, 3, seed=1))
    write_array(folder / "gray.png", smooth_image(80, 70, 1, seed=2))
    (folder / "sub").mkdir()
    write_array(folder / "sub" / "alpha.png", smooth_image(100, 100, 4, seed=3))
    write_array(folder / "tiny.png", smooth_image(10, 10, 3, seed=4))  # smaller than a cell: skipped
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def mosaic():
    return load_script("samples/make_mosaic.py")


def _run(*args):
    """The script as a subprocess, as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_mosaic_is_a_tiled_bigtiff_of_the_requested_size(photos, tmp_path):
    import pyvips

    out = tmp_path / "m.tif"
    r = _run(photos, out, "--size", "150x101", "--cell", "32", "--tile", "32", "--compression", "none")
    assert r.returncode == 0, r.stderr
    assert "3 photos" in r.stdout
    raw = out.read_bytes()
    assert raw[:2] == b"II" and raw[2] == 43  # little-endian BigTIFF
    image = pyvips.Image.new_from_file(str(out))
    assert (image.width, image.height, image.bands) == (150, 101, 3)
    assert image.get("tile-width") == 32
    pixels = read_array(out)
    cells = [pixels[y:y + 32, x:x + 32] for y in range(0, 96, 32) for x in range(0, 128, 32)]
    assert len({c.tobytes() for c in cells}) == len(cells)  # no two cells alike



def test_same_seed_same_mosaic(mosaic, photos, tmp_path):
    args = [str(photos), "--size", "150x101", "--cell", "32", "--compression", "none", "--quiet"]
    assert mosaic.main([args[0], str(tmp_path / "a.tif"), *args[1:]]) == 0
    assert mosaic.main([args[0], str(tmp_path / "b.tif"), *args[1:]]) == 0
    assert mosaic.main([args[0], str(tmp_path / "c.tif"), *args[1:], "--seed", "1"]) == 0
    a, b, c = (read_array(tmp_path / f"{n}.tif") for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_megapixels_and_aspect(mosaic, photos, tmp_path):
    import pyvips

    out = tmp_path / "m.tif"
    assert mosaic.main([str(photos), str(out), "--megapixels", "0.02", "--aspect", "2", "--cell", "40", "--quiet"]) == 0

    image = pyvips.Image.new_from_file(str(out))
    assert (image.width, image.height) == (200, 100)


def test_cells_are_transformed_crops_of_the_photos(mosaic):
    import random

    photo = np.arange(50 * 60 * 3, dtype=np.uint32).reshape(50, 60, 3)  # every pixel unique
    rng = random.Random(0)
    for _ in range(20):
        cell = mosaic.cell_pixels(photo, 16, rng)
        assert cell.shape == (16, 16, 3)
        ok = False
        for turns in range(4):
            for flip in (False, True):
                back = np.rot90(cell[:, ::-1] if flip else cell, k=turns)  # undo mirror, then rotation
                y, x = np.unravel_index(np.argmin(np.abs(photo[..., 0] - back[0, 0, 0])), photo.shape[:2])
                ok |= bool(np.array_equal(photo[y:y + 16, x:x + 16], back))
        assert ok


def test_strips_are_small_and_cover_the_mosaic(mosaic):
    photos = [[np.full((40, 40, 3), k, np.uint8)] for k in range(3)]
    strips = list(mosaic.strips(photos, 70, 45, 20, seed=0, rows=8))
    assert all(s.shape[0] <= 8 and s.shape[1:] == (70, 3) for s in strips)
    assert sum(s.shape[0] for s in strips) == 45


@pytest.mark.parametrize("args,message", [
    (["{missing}", "{out}", "--megapixels", "1"], "not a folder"),
    (["{photos}", "{out_png}", "--megapixels", "1"], ".tif"),
    (["{photos}", "{out}", "--size", "100x100", "--cell", "200"], "no readable photo"),
    (["{photos}", "{out}", "--megapixels", "-1"], "> 0"),
])
def test_bad_arguments_fail_cleanly(mosaic, photos, tmp_path, capsys, args, message):
    names = {"missing": tmp_path / "missing", "out": tmp_path / "x.tif", "out_png": tmp_path / "x.png",
             "photos": photos}
    assert mosaic.main([a.format(**names) for a in args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
