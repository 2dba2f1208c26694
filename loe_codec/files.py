"""Atomic output files: write under a temporary name in the same folder, rename on success."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CodecRuntimeError, UsageError


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it names an existing regular file; else a clear :class:`UsageError`."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if not path.is_file():
        raise UsageError(f"not a file: {path}")
    return path


def check_output_location(path: str | os.PathLike) -> Path:
    """Refuse an output path whose folder is missing or that names a folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{path}: the folder {parent} does not exist")
    try:
        is_dir = path.is_dir()
    except OSError:  # e.g. a name too long: the write itself reports it
        is_dir = False
    if is_dir:
        raise UsageError(f"{path} is a folder")
    return path


def _set_default_mode(path: str) -> None:
    """Give a temporary file the mode a plain ``open()`` would (mkstemp makes it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path (same folder, same suffix) that replaces ``path`` if the block succeeds.

    On any failure the temporary file is removed and nothing is left at ``path``;
    ``OSError`` becomes :class:`CodecRuntimeError`.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=folder)
        os.close(fd)
        yield tmp
        _set_default_mode(tmp)  # after writing: some writers replace the file they are given
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise CodecRuntimeError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def adopted(path: Path, legacy: Path) -> Path:
    """``path``, renamed from ``legacy`` (the same file or folder under an earlier version's name) where only
    that exists; if the rename fails, ``path`` stays missing (and is made again)."""
    if legacy.exists() and not path.exists():
        try:
            os.replace(legacy, path)
        except OSError:
            pass
    return path
