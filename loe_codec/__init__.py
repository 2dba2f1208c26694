"""loe-codec: a neural image and video codec built on Levels-of-Experts coordinate networks.

Public API: :func:`encode`, :func:`open` (-> :class:`LoeImage`, or :class:`LoeVideo`
for a video file), :func:`info`, :func:`evaluate`; video: :func:`encode_video`,
:func:`open_video`; configs and presets in :mod:`loe_codec.config` and
:mod:`loe_codec.video`.
"""

__version__ = "0.1.0"

from .api import LoeImage, encode, evaluate, info, open  # noqa: E402,A004
from .config import PRESETS, CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig, preset  # noqa: E402
from .errors import CodecRuntimeError, FormatError, LoeError, UsageError  # noqa: E402
from .video import VIDEO_PRESETS, LoeVideo, encode_video, open_video  # noqa: E402

__all__ = [
    "PRESETS", "CodecConfig", "CodecRuntimeError", "FitConfig", "FormatError", "LoeError", "LoeImage",
    "ModelConfig", "QuantConfig", "TileConfig", "UsageError", "VIDEO_PRESETS", "LoeVideo", "__version__", "encode",
    "encode_video", "evaluate", "info", "open", "open_video", "preset",
]
