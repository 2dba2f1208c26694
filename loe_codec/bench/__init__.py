"""``loe bench``: the loe codec against classical codecs on a set of images, in bits and dB.

Modules, one job each:

* :mod:`.images` finds and reads the images (RGB, 8-bit);
* :mod:`.codecs` the codec interface and one :class:`Measurement`;
* :mod:`.classical` JPEG, WebP, JPEG 2000, AVIF, JPEG XL through ``imagecodecs``;
* :mod:`.loe` the loe codec through the public API (:func:`loe_config` maps settings to configs);
* :mod:`.videos` the videos (reference frames, optionally cut) and :mod:`.video_codecs` their
  codecs: loe video, its plain-MLP baseline, loe images frame by frame, x264, x265;
* :mod:`.registry` codec names and per-codec settings;
* :mod:`.rd` RD maths: PSNR at fixed rates, Bjøntegaard BD-rate / BD-PSNR;
* :mod:`.summary` the table's numbers; :mod:`.report` table, Markdown and plot;
* :mod:`.machine` machine info; :mod:`.runner` runs it all and writes the results.
"""

from .images import find_images
from .loe import loe_config
from .registry import CODEC_NAMES, DEFAULT_CODECS, make_codecs, parse_settings, settings_for
from .report import rich_table, setting_lines
from .runner import DEFAULT_POINTS, cache_folder, check_outputs, load_reference, run_bench
from .summary import BdSpec
from .video_codecs import DEFAULT_VIDEO_CODECS, VIDEO_CODEC_NAMES
from .videos import open_videos

__all__ = ["BdSpec", "CODEC_NAMES", "DEFAULT_CODECS", "DEFAULT_POINTS", "DEFAULT_VIDEO_CODECS", "VIDEO_CODEC_NAMES",
           "open_videos", "cache_folder", "check_outputs", "find_images",
           "load_reference", "loe_config", "make_codecs", "parse_settings", "rich_table", "run_bench",
           "setting_lines", "settings_for"]
