"""The CLI's thread choice (cli/threads.py): one torch thread when other work keeps the CPU busy."""

import os

import pytest

from cli import threads


def test_busy_cores_is_a_share_of_the_cpus():
    busy = threads.busy_cores(0.02)
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= busy <= (os.cpu_count() or 1)


@pytest.mark.parametrize("busy, expected", [(0.0, False), (0.4, False), (None, None), (1e9, True)])
def test_cpu_is_busy_above_half_the_cores(monkeypatch, busy, expected):
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.0: busy)
    if expected is None:  # unknown: the load average decides
        monkeypatch.setattr(os, "getloadavg", lambda: (1e9, 0.0, 0.0))
        expected = True
    assert threads.cpu_is_busy() is expected


def test_limit_threads_respects_the_users_choice(monkeypatch):
    monkeypatch.setattr(threads, "cpu_is_busy", lambda: True)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    threads.limit_threads_on_a_busy_cpu()
    assert os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    threads.limit_threads_on_a_busy_cpu()
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.limit_threads_on_a_busy_cpu()
    assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "cpu_is_busy", lambda: False)
    threads.limit_threads_on_a_busy_cpu()
    assert "OMP_NUM_THREADS" not in os.environ
