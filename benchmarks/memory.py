"""Memory benchmark: peak RSS of labeling ONE image with 1, 12, 40 (or more) classes.

Each row runs in a fresh process (peak RSS is a high-water mark) with the offline
EfficientNet-Lite0 (1000 ImageNet classes; the image's labels are its top-N classes),
explain size 448, the default explainers and GrabCut. ``--chunks`` compares the class
chunk sizes (``Limits.class_chunk``: image-class rows per forward/backward pass);
a chunk as large as the class count is how every class was explained at once before.

    python benchmarks/memory.py --classes 1,12,40 --chunks 4
    python benchmarks/memory.py --classes 1,12 --chunks 4,1000   # before/after
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "voc_dev" / "JPEGImages" / "2007_000032.jpg"


def one(image: str, n: int, chunk: int, size: int) -> dict:
    """Label ``image`` with its top-``n`` classes in this process; peak RSS in MiB."""
    sys.path.insert(0, str(ROOT))
    import cv2
    import torch

    from ewc_fo.engine.pipeline import EWC, EWCConfig
    from ewc_fo.models.registry import load_classifier
    from ewc_fo.runtime.budget import Limits
    from ewc_fo.runtime.images import load_image
    from ewc_fo.segmenters import GrabCutSegmenter

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    clf = load_classifier("efficientnet_lite0")
    img = load_image(image)
    top = [int(i) for i in clf.predict([img])[0].argsort()[::-1][:n]]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ewc = EWC(clf, GrabCutSegmenter(), EWCConfig(explain_size=size),
              Limits(class_chunk=chunk, max_classes=max(n, 64), sample_timeout_s=None))
    t = time.perf_counter()
    (r,) = ewc.run([img], [top])
    sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"classes": n, "chunk": chunk, "seconds": sec, "peak_mib": peak, "before_run_mib": base,
            "labeled": len(r.classes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--classes", default="1,12,40", help="comma-separated class counts")
    ap.add_argument("--chunks", default="4", help="comma-separated Limits.class_chunk values")
    ap.add_argument("--size", type=int, default=448, help="explain size")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        n, chunk = (int(v) for v in a.child.split(","))
        print(json.dumps(one(a.image, n, chunk, a.size)))
        return
    if not os.path.isfile(a.image):
        from PIL import Image
        from skimage.data import chelsea  # a bundled photo when voc_dev is not there

        a.image = str(Path(os.environ.get("TMPDIR", "/tmp")) / "ewc_memory_chelsea.png")
        Image.fromarray(chelsea()).save(a.image)
    print(f"image: {Path(a.image).name}, explain size {a.size}, EfficientNet-Lite0, default explainers, GrabCut\n")
    print("| classes | class_chunk | peak RSS MiB | before run MiB | s |")
    print("|---|---|---|---|---|")
    for chunk in (int(c) for c in a.chunks.split(",")):
        for n in (int(c) for c in a.classes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--image", a.image, "--size", str(a.size),
                                  "--child", f"{n},{chunk}"], capture_output=True, text=True)
            if out.returncode:
                print(f"| {n} | {chunk} | failed (rc {out.returncode}) | | |")
                print(out.stderr[-1000:], file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {n} | {min(chunk, n)} | {r['peak_mib']:.0f} | {r['before_run_mib']:.0f} | "
                  f"{r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
