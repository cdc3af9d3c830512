"""Does a labeling run stream? Peak memory for 30 vs 300 samples, and the database's share of time.

Each size runs in a fresh subprocess (so peak RSS is that run's own) on the first N images of
``../shared/data/voc_dev`` imported into FiftyOne. The classifier is EfficientNet-Lite0 with a
VOC head (random unless ``--classifier`` names a fitted checkpoint): memory and write time do
not depend on how good the head is. Targets: RSS(300) / RSS(30) <= 1.2, writes <= 10 % of wall.

    python benchmarks/label_scale.py            # 30 and 300
    python benchmarks/label_scale.py --sizes 10,40
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"


def child(data: str, n: int, classifier: str | None, segmenter: str, explainers: str | None) -> dict:
    import time

    import ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.fo.io.importers import VOC_CLASSES, import_voc
    from ewc_fo.models.checkpoint import load_checkpoint
    from ewc_fo.models.classifier import Classifier
    from ewc_fo.models.fitting import build_fitted_model
    from ewc_fo.segmenters import create_segmenter

    ds = import_voc(f"ewc-scale-{n}", data, overwrite=True, max_samples=n)
    if classifier:
        clf = load_checkpoint(classifier)
    else:
        model, mean, std = build_fitted_model("efficientnet_lite0", 20)
        clf = Classifier.from_module(model, VOC_CLASSES[1:], layers=model.backbone.layers,
                                     mean=mean, std=std, multilabel=True, input_size=448)
    cfg = EWCConfig(explainers=tuple(explainers.split(","))) if explainers else EWCConfig()
    t = time.perf_counter()
    s = ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter(segmenter), config=cfg,
                     progress_bar=False, overwrite=True)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "labeled": s.succeeded, "failed": sum(s.errors.values()), "wall_s": wall,
            "write_s": s.write_seconds, "peak_rss_mb": rss}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--sizes", default="30,300")
    p.add_argument("--classifier", default=None, help="a checkpoint from `ewc-fo fit`")
    p.add_argument("--segmenter", default="grabcut")
    p.add_argument("--explainers", default=None, help="comma-separated (default: the defaults)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.data, args.child, args.classifier, args.segmenter, args.explainers)))
        return 0
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--child", str(n), "--data", args.data, "--segmenter", args.segmenter]
        if args.classifier:
            cmd += ["--classifier", args.classifier]
        if args.explainers:
            cmd += ["--explainers", args.explainers]
        env = {**os.environ, "FIFTYONE_DATABASE_VALIDATION": "false"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print("| samples | labeled | failed | wall s | s/img | DB writes s | writes % of wall | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['labeled']} | {r['failed']} | {r['wall_s']:.1f} | {r['wall_s'] / r['n']:.2f} "
              f"| {r['write_s']:.2f} | {100 * r['write_s'] / r['wall_s']:.1f}% | {r['peak_rss_mb']:.0f} |")
    if len(rows) >= 2:
        print(f"\npeak RSS ratio {rows[-1]['n']} vs {rows[0]['n']} samples: "
              f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
