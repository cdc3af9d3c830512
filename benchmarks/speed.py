"""Seconds per image of the whole label path, one segmenter against another, in one process.

The speed goal of a segmenter (issue 24: the default's seconds per image at most 2x GrabCut's
on the same idle machine in the same session) is a ratio, so both sides are timed here in
turn on the same images: the classifier is fitted once (as ``quality.py`` does: image-level
labels only), then ``ewc_fo.label`` runs over the first ``--limit`` images with each segmenter,
``--rounds`` times, the order alternating each round so a change of load falls on both. Each
segmenter's model is loaded before its clock starts. Run it with nothing else on the machine
for an idle figure.

    python benchmarks/speed.py --limit 48 --rounds 2                  # grabcut vs sam-onnx
    python benchmarks/speed.py --segmenters grabcut,sam-onnx --sam-precision int8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "voc_dev"))
    p.add_argument("--segmenters", default="grabcut,sam-onnx",
                   help="comma-separated; the first is the baseline of the ratio")
    p.add_argument("--limit", type=int, default=48, help="label the first N images (sorted by file)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--sam-precision", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--name", default="ewc-bench-speed", help="FiftyOne dataset name (recreated)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import quality

    import ewc_fo
    from ewc_fo.engine.config import EWCConfig
    from ewc_fo.fo.fit import fit
    from ewc_fo.segmenters import create_segmenter

    data = quality.parse_args(["--data", args.data, "--name", args.name])
    ds, source = quality.load_data(data)
    view = ds.sort_by("filepath").limit(args.limit)
    clf = fit(ds, "labels", fit_size=448, input_size=448)
    names = [s.strip() for s in args.segmenters.split(",") if s.strip()]
    segs = {n: create_segmenter(n, **({"precision": args.sam_precision} if n == "sam-onnx" else {}))
            for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            summary = ewc_fo.label(view, "labels", classifier=clf, segmenter=segs[n], config=EWCConfig(),
                                   batch_size=args.batch_size, overwrite=True, write_every=16)
            times[n].append((time.perf_counter() - t) / max(1, summary.succeeded))
            print(f"round {r + 1} {n}: {times[n][-1]:.2f} s/img", flush=True)
    base = statistics.mean(times[names[0]])
    print(f"\n# Seconds per image, {len(view)} images of {Path(source).name}, {args.rounds} rounds, "
          f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print(f"| segmenter | s/img per round | mean | ÷ {names[0]} |")
    print("|---|---|---|---|")
    for n in names:
        m = statistics.mean(times[n])
        print(f"| {segs[n].describe().get('name', n)} | {' / '.join(f'{t:.2f}' for t in times[n])} "
              f"| {m:.2f} | {m / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
