"""The GPU fast-path script (benchmarks/gpu_fast_path.py) runs end to end on the CPU, without pyvips."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import ROOT


def test_cpu_smoke_run_passes_every_check_and_writes_every_section(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_fast_path.py"), "--cpu-smoke",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_fast_path.json").read_text())
    assert report["ok"] is True
    for section in ("kernel", "dispatch", "syncs", "fit", "throughput", "decode"):
        assert "error" not in report[section], report[section]
    assert all("samples_per_s" in row for row in report["throughput"]["rows"])
    assert report["decode"]["mpx_per_s"] > 0
    # The packed path is the detector's positive control: it reads group sizes on the host.
    assert [r["sync_free"] for r in report["syncs"]["rows"] if r["dispatch"] == "packed"] == [False]


def test_no_cuda_without_smoke_is_an_error_not_a_crash(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_fast_path.py"), "--out", str(tmp_path),
                          "--sections", "decode"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2 and "no CUDA GPU" in run.stderr
