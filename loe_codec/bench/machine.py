"""What a result was measured on: CPU, versions, date, command."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version(root: str | os.PathLike = ROOT) -> str:
    """The checkout's commit (short), ``+dirty`` if its tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(command: str, device: str | None = None) -> dict:
    """A dict for the results: date (UTC), command, the code's commit, CPU, cores, OS, Python, torch,
    imagecodecs versions."""
    import torch

    import loe_codec

    try:
        import imagecodecs

        wanted = ("imagecodecs", "libjpeg_turbo", "libwebp", "openjpeg", "libavif", "libjxl")
        codecs = ", ".join(p for p in imagecodecs.version().split(", ") if p.split("-")[0] in wanted)
    except ImportError:  # pragma: no cover - depends on the installation
        codecs = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "commit": code_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loe_codec": loe_codec.__version__,
        "imagecodecs": codecs,
    }
    if device is not None:
        info["loe_device"] = device
        if device == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
    return info
