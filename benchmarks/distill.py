"""Distillation on real data: does a segmentation model trained on a run's trusted masks beat
those masks, label much faster, and still know which of its masks are bad? (issue 21)

Cross-fitted, so no image is scored by a model that trained on it: the run's images are split
into ``--folds`` folds (by sorted file path); for each fold a model is trained
(``ewc_fo.models.seg_train``, the same trust weights as ``ewc-fo train-seg``) on the other
folds' pseudo-masks and labels the held-out fold through ``ewc_fo.label(segmentation_model=...)``,
the product path (files, fields, run record). The frozen encoder's features are computed once
for all folds (they depend on no label).

The pseudo-masks come from a finished EWC run on the dataset (``--dataset``/``--run``); without
one, ``--data`` (default ``../shared/data/voc_dev``) is imported as a persistent dataset, the
classifier fitted from its image-level labels, and the default EWC (GrabCut) run made once, so
later invocations reuse it (keep its database outside the repository: FIFTYONE_DATABASE_DIR).
EWC's images/s is measured in the same process on ``--ewc-images`` images.

    FIFTYONE_DATABASE_DIR=/work/scratch/seg/db python benchmarks/distill.py --dataset seg-voc-pseudo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="imported when --dataset does not exist")
    p.add_argument("--dataset", default="ewc-bench-distill", help="dataset holding (or to hold) the EWC run")
    p.add_argument("--run", default="ewc", help="prefix of the EWC run whose masks teach")
    p.add_argument("--label-field", default="labels")
    p.add_argument("--gt-field", default="ground_truth")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--input-size", type=int, default=320)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--tune-epochs", type=int, default=0)
    p.add_argument("--min-confidence", type=float, default=0.0)
    p.add_argument("--uniform", action="store_true", help="also train with every weight 1 (ablation)")
    p.add_argument("--no-flip-too", action="store_true",
                   help="also label with the trust-weighted models without the mirrored pass (speed)")
    p.add_argument("--also-torch", action="store_true",
                   help="also label with the trust-weighted models on PyTorch instead of ONNX Runtime (speed)")
    p.add_argument("--ewc-images", type=int, default=8, help="images EWC labels here to time it")
    p.add_argument("--out", default=str(HERE / "results" / "distill"))
    return p.parse_args(argv)


def pseudo_run(args):
    """The dataset with a finished EWC run ``args.run``: reused, or made once (persistent)."""
    import fiftyone as fo

    import ewc_fo
    from ewc_fo.fo.fit import fit
    from ewc_fo.fo.io.importers import import_source
    from ewc_fo.fo.runs import record as runs

    if fo.dataset_exists(args.dataset):
        ds = fo.load_dataset(args.dataset)
    else:
        ds = import_source("auto", args.dataset, args.data, label_field=args.label_field, overwrite=True)
        ds.persistent = True
    rec = runs.get_run(ds, args.run)
    if rec is None or rec.get("status") != "complete":
        clf = fit(ds, args.label_field, out=os.path.join(tempfile.gettempdir(), f"{args.dataset}-clf.safetensors"),
                  fit_size=448, input_size=448)
        ewc_fo.label(ds, args.label_field, prefix=args.run, classifier=clf, segmenter="grabcut")
    return ds


def scores(view, mask_field: str, gt_field: str, gt_names: list[str], targets: dict):
    """Confusion matrix over ``view`` and each sample's IoU (ewc_fo.metrics), predictions mapped
    to ground-truth ids by class name."""
    from PIL import Image

    from ewc_fo.metrics import ConfusionMatrix, sample_iou

    C = len(gt_names)
    gid = {n: i for i, n in enumerate(gt_names)}
    lut = np.full(65536, C, np.int64)
    lut[0] = 0
    for k, v in targets.items():
        lut[int(k)] = gid.get(v, C)
    cm, ious = ConfusionMatrix(C), {}
    for s in view.select_fields([mask_field, gt_field]):
        if s[mask_field] is None or s[gt_field] is None:
            continue
        gt = np.asarray(s[gt_field].get_mask())
        pred = lut[np.asarray(Image.open(s[mask_field].mask_path))]
        cm.update(pred, gt)
        ious[s.id] = sample_iou(pred, gt, C)
    return cm, ious


def write_table(args, ds, ids, rows, ewc_ips, cfg, encode_s, out) -> None:
    """Print and save the table (after every variant: a long run leaves what it measured)."""
    from ewc_fo.metrics import auroc_bad, spearman

    lines = [f"# Distillation on {ds.name} ({len(ids)} images, {args.folds}-fold cross-fitted)", "",
             "| masks | mIoU | conf. AUROC (IoU<0.5) | conf. Spearman | images/s | vs EWC |",
             "|---|---|---|---|---|---|"]
    for name, (cm, iou, conf, speed) in rows.items():
        keys = [k for k in iou if conf.get(k) is not None]
        c = np.array([conf[k] for k in keys], float)
        v = np.array([iou[k] for k in keys], float)
        ips = ewc_ips if speed is None else speed[0]
        lines.append(f"| {name} | {100 * cm.miou():.1f}% | {auroc_bad(c, v):.3f} | {spearman(c, v):.3f} | "
                     f"{ips:.2f} | {ips / ewc_ips:.1f}x |")
    settings = {"folds": args.folds, "train": cfg.__dict__, "min_confidence": args.min_confidence,
                "encode_seconds": round(encode_s, 1), "ewc_images_timed": args.ewc_images,
                "train_seconds": {k: round(r[3][1], 1) for k, r in rows.items() if r[3] and r[3][1]},
                "model_load_seconds": getattr(args, "build_seconds", {}),
                "torch_threads": __import__("torch").get_num_threads(), "load": os.getloadavg()}
    md = "\n".join(lines + ["", "```json", json.dumps(settings, indent=1, default=str), "```", ""])
    print(md)
    (out / "distill.md").write_text(md)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import ewc_fo
    from ewc_fo.engine.seg_labeler import SegModelLabeler
    from ewc_fo.fo.train_seg import read_training_set
    from ewc_fo.models.classifier import IMAGENET_MEAN, IMAGENET_STD
    from ewc_fo.models.seg_checkpoint import save_seg_model
    from ewc_fo.models.seg_train import SegTrainConfig, encode_images, train_segnet
    from ewc_fo.models.segnet import SEG_BACKBONE, TUNED_PREFIXES

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = pseudo_run(args)
    view = ds.sort_by("filepath")
    ts = read_training_set(view, args.run, min_confidence=args.min_confidence, min_samples_per_class=0)
    ids = view.values("id")
    fold = {sid: i % args.folds for i, sid in enumerate(ids)}
    cfg = SegTrainConfig(input_size=args.input_size, epochs=args.epochs, tune_epochs=args.tune_epochs)
    t0 = time.perf_counter()
    enc = encode_images(ts.paths, cfg, verbose=True)
    encode_s = time.perf_counter() - t0
    targets_gt = {int(k): str(v) for k, v in ds.mask_targets[args.gt_field].items() if int(k) != 255}
    gt_names = [targets_gt.get(i, "background" if i == 0 else str(i)) for i in range(max(targets_gt) + 1)]
    rows = {}
    cm_p, iou_p = scores(view, f"{args.run}_mask", args.gt_field, gt_names, ds.mask_targets[f"{args.run}_mask"])
    conf_p = dict(zip(ids, view.values(f"{args.run}_confidence")))
    rows["pseudo-masks (EWC + GrabCut)"] = (cm_p, iou_p, conf_p, None)
    # EWC's speed in this process, same classifier settings as the run, on a few images
    ewc_view = view.limit(args.ewc_images).clone()
    from ewc_fo.fo.fit import fit
    from ewc_fo.fo.runs import record as runs
    from ewc_fo.models.registry import load_classifier

    used = (runs.get_run(ds, args.run) or {}).get("method", {}).get("classifier", {}).get("checkpoint")
    clf = load_classifier(used) if used and os.path.isfile(used) else \
        fit(ds, args.label_field, fit_size=448, input_size=448)
    t = time.perf_counter()
    s = ewc_fo.label(ewc_view, args.label_field, prefix="ewctime", classifier=clf, segmenter="grabcut",
                     output_dir=tempfile.mkdtemp())
    ewc_ips = s.succeeded / (time.perf_counter() - t)
    ewc_view.delete()

    def label_folds(name, models, runtime, tag, flip=True):
        """Each fold labeled by the model that did not learn from it; one table row."""
        cm_all, iou_all, conf_all, label_s, n_lab = None, {}, {}, 0.0, 0
        for f, path in enumerate(models):
            held = view.select([sid for sid in ids if fold[sid] == f], ordered=True)
            prefix = f"dist{tag}{f}"
            t = time.perf_counter()
            lab = SegModelLabeler(str(path), runtime=runtime, flip=flip)  # load (+ export): once a process, not timed
            args.build_seconds[f"{name}, {lab.runtime}{'' if flip else ', no mirror'}"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            s = ewc_fo.label(held, args.label_field, prefix=prefix, segmentation_model=lab,
                             overwrite=True, output_dir=str(out / "masks" / prefix))
            label_s += time.perf_counter() - t
            n_lab += s.succeeded
            cm, iou = scores(held, f"{prefix}_mask", args.gt_field, gt_names, ds.mask_targets[f"{prefix}_mask"])
            cm_all = cm if cm_all is None else cm_all.__iadd__(cm)
            iou_all.update(iou)
            conf_all.update(zip(held.values("id"), held.values(f"{prefix}_confidence")))
        return cm_all, iou_all, conf_all, n_lab / label_s

    args.build_seconds = {}
    variants = [("trained (trust weights)", False)] + ([("trained (uniform weights)", True)] if args.uniform else [])
    for name, uniform in variants:
        models, train_s = [], 0.0
        for f in range(args.folds):
            tr = [i for i, sid in enumerate(ts.ids) if fold[sid] != f]
            w = [np.ones_like(ts.weights[i]) if uniform else ts.weights[i] for i in tr]
            t = time.perf_counter()
            res = train_segnet([ts.paths[i] for i in tr], lambda j, tr=tr: ts.mask(tr[j]), w,
                               len(ts.class_names), cfg, encoded=enc.subset(tr), verbose=True)
            train_s += time.perf_counter() - t
            meta = {"backbone": SEG_BACKBONE, "class_names": ts.class_names, "input_size": cfg.input_size,
                    "width": cfg.width, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                    "trainable_prefixes": list(TUNED_PREFIXES) if cfg.tune_epochs else ["decoder"],
                    "sample_ids": [ts.ids[i] for i in tr], "run": {"dataset": ds.name, "prefix": args.run}}
            path = Path(tempfile.mkdtemp()) / f"fold{f}.safetensors"
            save_seg_model(res.model, meta, path)
            models.append(path)
        cm_all, iou_all, conf_all, ips = label_folds(name, models, "auto", "u" if uniform else "w")
        rows[f"{name}, ONNX Runtime"] = (cm_all, iou_all, conf_all, (ips, train_s))
        write_table(args, ds, ids, rows, ewc_ips, cfg, encode_s, out)
        if args.no_flip_too and not uniform:
            cm_all, iou_all, conf_all, ips = label_folds(name, models, "auto", "n", flip=False)
            rows[f"{name}, ONNX Runtime, no mirrored pass"] = (cm_all, iou_all, conf_all, (ips, 0.0))
            write_table(args, ds, ids, rows, ewc_ips, cfg, encode_s, out)
        if args.also_torch and not uniform:
            cm_all, iou_all, conf_all, ips = label_folds(name, models, "torch", "t")
            rows[f"{name}, PyTorch"] = (cm_all, iou_all, conf_all, (ips, 0.0))
            write_table(args, ds, ids, rows, ewc_ips, cfg, encode_s, out)

    return 0


if __name__ == "__main__":
    sys.exit(main())
