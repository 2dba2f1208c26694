"""Finding and reading benchmark images."""

import numpy as np
import pytest

from loe_codec.bench.images import find_images
from loe_codec.errors import UsageError
from support import smooth_image, write_array


def test_a_folder_gives_its_images_sorted_and_files_are_taken_as_given(crops_dir, tmp_path):
    images = find_images([crops_dir])
    assert [im.name for im in images] == ["a", "b"]
    assert (images[0].width, images[0].height) == (32, 32)
    px = images[1].pixels()
    assert px.shape == (32, 32, 3) and px.dtype == np.uint8
    assert [im.name for im in find_images([crops_dir / "b.png"])] == ["b"]


def test_a_folder_skips_other_files(tmp_path):
    write_array(tmp_path / "x.png", smooth_image(8, 8, 3))
    (tmp_path / "readme.txt").write_text("hello")
    assert [im.name for im in find_images([tmp_path])] == ["x"]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty", "no images in this folder"),
    ("gray", "RGB"),
    ("dupe", "share the name"),
    ("none", "no images given"),
])
def test_bad_inputs(case, message, tmp_path, crops_dir):
    if case == "missing":
        inputs = [tmp_path / "nope"]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "gray":
        inputs = [write_array(tmp_path / "g.png", smooth_image(8, 8, 1))]
    elif case == "dupe":
        (tmp_path / "other").mkdir()
        inputs = [crops_dir / "a.png", write_array(tmp_path / "other" / "a.png", smooth_image(8, 8, 3))]
    else:
        inputs = []
    with pytest.raises(UsageError, match=message):
        find_images(inputs)
