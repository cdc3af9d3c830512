"""Where a CPU label run's time goes, stage by stage, before and after the throughput work.

Labels the first N voc_dev images (default 30) the way ``ewc_fo.label`` does, batch by
batch (decode -> ``EWC.run`` -> files -> database), with two engines on the same images
in the same process, interleaved batch by batch (the first to run alternates), so a
shared machine's load falls on both alike:

  before   the previous engine's way of working: GrabCut cuts one after another, the
           per-image steps one image after another, input_x_gradient with captum's own
           forward and backward
  after    the defaults: cuts and per-image steps on a thread pool over the cores,
           input_x_gradient from the CAM pass's backward

It prints seconds per image of each stage for both, the ratio, and whether the two
engines' label maps are identical (they must be: the changes are about speed only).
A private mongod (tests/_mongod.py) holds the throw-away dataset.

    python benchmarks/profile_cpu.py --n 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"

ROWS = [("decode", ("decode",)), ("explain (all explainers)", ("explain",)),
        ("per-explainer segmentations", ("segment_explainers",)),
        ("fused segmentation", ("segment_fused",)),
        ("scores, fusion, prompts", ("downscale", "prepare", "fuse", "segmenter_set")),
        ("merge (confidence, full-size masks, label map)", ("merge",)),
        ("file writes", ("files",)), ("database writes", ("db",))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--classifier", default=None, help="a checkpoint from `ewc-fo fit` (default: "
                   "EfficientNet-Lite0 with a random 20-class VOC head at 448 px; speed does not depend on it)")
    args = p.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="ewc-profile-")
    from tests._mongod import start_session_database

    os.environ["FIFTYONE_DATABASE_URI"] = start_session_database(os.path.join(tmp, "db"))
    import numpy as np
    import torch

    from ewc_fo.engine.pipeline import EWC, EWCConfig
    from ewc_fo.fo.io.importers import VOC_CLASSES, import_voc
    from ewc_fo.fo.runs import record as runs
    from ewc_fo.fo.runs.plan import _declare_fields
    from ewc_fo.fo.runs.sample_values import flush, sample_values
    from ewc_fo.models.checkpoint import load_checkpoint
    from ewc_fo.models.classifier import Classifier
    from ewc_fo.models.fitting import build_fitted_model
    from ewc_fo.runtime.device import cpu_count
    from ewc_fo.runtime.errors import EWCError
    from ewc_fo.runtime.images import load_image
    from ewc_fo.segmenters import GrabCutSegmenter

    ds = import_voc("ewc-profile-cpu", args.data, overwrite=True, max_samples=args.n)
    if args.classifier:
        clf = load_checkpoint(args.classifier)
    else:
        model, mean, std = build_fitted_model("efficientnet_lite0", 20)
        clf = Classifier.from_module(model, VOC_CLASSES[1:], layers=model.backbone.layers,
                                     mean=mean, std=std, multilabel=True, input_size=448)
    ids, paths = ds.values("id"), ds.values("filepath")
    labels = [list(dict.fromkeys(v or [])) for v in ds.values("labels.classifications.label")]
    cfg = EWCConfig()

    engines = {}
    for name in ("before", "after"):
        ewc = EWC(clf, GrabCutSegmenter(), cfg)
        if name == "before":
            ewc.workers = ewc.segmenter.workers = 1
            for e in ewc.explainers:
                if e.family == "attribution":
                    e.from_gradient = False  # captum's own forward and backward, as before
        keys = [e.key for e in ewc.explainers]
        names = runs.field_names(name, keys)
        _declare_fields(ds, names)
        out = os.path.join(tmp, name)
        for sub in ("masks", "heatmaps", "maps"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
        target = {c: i + 1 for i, c in enumerate(VOC_CLASSES[1:])}
        engines[name] = (ewc, keys, names, out, target)

    sec = {n: defaultdict(float) for n in engines}
    maps = {n: {} for n in engines}
    bs = args.batch_size
    print(f"{len(ids)} voc_dev images, batch {bs}, torch threads {torch.get_num_threads()}, "
          f"cores usable {cpu_count()}; explainers {', '.join(cfg.explainers)}; GrabCut", flush=True)
    t_all = time.perf_counter()
    for b, start in enumerate(range(0, len(ids), bs)):
        order = ["before", "after"] if b % 2 == 0 else ["after", "before"]
        for name in order:
            ewc, keys, names, out, target = engines[name]
            s = sec[name]
            sl = slice(start, start + bs)
            t = time.perf_counter()
            images = []
            for path in paths[sl]:
                try:
                    images.append(load_image(path))
                except EWCError:
                    images.append(None)
            s["decode"] += time.perf_counter() - t
            ok = [i for i, im in enumerate(images) if im is not None and labels[start + i]]
            ewc.timings.clear()
            results = ewc.run([images[i] for i in ok], [labels[start + i] for i in ok])
            for k, v in ewc.timings.items():
                s[k] += v
            t = time.perf_counter()
            pending = []
            for i, r in zip(ok, results):
                sid = ids[start + i]
                pending.append((sid, sample_values(sid, r, out, target, keys)))
                maps[name][sid] = r.label_map
            s["files"] += time.perf_counter() - t
            s["db"] += flush(ds, pending, names)
        print(f"  {min(start + bs, len(ids))}/{len(ids)} images, {time.perf_counter() - t_all:.0f}s", flush=True)

    n = len(ids)
    same = sum(np.array_equal(maps["before"][i], maps["after"][i]) for i in maps["before"])
    print("\n| stage | before s/img | after s/img | after / before |\n|---|---|---|---|")
    tot = {k: 0.0 for k in engines}
    for label, keys in ROWS:
        v = {k: sum(sec[k].get(x, 0.0) for x in keys) / n for k in engines}
        for k in engines:
            tot[k] += v[k]
        ratio = f"{v['after'] / v['before']:.2f}" if v["before"] > 0 else "-"
        print(f"| {label} | {v['before']:.3f} | {v['after']:.3f} | {ratio} |")
    print(f"| **total** | **{tot['before']:.2f}** | **{tot['after']:.2f}** | "
          f"**{tot['after'] / tot['before']:.2f}** |")
    print(f"\nlabel maps identical before/after: {same}/{len(maps['before'])}")
    ds.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
