"""How many torch threads the CLI may use, decided before torch loads OpenMP.

Several OpenMP threads that spin while they wait for each other make torch 10-50x slower on a
busy CPU (measured on the shared 2-core machine: a decode at 0.02 MP/s instead of 1); making them
sleep (OMP_WAIT_POLICY=PASSIVE) costs 2x on an idle CPU (a 1500-step kodim23 encode: 37 s vs 18 s).
One thread has no one to wait for. So when other work already keeps the CPU busy, torch gets one
thread, unless the user chose the threads or the wait policy.

"Busy" is measured over a short window from ``/proc/stat`` (the 1-minute load average lags: it
still counted a finished encode a minute later and halved the next one's threads), with the load
average as the fallback where ``/proc/stat`` is missing.
"""

from __future__ import annotations

import os
import time

WINDOW_S = 0.05


def _cpu_times() -> tuple[int, int] | None:
    """``(busy, total)`` jiffies of all CPUs since boot, or None without ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(window: float = WINDOW_S) -> float | None:
    """Cores kept busy by other processes during ``window`` seconds (None if unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def cpu_is_busy() -> bool:
    """Whether other work keeps more than half of the CPU's cores busy right now."""
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if busy is None:
        if not hasattr(os, "getloadavg"):
            return False
        busy = os.getloadavg()[0]
    return busy > 0.5 * cores


def limit_threads_on_a_busy_cpu() -> None:
    """Set ``OMP_NUM_THREADS=1`` when the CPU is busy, unless threads or wait policy were chosen."""
    if not {"OMP_NUM_THREADS", "OMP_WAIT_POLICY"} & set(os.environ) and cpu_is_busy():
        os.environ["OMP_NUM_THREADS"] = "1"
