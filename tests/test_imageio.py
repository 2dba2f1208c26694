import os

import numpy as np
import pytest

import loe_codec
from loe_codec.errors import CodecRuntimeError, UsageError
from loe_codec.imageio import ImageSource, PngStream, check_output_path, flatten_alpha, write_image, write_strips
from support import read_array, smooth_image, write_array


@pytest.mark.parametrize("bands,suffix", [(1, ".png"), (2, ".png"), (3, ".png"), (4, ".png"), (3, ".tif"),
                                          (1, ".tif"), (4, ".webp")])
def test_8bit_gray_rgb_rgba_are_accepted(tmp_path, bands, suffix):
    pixels = smooth_image(9, 13, bands, seed=bands)
    if suffix == ".webp":  # lossless webp keeps the pixels
        import pyvips
        path = tmp_path / "img.webp"
        pyvips.Image.new_from_memory(pixels.tobytes(), 13, 9, bands, "uchar").write_to_file(str(path),
                                                                                          lossless=True)
    else:
        path = write_array(tmp_path / f"img{suffix}", pixels)
    src = ImageSource(path)
    assert (src.width, src.height, src.channels) == (13, 9, bands)
    np.testing.assert_array_equal(src.read(0, 0, 13, 9), pixels)
    np.testing.assert_array_equal(src.read(3, 2, 5, 4), pixels[2:6, 3:8])


def test_rgba_is_coded_as_four_channels(tmp_path, fast_config):
    pixels = smooth_image(12, 20, 4, seed=1)
    pixels[..., 3] = np.linspace(0, 255, 20, dtype=np.uint8)[None, :]  # a real alpha ramp
    src = write_array(tmp_path / "rgba.png", pixels)
    out = tmp_path / "rgba.loe"
    loe_codec.encode(src, out, config=fast_config, device="cpu")
    with loe_codec.open(out) as img:
        assert img.channels == 4 and img.config.model.out_channels == 4
        assert img.decode(device="cpu").shape == (12, 20, 4)
        png, jpg = tmp_path / "back.png", tmp_path / "back.jpg"
        img.decode_to_file(png, device="cpu")
        img.decode_to_file(jpg, device="cpu")
    assert read_array(png).shape == (12, 20, 4)
    assert read_array(jpg).shape == (12, 20, 3)  # JPEG has no alpha: flattened over white


def test_gray_is_coded_as_one_channel(tmp_path, fast_config):
    src = write_array(tmp_path / "gray.png", smooth_image(10, 14, 1))
    out = tmp_path / "gray.loe"
    loe_codec.encode(src, out, config=fast_config, device="cpu")
    with loe_codec.open(out) as img:
        assert img.channels == 1
        assert img.decode(device="cpu").shape == (10, 14, 1)


def test_16_bit_images_are_refused(tmp_path):
    pixels = (smooth_image(8, 8, 3).astype(np.uint16) * 257)
    for name in ("deep.png", "deep.tif"):
        path = write_array(tmp_path / name, pixels, fmt="ushort")
        with pytest.raises(UsageError, match="8-bit"):
            ImageSource(path)
        with pytest.raises(UsageError):
            loe_codec.encode(path, tmp_path / "x.loe", config=None, preset="fast", device="cpu")
    assert not (tmp_path / "x.loe").exists()


def test_float_images_are_refused(tmp_path):
    path = write_array(tmp_path / "float.tif", smooth_image(6, 6, 1).astype(np.float32) / 255, fmt="float")
    with pytest.raises(UsageError):
        ImageSource(path)


@pytest.mark.parametrize("suffix", [".tif", ".v"])
def test_five_band_images_are_refused(tmp_path, suffix):
    path = write_array(tmp_path / f"five{suffix}", np.zeros((6, 7, 5), np.uint8))
    with pytest.raises(UsageError, match="5 bands"):
        ImageSource(path)


def test_cmyk_is_refused(tmp_path):
    import pyvips
    path = tmp_path / "cmyk.tif"
    image = pyvips.Image.new_from_memory(np.zeros((5, 5, 4), np.uint8).tobytes(), 5, 5, 4, "uchar")
    image.copy(interpretation="cmyk").write_to_file(str(path))
    with pytest.raises(UsageError):
        ImageSource(path)


@pytest.mark.parametrize("content", [b"", b"not an image at all\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
                                     bytes(range(256)) * 4])
def test_non_image_files_are_refused(tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="cannot read"):
        ImageSource(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        ImageSource(tmp_path / "missing.png")
    with pytest.raises(UsageError, match="not a file"):
        ImageSource(tmp_path)


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
def test_write_image_round_trip_png(tmp_path, bands):
    pixels = smooth_image(7, 11, bands, seed=bands)
    path = tmp_path / "out.png"
    write_image(pixels, path)
    np.testing.assert_array_equal(read_array(path), pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left


def test_written_image_has_normal_permissions(tmp_path):
    path = tmp_path / "out.png"
    write_image(smooth_image(4, 4, 3), path)
    umask = os.umask(0)
    os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)


def test_write_image_flattens_alpha_for_jpeg(tmp_path):
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = 0  # fully transparent -> white
    path = tmp_path / "out.jpg"
    write_image(pixels, path)
    back = read_array(path)
    assert back.shape == (8, 8, 3) and int(back.min()) >= 250
    np.testing.assert_array_equal(flatten_alpha(np.array([[[10, 255]]], np.uint8)), [[[10]]])
    np.testing.assert_array_equal(flatten_alpha(np.array([[[0, 0, 0, 0]]], np.uint8)), [[[255, 255, 255]]])


@pytest.mark.parametrize("name", ["noext", "out.notaformat"])
def test_check_output_path_refuses_unwritable_formats(tmp_path, name):
    with pytest.raises(UsageError):
        check_output_path(tmp_path / name)


def test_check_output_path_refuses_missing_folder_and_folders(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UsageError, match="folder"):
        check_output_path(tmp_path / "dir.png")
    assert check_output_path(tmp_path / "ok.png") == tmp_path / "ok.png"


def test_write_failure_is_a_runtime_error_and_leaves_nothing(tmp_path):
    # A name too long for the file system: the folder exists, but nothing can be created in it.
    target = tmp_path / ("x" * 300 + ".png")
    # Like write_codec, write_image reports it as a CodecRuntimeError (a LoeError), not a bare OSError.
    with pytest.raises(CodecRuntimeError):
        write_image(smooth_image(4, 4, 3), target)
    assert list(tmp_path.iterdir()) == []


# --- streamed output: strips, pyramids, Deep Zoom ---------------------------------------------------

def _strips(pixels, heights):
    y = 0
    for h in heights:
        yield pixels[y:y + h]
        y += h
    assert y == pixels.shape[0]


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_write_strips_writes_exactly_the_strips(tmp_path, bands, suffix):
    pixels = smooth_image(37, 23, bands, seed=bands)
    out = tmp_path / f"x{suffix}"
    write_strips(_strips(pixels, [5, 1, 20, 11]), 23, 37, bands, out)
    np.testing.assert_array_equal(read_array(out), pixels)


def test_png_stream_gives_libvips_the_pixels(tmp_path):
    pixels = smooth_image(70, 33, 3, seed=2)
    image = PngStream(33, 70, 3, _strips(pixels, [64, 6])).image()
    got = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(70, 33, 3))
    np.testing.assert_array_equal(got, pixels)


def test_pyramid_tiff_has_levels_and_the_right_size(tmp_path):
    import pyvips

    pixels = smooth_image(300, 520, 3, seed=3)
    out = tmp_path / "p.tif"
    write_strips(_strips(pixels, [256, 44]), 520, 300, 3, out, pyramid=True)
    assert out.read_bytes()[2] == 43  # BigTIFF
    first = pyvips.Image.new_from_file(str(out))
    pages = first.get("n-pages")
    assert pages >= 2
    sizes = [(lambda im: (im.width, im.height))(pyvips.Image.new_from_file(str(out), page=k)) for k in range(pages)]
    assert sizes[0] == (520, 300) and sizes[1] == (260, 150)
    level0 = read_array(out).astype(int)
    assert np.abs(level0 - pixels).mean() < 2  # JPEG tiles, quality 90


@pytest.mark.parametrize("bands", [3, 4])
def test_dzi_output_is_a_deep_zoom_pyramid(tmp_path, bands):
    import math
    import xml.etree.ElementTree as ET

    pixels = smooth_image(300, 500, bands, seed=4)
    out = tmp_path / "deep.dzi"
    write_strips(_strips(pixels, [256, 44]), 500, 300, bands, out)
    root = ET.parse(out).getroot()
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    size = root.find(f"{ns}Size")
    assert (int(size.get("Width")), int(size.get("Height"))) == (500, 300)
    fmt, tile = root.get("Format"), int(root.get("TileSize"))
    files = tmp_path / "deep_files"
    top = math.ceil(math.log2(500))  # OpenSeadragon's level numbering: level n is 2^n wide at most
    assert sorted(int(p.name) for p in files.iterdir() if p.is_dir()) == list(range(top + 1))
    cols, rows = math.ceil(500 / tile), math.ceil(300 / tile)
    names = {p.name for p in (files / str(top)).iterdir()}
    assert names == {f"{c}_{r}.{fmt}" for c in range(cols) for r in range(rows)}
    assert fmt == ("png" if bands == 4 else "jpeg")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_dzi_replaces_an_older_pyramid(tmp_path):
    out = tmp_path / "d.dzi"
    write_strips([smooth_image(600, 20, 3)], 20, 600, 3, out)
    write_strips([smooth_image(10, 20, 3)], 20, 10, 3, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.dzi", "d_files"]
    assert len([p for p in (tmp_path / "d_files").iterdir() if p.is_dir()]) == 6  # levels 0..5 of a 20x10 image


@pytest.mark.parametrize("name,pyramid", [("x.png", False), ("x.tif", True), ("x.dzi", False)])
def test_a_failing_renderer_leaves_no_output(tmp_path, name, pyramid):
    def strips():
        yield smooth_image(40, 30, 3)
        raise UsageError("tile 3 is corrupted")

    out = tmp_path / name
    with pytest.raises(UsageError, match="tile 3 is corrupted"):
        write_strips(strips(), 30, 100, 3, out, pyramid=pyramid)
    assert list(tmp_path.iterdir()) == []


def test_strips_of_the_wrong_shape_are_refused(tmp_path):
    with pytest.raises(ValueError):
        write_strips([np.zeros((5, 9, 3), np.uint8)], 10, 5, 3, tmp_path / "x.png")
    with pytest.raises(ValueError):
        write_strips([np.zeros((5, 10, 3), np.uint8)], 10, 6, 3, tmp_path / "x.png")  # too few rows
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.webp"])
def test_pyramid_needs_a_tiff(tmp_path, name):
    with pytest.raises(UsageError, match="--pyramid"):
        check_output_path(tmp_path / name, pyramid=True)
    check_output_path(tmp_path / "x.tiff", pyramid=True)
    check_output_path(tmp_path / "x.dzi", pyramid=True)


@pytest.mark.parametrize("rect", [(-1, 0, 5, 5), (0, 0, 14, 9), (10, 5, 4, 5), (0, 0, 0, 3)])
def test_reads_outside_the_image_are_refused(tmp_path, rect):
    src = ImageSource(write_array(tmp_path / "img.png", smooth_image(9, 13, 3)))
    with pytest.raises(UsageError, match="cannot read pixels"):
        src.read(*rect)
