"""Encoding under ``torchrun``: 2 CPU processes (gloo) give the file of a single-process encode."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import loe_codec
from distributed_worker import JOBS, job_config
from loe_codec.distributed import Ranks

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N ARGS`` on 127.0.0.1, this checkout first on the path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("LOE_DEBUG", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(crop_png, tmp_path_factory):
    """The worker's encodes on 2 ranks: ``(out_dir, [rank 0's record, rank 1's record])``."""
    out = tmp_path_factory.mktemp("dist")
    done = _torchrun(str(WORKER), str(crop_png), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_two_processes_write_the_single_process_file(run, crop_png, tmp_path, job):
    out, ranks = run
    kwargs = dict(JOBS[job])
    if job == "cache":
        kwargs = {"cache_dir": tmp_path / "cache"}
    single = loe_codec.encode(crop_png, tmp_path / "single.loe", config=job_config(job), device="cpu", **kwargs)
    assert (out / f"{job}.loe").read_bytes() == (tmp_path / "single.loe").read_bytes()
    # Every rank returns rank 0's result; only rank 0 reports progress.
    assert ranks[0][job]["result"] == ranks[1][job]["result"]
    assert ranks[0][job]["result"]["bytes"] == single.bytes and ranks[0][job]["result"]["psnr"] == single.psnr
    assert ranks[0][job]["progress_calls"] > 0 and ranks[1][job]["progress_calls"] == 0


def test_the_rate_targets_are_solved_on_every_tile(run):
    out, ranks = run
    assert ranks[0]["bpp"]["result"]["bpp"] == pytest.approx(JOBS["bpp"]["bpp"], rel=0.05)
    with loe_codec.open(out / "psnr.loe") as img:
        assert img.config.quant.slope != job_config().quant.slope  # solved, then coarsened after fine-tuning


def test_each_rank_stores_its_batches_in_the_shared_cache(run, crop_png, tmp_path):
    out, _ = run
    cached = sorted((out / "cache").glob("batch-*.pt"))
    assert len(cached) == 3  # batches 0 and 2 from rank 0, batch 1 from rank 1
    stamps = [p.stat().st_mtime_ns for p in cached]
    # One process finds all of them: nothing is fitted or stored again, and the file is the same.
    loe_codec.encode(crop_png, tmp_path / "again.loe", config=job_config(), device="cpu", cache_dir=out / "cache")
    assert sorted((out / "cache").glob("batch-*.pt")) == cached and [p.stat().st_mtime_ns for p in cached] == stamps
    assert (tmp_path / "again.loe").read_bytes() == (out / "cache.loe").read_bytes()
    assert not (out / "resume.loe.fits").exists()  # rank 0 removed the resume folder once done


def test_a_failure_on_one_rank_stops_every_rank_with_the_same_error(run):
    _, ranks = run
    missing = ranks[0]["source_missing_on_rank_1"]
    assert missing == ranks[1]["source_missing_on_rank_1"]
    assert missing["error"] == "UsageError" and "missing.png" in missing["message"] and missing["exit_code"] == 2
    folder = ranks[0]["output_folder_missing"]
    assert folder == ranks[1]["output_folder_missing"] and folder["error"] is not None


# 6 tiles, one batch of 16: rank 1 has nothing to fit (the API tests above share 3 batches).
CLI_ARGS = ["--preset", "fast", "--steps", "4", "--tile", "16", "--device", "cpu", "--quiet"]


def test_torchrun_cli_encode(crop_png, tmp_path):
    """``torchrun -m cli encode``: one summary line, from rank 0, and the single-process file."""
    done = _torchrun("-m", "cli", "encode", str(crop_png), "-o", str(tmp_path / "d.loe"), *CLI_ARGS, "--no-measure")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'd.loe'}: "), done.stdout
    loe_codec.encode(crop_png, tmp_path / "s.loe", "fast", steps=4, tile=16, device="cpu", measure_psnr=False)
    assert (tmp_path / "d.loe").read_bytes() == (tmp_path / "s.loe").read_bytes()


def test_torchrun_cli_error(crop_png, tmp_path):
    """A bad argument: every rank fails with exit code 2, rank 0 alone prints the error."""
    bad = _torchrun("-m", "cli", "encode", str(crop_png), "-o", str(tmp_path / "e.loe"), *CLI_ARGS, "--bpp", "100")
    assert bad.returncode != 0 and not (tmp_path / "e.loe").exists()
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: the bpp target must be a number in (0, 64), got 100.0"], bad.stderr
    assert re.search(r"exitcode\s*:\s*2\b", bad.stderr), bad.stderr  # torchrun's report of the first to exit


def test_ranks_share_batches_round_robin():
    ranks = [Ranks(r, 3) for r in range(3)]
    assert [[b for b in range(8) if rk.owns(b)] for rk in ranks] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    per_rank = [[b for b in range(8) if rk.owns(b)] for rk in ranks]
    assert ranks[0].in_batch_order(per_rank) == list(range(8))
    single = Ranks()
    assert single.gather("x") == ["x"] and single.from_main(3) == 3 and single.owns(5)
    with pytest.raises(ValueError), single.sharing_failures():
        raise ValueError("single process: raised as it is")


def test_outside_torchrun_nothing_is_joined(monkeypatch):
    from loe_codec import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.join("cpu") == (distributed.SINGLE, "cpu")
    assert distributed.process_rank() == 0
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.process_rank() == 1 and distributed.torchrun_env() == (1, 2, 1)
