"""The video side of the ``loe`` commands (called from :mod:`cli.main` when the input is a video)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Optional


from cli.summaries import quant_summary, size_summary, units_summary
from loe_codec.errors import UsageError


def parse_range(text: Optional[str], name: str, kind: type) -> Optional[tuple]:
    """``"A:B"`` -> ``(A, B)``; an empty side means the start / the end (``None``)."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return tuple(kind(p) if p.strip() else None for p in parts)
    except ValueError:
        unit = "frame indices" if kind is int else "seconds"
        raise UsageError(f"{name} must be START:END in {unit} (end exclusive), got {text!r}") from None


def encode(source: Path, output: Path, preset: Optional[str], steps, tile, seed, chunk, rate: dict, device: str,
           measure: bool, progress, warn: Callable[[str], None], resume: bool = False, audio: bool = True,
           motion: Optional[str] = None):
    """Encode a video; ``rate`` holds ``bpp``, ``psnr`` and ``quality`` (at most one set). Returns
    ``(result dict, summary line)``."""
    from loe_codec.video import encode_video

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = encode_video(source, output, preset or "video", steps=steps, tile=tile, seed=seed, chunk=chunk,
                              **rate, device=device, progress=progress, measure_psnr=measure, resume=resume,
                              audio=audio, motion=motion)
    for w in caught:
        warn(str(w.message))
    for note in result.notes:
        warn(note)
    psnr = f"{result.psnr:.2f} dB (mean per frame)" if result.psnr is not None else "not measured"
    sound = f" (audio copied: {result.audio_bytes} of them)" if result.audio == "copied" else ""
    return vars(result), (f"{result.path}: {result.bytes} bytes{sound}, {result.bpp:.4f} bpp (per pixel per frame), "
                          f"PSNR {psnr}, {result.frames} frames at {result.fps:.3f} fps, {result.blocks} blocks"
                          f"{' along the camera path' if result.motion == 'global' else ''}, "
                          f"{result.seconds:.1f} s")


def decode(codec: Path, output: Path, region, scale, width, height, frames: Optional[str],
           time_range: Optional[str], fps: Optional[float], video_codec: Optional[str], device: str,
           progress, warn: Callable[[str], None], audio: bool = True) -> str:
    """Decode a video `.loe` file; returns the summary line."""
    from loe_codec.audio import AudioWarning
    from loe_codec.video import LoeVideo

    with LoeVideo(codec) as clip:
        fr = parse_range(frames, "--frames", int)
        tr = parse_range(time_range, "--time", float)
        if fr is not None:
            fr = (0 if fr[0] is None else fr[0], clip.frames if fr[1] is None else fr[1])
        if tr is not None:
            tr = (0.0 if tr[0] is None else tr[0], clip.duration if tr[1] is None else tr[1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w, h, n = clip.decode_to_file(output, video_codec, device, progress, audio, frames=fr, time=tr,
                                          region=region, scale=scale, width=width, height=height, fps=fps)
        for warning in caught:
            warn(str(warning.message))
        rate = float(fps) if fps is not None else float(clip.fps)
        written = not any(issubclass(warning.category, AudioWarning) for warning in caught)
        sound = " with its audio" if audio and clip.header.audio_track is not None and written else ""
    return f"{output}: {w}x{h}, {n} frames at {rate:.3f} fps{sound}"


def info_summary(data: dict) -> str:
    m, b = data["model"], data["blocks"]
    psnr = data["stats"].get("psnr")
    return "\n".join([
        f"{data['path']}: loe video format v{data['format_version']} ({data['encoder']})",
        f"  video  {data['width']}x{data['height']}, {data['frames']} frames at {data['fps']:.3f} fps "
        f"({data['fps_fraction']}), {data['duration']:.3f} s, audio {data['audio']}"
        + (f" ({_audio_summary(data['audio_track'])})" if "audio_track" in data else ""),
        f"  blocks {b['count']} ({b['cols']}x{b['rows']} tiles of {b['tile_size']} px, margin {b['tile_margin']}; "
        f"{b['chunks']} chunks of {b['chunk_frames']} frames, margin {b['time_margin']})",
        *([f"  motion global: the blocks follow the camera's pan (last frame shifted by "
           f"{data['camera_path_pixels'][0]:+.1f}, {data['camera_path_pixels'][1]:+.1f} px)"] if "motion" in data else []),
        f"  model  preset {data['preset']}: 3-D, width {m['width']}, banks {list(m['banks'])} per dim, "
        f"{m['arrangement']}, {m['blend']}, {m['activation']}, {m['parameters_per_block']} parameters/block",
        f"  quant  {quant_summary(data['quantization'])}",
        *([units_summary(data["units_kept"], "blocks")] if "units_kept" in data else []),
        f"{size_summary(data)}, {data['bpp']:.4f} bpp per frame"
        + (f", mean PSNR at encode {psnr:.2f} dB" if psnr is not None else ""),
    ])


def _audio_summary(track: dict) -> str:
    return (f"{track['codec']}, {track['sample_rate']} Hz, {track['channels']} channels, {track['duration']:.3f} s, "
            f"{track['bytes']} bytes, not counted in bpp")


def eval_summary(codec: Path, data: dict) -> str:
    line = (f"{codec}: {data['bpp']:.4f} bpp per frame, mean PSNR {data['psnr']:.2f} dB over {data['frames']} "
            f"frames (lowest {data['psnr_min_frame']:.2f})")
    if data["psnr_chunk_borders"] is not None:
        line += (f"; chunk-border frames {data['psnr_chunk_borders']:.2f} dB, others "
                 f"{data['psnr_chunk_interiors']:.2f} dB")
    if data["psnr_seams"] is not None:
        line += f"; tile seams {data['psnr_seams']:.2f} dB, interiors {data['psnr_interior']:.2f} dB"
    return line
