"""``video_sizes.py`` with the error-driven sampler's constants changed (cell size, mix, power, decay;
see :mod:`loe_codec.sampling`), for trying them without a config field each::

    python benchmarks/video_sampler_variant.py 4,16,16 0.25 1.0 0.1 crop.mkv errp1 \\
        '{"fit": {"steps": 32000, "sampling": "error"}}' 0.03 --preset video-best
"""

import functools
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec import sampling  # noqa: E402

if __name__ == "__main__":
    cell = tuple(int(v) for v in sys.argv[1].split(","))
    mix, power, decay = (float(v) for v in sys.argv[2:5])
    # The pools build their sampler through this module-level name.
    sampling.CellSampler = functools.partial(sampling.CellSampler, cell=cell, mix=mix, power=power, decay=decay)
    sys.argv = ["video_sizes.py"] + sys.argv[5:]
    runpy.run_path(str(Path(__file__).resolve().parent / "video_sizes.py"), run_name="__main__")
