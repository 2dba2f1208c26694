"""``loe bench`` through Typer's CliRunner: a tiny run end to end, and user mistakes -> exit 2."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app

QUICK = ["-c", "loe,jpeg,jpeg2000", "-s", "jpeg=30,60,90", "-s", "jpeg2000=25,35,45", "--loe-steps", "5",
         "--device", "cpu", "--points", "1,3.5"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def _assert_usage_error(result, text):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.stderr


def test_bench_end_to_end(runner, crops_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(crops_dir), "-o", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {r["codec"] for r in data["results"]} == {"loe", "jpeg", "jpeg2000"}
    assert len(data["results"]) == 2 * (1 + 3 + 3) and data["machine"]["loe_device"] == "cpu"
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()
    assert all(label in result.stdout for label in ("loe", "JPEG-420", "JPEG2000")), result.stdout
    assert "BD-rate" in result.stdout and "14 measurements" in result.stdout
    assert "loe fast: " in result.stdout and "(mean of 2 image(s))" in result.stdout  # the single-point codec
    assert "bench" in result.stderr  # the progress bar


def test_bench_explicit_files_quiet_and_resume(runner, crops_dir, tmp_path):
    out = tmp_path / "r.json"
    args = ["bench", str(crops_dir / "a.png"), "-o", str(out), "-c", "jpeg", "-s", "jpeg=50,90", "-q",
            "--markdown", str(tmp_path / "t.md"), "--plot", str(tmp_path / "p.png")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and first.stderr == "", first.output
    assert (tmp_path / "t.md").exists() and (tmp_path / "p.png").exists()
    before = json.loads(out.read_text())["results"]
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["results"] == before  # kept, timings included: nothing re-measured


@pytest.mark.parametrize("args, text", [
    (["{crops}/missing"], "no such file or folder"),
    (["{crops}", "-c", "jpeg,gif"], "unknown codec 'gif'"),
    (["{crops}", "-c", "jpeg", "-s", "jpeg=abc"], "setting 'abc'"),
    (["{crops}", "-c", "jpeg", "-s", "webp=50"], "not among the codecs"),
    (["{crops}", "-c", "loe", "-s", "loe=huge"], "unknown setting 'huge'"),
    (["{crops}", "--points", "0.5,x"], "--points"),
    (["{crops}", "--bd-method", "linear"], "BD method"),
    (["{crops}", "--bd-average", "median"], "BD average"),
    (["{crops}", "-c", "jpeg", "--reference", "{crops}/a.png"], "cannot read the reference"),
])
def test_bad_input_exits_2_with_one_line(runner, crops_dir, tmp_path, args, text):
    out = tmp_path / "r.json"
    args = [a.replace("{crops}", str(crops_dir)) for a in args]
    _assert_usage_error(runner.invoke(app, ["bench", *args, "-o", str(out)]), text)
    assert not out.exists()


def test_output_in_a_missing_folder(runner, crops_dir, tmp_path):
    result = runner.invoke(app, ["bench", str(crops_dir), "-c", "jpeg", "-o", str(tmp_path / "no" / "r.json")])
    _assert_usage_error(result, "does not exist")


def test_help_explains(runner):
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for word in ("BD-rate", "--points", "--settings", "--resume", "jpegxl"):
        assert word in result.stdout
