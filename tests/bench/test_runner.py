"""A whole run: JSON, Markdown and plot written; resume skips what is measured."""

import json

import pytest

from loe_codec.bench.codecs import Codec
from loe_codec.bench.images import find_images
from loe_codec.bench.registry import make_codecs
from loe_codec.bench.runner import dumps, load_reference, run_bench
from loe_codec.bench.summary import BdSpec
from loe_codec.errors import UsageError

SWEEP = {"jpeg": ("20", "50", "90"), "jpeg2000": ("25", "35", "45"), "webp": ("30", "80")}


@pytest.fixture(scope="module")
def first_run(crops_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    calls = []
    run = run_bench(find_images([crops_dir]), make_codecs(SWEEP), SWEEP, folder / "r.json", points=[0.5, 3.2],
                    command="loe bench test", bd=BdSpec("pchip", "images"), markdown=folder / "r.md",
                    plot=folder / "r.png",
                    reference={"target_bpp": [3.5], "codecs": {"JPEG-420": {"mean_psnr": [30.0]}},
                               "bd_rate_vs_JPEG-420_percent": {"JPEG2000": -40.0}},
                    progress=lambda d, t, w: calls.append((d, t, w)))
    return folder, run, calls


def test_json_holds_every_measurement_and_the_summary(first_run):
    folder, run, calls = first_run
    data = json.loads((folder / "r.json").read_text())
    assert data == json.loads(json.dumps(run))
    assert data["format"] == "loe-bench" and data["complete"] and data["images"] == ["a", "b"]
    assert {"cpu", "torch", "date", "command", "imagecodecs"} <= set(data["machine"])
    assert data["machine"]["command"] == "loe bench test"
    keys = {(r["image"], r["codec"], r["setting"]) for r in data["results"]}
    assert len(keys) == len(data["results"]) == 2 * 8
    assert all(set(r) >= {"bytes", "bpp", "psnr", "encode_s", "decode_s"} for r in data["results"])
    assert set(data["summary"]["codecs"]) == set(SWEEP) and data["summary"]["points"] == [0.5, 3.2]
    # 32x32 crops cost 1-6 bpp: no codec's sweep reaches 0.5 on both; JPEG's and JPEG 2000's reach 3.2
    summary = data["summary"]["codecs"]
    assert [summary[n]["mean_psnr"][0] for n in SWEEP] == [None] * 3
    assert summary["jpeg"]["mean_psnr"][1] > 20 and summary["jpeg2000"]["mean_psnr"][1] > 20
    assert summary["jpeg2000"]["bd"]["jpeg"]["rate"] < 0 and summary["jpeg"]["bd"]["jpeg"]["rate"] == 0
    assert data["codecs"]["jpeg"]["settings"] == ["20", "50", "90"] and data["codecs"]["jpeg"]["describe"]
    (row,) = data["reference_comparison"]["mean_psnr"]
    (bd,) = data["reference_comparison"]["bd_rate_vs_jpeg"]
    assert bd["label"] == "JPEG2000" and bd["delta"] == pytest.approx(summary["jpeg2000"]["bd"]["jpeg"]["rate"] + 40)
    assert row["label"] == "JPEG-420" and row["delta"] == pytest.approx(row["ours"] - 30.0)
    assert calls[0][:2] == (0, 16) and calls[-1] == (16, 16, "done")
    assert [c[0] for c in calls[:-1]] == list(range(16))


@pytest.mark.parametrize("run", [{"a": {"b": [1, 2]}, "results": []}, {"results": [{"x": 1.5}, {"y": None}]}])
def test_dumps_round_trips(run):
    text = dumps(run)
    assert json.loads(text) == run and text.endswith("}\n")


def test_markdown_and_plot(first_run):
    folder, run, _ = first_run
    text = (folder / "r.md").read_text()
    assert "loe bench test" in text and "| JPEG-420 |" in text and "BD-rate vs J2K" in text
    assert "Against the reference anchors" in text and "BD-rate vs JPEG 4:2:0" in text
    assert (folder / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Refuses(Codec):
    """A codec that must not be asked to measure anything."""

    name, label, settings = "jpeg", "JPEG-420", ("20",)

    def measure(self, image, setting, pixels=None):
        raise AssertionError(f"measured {image.name} {setting} again")


def test_resume_skips_what_the_json_has(first_run, crops_dir, tmp_path):
    folder, run, _ = first_run
    out = tmp_path / "again.json"
    out.write_text((folder / "r.json").read_text())
    again = run_bench(find_images([crops_dir]), [Refuses()], {"jpeg": ("20", "90")}, out, resume=True)
    assert {(r["image"], r["setting"]) for r in again["results"]} == {(i, s) for i in "ab" for s in ("20", "90")}
    assert again["codecs"]["jpeg"]["settings"] == ["20", "90"]
    default = run_bench(find_images([crops_dir]), [Refuses()], {}, out, resume=True)  # Refuses' own sweep: "20"
    assert {r["setting"] for r in default["results"]} == {"20"}
    with pytest.raises(AssertionError, match="measured"):
        run_bench(find_images([crops_dir]), [Refuses()], {"jpeg": ("21",)}, out, resume=True)


def test_bad_resume_reference_and_outputs(crops_dir, tmp_path):
    images = find_images([crops_dir])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match="not a loe bench result"):
        run_bench(images, make_codecs(["jpeg"]), {"jpeg": ("50",)}, bad, resume=True)
    with pytest.raises(UsageError, match="target_bpp"):
        load_reference(bad)
    with pytest.raises(UsageError, match="does not exist"):
        run_bench(images, make_codecs(["jpeg"]), {"jpeg": ("50",)}, tmp_path / "no" / "r.json")
    with pytest.raises(UsageError, match="> 0"):
        run_bench(images, make_codecs(["jpeg"]), {"jpeg": ("50",)}, tmp_path / "r.json", points=[0.0])
