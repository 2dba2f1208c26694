#!/usr/bin/env python3
"""Encode one image through the Python API, logging progress and peak RSS as JSON lines.

For encodes that take hours (a 100 MP image with ``--preset fast`` on a 2-core
CPU): every 30 s one line with the stage, the fraction done and the process's
peak RSS so far, so a run that cannot finish still says how far it got and at
what rate. The same as ``loe encode SRC -o OUT --preset PRESET --device cpu``.

    OMP_WAIT_POLICY=PASSIVE nice -n 10 /usr/bin/time -v -o enc.time \\
        python benchmarks/encode_progress.py /tmp/mosaic_100mp.tif /tmp/mosaic_100mp.loe enc.log --preset fast
"""

import argparse
import json
import resource
import time

import loe_codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("log", help="JSON-lines progress log (appended)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between log lines")
    args = parser.parse_args()
    started, last = time.time(), [0.0]
    with open(args.log, "a", buffering=1) as log:
        def rss() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

        def progress(stage: str, done: float, total: float) -> None:
            now = time.time()
            if now - last[0] >= args.every or done >= total:
                last[0] = now
                log.write(json.dumps({"t": round(now - started, 1), "stage": stage, "done": done, "total": total,
                                      "frac": round(done / total, 4) if total else 1.0, "maxrss_mb": rss()}) + "\n")

        result = loe_codec.encode(args.source, args.output, preset=args.preset, device="cpu", progress=progress)
        log.write(json.dumps({"t": round(time.time() - started, 1), "result": vars(result), "maxrss_mb": rss()}) + "\n")


if __name__ == "__main__":
    main()
