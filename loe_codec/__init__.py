"""loe-codec: a neural image codec built on Levels-of-Experts coordinate networks.

Public API: :func:`encode`, :func:`open` (-> :class:`LoeImage`), :func:`info`,
:func:`evaluate`; configs and presets in :mod:`loe_codec.config`.
"""

__version__ = "0.1.0"

from .api import LoeImage, encode, evaluate, info, open  # noqa: E402,A004
from .config import PRESETS, CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig, preset  # noqa: E402
from .errors import CodecRuntimeError, FormatError, LoeError, UsageError  # noqa: E402

__all__ = [
    "PRESETS", "CodecConfig", "CodecRuntimeError", "FitConfig", "FormatError", "LoeError", "LoeImage",
    "ModelConfig", "QuantConfig", "TileConfig", "UsageError", "__version__", "encode", "evaluate", "info",
    "open", "preset",
]
