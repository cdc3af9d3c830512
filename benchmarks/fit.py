"""Fit-time benchmark: how long fitting takes on CPU and the held-out mAP it reaches.

Engine-level (no FiftyOne): fits on the 300 VOC images of ``shared/data/voc_dev``
(``labels.json``: image id -> list of class names) at several fit resolutions, with the
linear and MLP heads, and prints a Markdown table. Features are computed once per fit
size into a fresh cache (the "feature time"), then every head fit reads them from it
(the "fit time"; the held-out mAP is the mean over ``--seeds`` held-out splits).

    python benchmarks/fit.py [--data ../shared/data/voc_dev] [--sizes 224 448]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ewc_fo.models.fitting import fit_classifier

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voc_dev"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    ap.add_argument("--heads", nargs="+", default=["linear", "mlp"])
    ap.add_argument("--seeds", type=int, default=3, help="held-out splits the mAP is averaged over")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images (smoke test)")
    args = ap.parse_args(argv)

    labels = json.loads((args.data / "labels.json").read_text())
    ids = sorted(labels)[: args.limit]
    paths = [args.data / "JPEGImages" / f"{i}.jpg" for i in ids]
    ys = [labels[i] for i in ids]
    print(f"{len(ids)} images, {len({c for y in ys for c in y})} classes, torch threads: "
          f"{torch.get_num_threads()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for size in args.sizes:
            for head in args.heads:
                scores, fit_s, feat_s = [], [], None
                for seed in range(args.seeds):
                    t = time.perf_counter()
                    clf = fit_classifier(paths, ys, backbone=args.backbone, fit_size=size, head=head,
                                         seed=seed, cache_dir=cache)
                    total = time.perf_counter() - t
                    m = clf.meta
                    if m["features_computed"]:
                        feat_s = m["feature_time_s"]
                    fit_s.append(total - m["feature_time_s"])
                    scores.append(m["heldout_score"])
                rows.append((args.backbone, size, head, feat_s, float(np.median(fit_s)),
                             float(np.mean(scores)), float(np.std(scores)), m["n_heldout"]))
                print(f"  done: {size} px, {head}", flush=True)
    print("\n| backbone | fit size | head | feature time (s) | fit time (s) | held-out mAP |")
    print("|---|---|---|---|---|---|")
    for bb, size, head, feat, fit, mean, sd, nh in rows:
        ft = f"{feat:.0f}" if feat is not None else "cached"
        print(f"| {bb} | {size} | {head} | {ft} | {fit:.1f} | {mean:.3f} ± {sd:.3f} ({nh} images) |")
    print("\nfeature time: backbone passes over every image and its mirror (once per fit size; "
          "later fits read the cache). fit time: one fit from cached features, including model "
          f"build. mAP: mean ± sd over {args.seeds} held-out splits.")


if __name__ == "__main__":
    main()
