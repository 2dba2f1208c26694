"""Codec names -> codec objects, and the per-codec settings a run uses."""

from __future__ import annotations

import os
from typing import Iterable, Mapping

from ..errors import UsageError
from .classical import CLASSICAL
from .codecs import Codec
from .loe import LoeCodec
from .video_codecs import make_video_codec

CODEC_NAMES = ("loe", *CLASSICAL)
DEFAULT_CODECS = ("loe", "jpeg", "webp", "jpeg2000", "avif", "jpegxl")


def make_codecs(names: Iterable[str], device: str = "auto", loe_steps: int | None = None,
                video: bool = False, cache: str | os.PathLike | None = None) -> list[Codec]:
    """The codecs called ``names`` (in that order, each once); ``device``, ``loe_steps`` and ``cache``
    (a folder that keeps loe's fits between runs, see :class:`~.loe.LoeCodec`) go to loe.

    With ``video``, the video codecs (:mod:`.video_codecs`)."""
    out: list[Codec] = []
    for name in names:
        if name in (c.name for c in out):
            continue
        if video:
            out.append(make_video_codec(name, device, loe_steps, cache))
        elif name == "loe":
            out.append(LoeCodec(device, loe_steps, cache))
        elif name in CLASSICAL:
            out.append(CLASSICAL[name])
        else:
            raise UsageError(f"unknown codec {name!r}; choose from {', '.join(CODEC_NAMES)}")
    if not out:
        raise UsageError("no codecs given")
    return out


def parse_settings(specs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``["jpeg=10,50,90", "loe=fast"]`` -> ``{"jpeg": ("10", "50", "90"), "loe": ("fast",)}``."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        settings = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name.strip() or not settings:
            raise UsageError(f"settings must look like CODEC=S1,S2,... (e.g. jpeg=10,50,90), got {spec!r}")
        out[name.strip()] = settings
    return out


def settings_for(codecs: list[Codec], overrides: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Each codec's settings: ``overrides`` where given, else its default sweep; all checked."""
    names = {c.name for c in codecs}
    stray = sorted(set(overrides) - names)
    if stray:
        raise UsageError(f"settings given for {stray[0]!r}, which is not among the codecs run ({', '.join(names)})")
    out = {}
    for c in codecs:
        settings = tuple(dict.fromkeys(overrides.get(c.name, c.settings)))
        for s in settings:
            c.check_setting(s)
        out[c.name] = settings
    return out
