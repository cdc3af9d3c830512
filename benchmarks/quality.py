"""Mask quality on real data: does confidence-weighted fusion beat every single explainer,
and does the confidence find the bad masks?

The product path, end to end: import any source ``ewc-fo create`` takes (a VOC folder, a COCO
folder or instances JSON, class folders, ...; default ``../shared/data/voc_dev``), or clone an
existing FiftyOne dataset with a ground-truth mask field, fit the classifier from its image-level
labels only, label it with ``ewc_fo.label`` (keeping each explainer's own mask), evaluate with
``ewc_fo.evaluate``, and print one table:

  rows    = each single explainer (its own map -> same prompts -> same segmenter; with
            --objectness-labels, its own map labelling the same objectness),
            fused (no segmenter), fused + segmenter
  columns = mIoU alone (map thresholded, background threshold swept: the IRN protocol),
            mIoU + segmenter, confidence AUROC (IoU < 0.5) and Spearman, seconds per image

It also writes the table as Markdown and two plots (per-class IoU, confidence vs IoU).

    python benchmarks/quality.py                       # all 300 voc_dev images, GrabCut
    python benchmarks/quality.py --data my_coco/       # images/ + annotations/instances_*.json
    python benchmarks/quality.py --dataset mine --label-field labels --gt-field ground_truth
    python benchmarks/quality.py --limit 40 --segmenter sam2 --sam2-checkpoint sam2.1_hiera_tiny.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"
THRESHOLDS = np.round(np.arange(0.05, 0.80, 0.05), 2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="anything `ewc-fo create` imports: VOC folder, COCO folder or JSON, class folders, ...")
    p.add_argument("--from", dest="source", default="auto",
                   help="format of --data (auto, voc, coco, classdirs, folder, csv, cub, hf)")
    p.add_argument("--images", default=None, help="coco: image folder, if not images/ or data/ next to the JSON")
    p.add_argument("--dataset", default=None,
                   help="use this existing FiftyOne dataset instead of --data (cloned, never changed)")
    p.add_argument("--label-field", default="labels", help="image-level labels (Classification(s))")
    p.add_argument("--gt-field", default="ground_truth", help="ground-truth fo.Segmentation field")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted ids)")
    p.add_argument("--split", default=None, help="only images tagged with this split (e.g. val)")
    p.add_argument("--segmenter", default="grabcut", choices=["grabcut", "sam2", "sam-onnx"])
    p.add_argument("--sam-onnx", default=None, help="ONNX SAM folder (default $EWC_SAM_ONNX or the setup.sh cache)")
    p.add_argument("--sam-mask-input", type=float, default=0.0,
                   help="sam-onnx: the prompt's map as SAM's dense prompt, logits gain*(2*map-1) (0 = off)")
    p.add_argument("--sam-quality", default="iou", choices=["iou", "stability", "both"],
                   help="sam-onnx: a mask's quality = predicted IoU, stability score, or their product")
    p.add_argument("--sam-precision", default="fp32", choices=["fp32", "int8"],
                   help="sam-onnx: int8 = the encoder's int8 dynamic-quantized copy (docs/segmenters.md)")
    p.add_argument("--sam2-checkpoint", default=None)
    p.add_argument("--explainers", default=None, help="comma-separated (default: the defaults)")
    p.add_argument("--explain-size", type=int, default=448)
    p.add_argument("--scales", default=None, help="comma-separated explain scales, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="also explain the mirrored image")
    p.add_argument("--fit-size", type=int, default=448)
    p.add_argument("--classifier", default=None, help="use this checkpoint instead of fitting")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--score-weights", default=None, help="w_concentration,w_agreement,w_quality")
    p.add_argument("--fg-threshold", type=float, default=None)
    p.add_argument("--box-threshold", type=float, default=None)
    p.add_argument("--bg-threshold", type=float, default=None)
    p.add_argument("--mask-weight", type=float, default=None)
    p.add_argument("--class-competition", type=float, default=None)
    p.add_argument("--refine", default=None, choices=["none", "crf", "pamr"])
    p.add_argument("--objectness", type=float, default=None, help="objectness weight alpha (0 = off)")
    p.add_argument("--objectness-labels", type=float, default=None,
                   help="label map from objectness at this threshold (0 = off)")
    p.add_argument("--proposal-grid", type=int, default=None,
                   help="SAM proposals labelled by the maps: n x n point grid (0 = off; sam-onnx)")
    p.add_argument("--proposal-objectness", default=None, choices=["on", "off"],
                   help="objectness as the proposals' second vote (default: on where U²-Net-p is installed)")
    p.add_argument("--proposal-threshold", type=float, default=None,
                   help="mean fused evidence a proposal needs for a class (else background)")
    p.add_argument("--backbone", default="efficientnet_lite0", help="what `ewc-fo fit --backbone` takes")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--out", default=str(HERE / "results" / "quality"), help="table + plots folder")
    p.add_argument("--name", default="ewc-bench-quality", help="FiftyOne dataset name (recreated)")
    p.add_argument("--no-plots", action="store_true")
    return p.parse_args(argv)


def build_config(args):
    """The CLI's `ewc-fo label` options, plus the benchmark's own (scales, flip, score weights)."""
    from dataclasses import replace

    from ewc_fo.engine.config import OPTIONS, config_from_options

    explainers = args.explainers.split(",") if args.explainers else None
    opts = {**{k: getattr(args, k, None) for k in OPTIONS}, "explainers": explainers,
            "proposal_objectness": {"on": True, "off": False}.get(args.proposal_objectness)}
    cfg = replace(config_from_options(**opts), keep_explainer_masks=True)
    if args.scales or args.flip:
        scales = tuple(float(x) for x in args.scales.split(",")) if args.scales else cfg.scales
        cfg = replace(cfg, scales=scales, flip=args.flip)
    if args.score_weights:
        wc, wa, wq = (float(x) for x in args.score_weights.split(","))
        cfg = replace(cfg, score=replace(cfg.score, w_concentration=wc, w_agreement=wa, w_quality=wq))
    return cfg


def irn_label(maps: np.ndarray, ids: np.ndarray, thr: float) -> np.ndarray:
    """Argmax over [background = thr, class maps...] -> dataset class ids (0 = background)."""
    scores = np.concatenate([np.full((1, *maps.shape[1:]), thr, np.float32), maps])
    return np.concatenate([[0], ids])[scores.argmax(0)]


def resize_nearest(a: np.ndarray, shape) -> np.ndarray:
    import cv2

    if a.shape == tuple(shape):
        return a
    return cv2.resize(a.astype(np.uint16), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def resize_linear(a: np.ndarray, shape) -> np.ndarray:
    import cv2

    if a.shape[-2:] == tuple(shape):
        return a
    return np.stack([cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for m in a])


def ablations(view, gt_field: str, gt_names: list[str], prefix: str = "ewc", refine: str = "none",
              objectness_labels: float = 0.0, proposals: tuple[float, bool] | None = None):
    """Confusion matrices for every row from the stored maps and explainer masks; with a
    refinement stage, each explainer's masks go through it too, and with labels from
    objectness each explainer's map labels the stored objectness (the same stage as the fused row);
    with SAM proposals (``proposals = (threshold, objectness vote)``) each explainer's map labels
    the run's stored proposals (the same proposals as the fused row: clicked from the fused map).

    ``gt_names[i]`` names ground-truth id ``i`` (ids need not be contiguous: COCO's are not);
    a classifier class with no ground-truth id counts as wrong wherever it is predicted."""
    from ewc_fo.engine.maps import merge, salient_labels
    from ewc_fo.engine.proposals import label_proposals
    from ewc_fo.engine.refine import refine_labels
    from ewc_fo.metrics import ConfusionMatrix
    from ewc_fo.runtime.images import load_image

    C = len(gt_names)
    gt_id = {n: i for i, n in enumerate(gt_names)}
    alone: dict[str, dict[float, ConfusionMatrix]] = {}
    seg: dict[str, ConfusionMatrix] = {}
    for s in view.select_fields([gt_field, f"{prefix}_maps_path"]).exists(f"{prefix}_maps_path"):
        if s[gt_field] is None or (gt := s[gt_field].get_mask()) is None:
            continue
        gt = np.asarray(gt)
        z = np.load(s[f"{prefix}_maps_path"])
        names = [str(n) for n in z["names"]]
        ids = np.array([gt_id.get(str(c), C) for c in z["classes"]])
        maps = z["maps"].astype(np.float32) / 255
        rows = {n: maps[k] for k, n in enumerate(names)}
        rows["fused"] = z["fused"].astype(np.float32) / 255
        for n, m in rows.items():
            m = resize_linear(m, gt.shape)
            cms = alone.setdefault(n, {t: ConfusionMatrix(C) for t in THRESHOLDS})
            for t in THRESHOLDS:
                cms[t].update(irn_label(m, ids, t), gt)
        if proposals is not None and "proposals" in z:
            thr, vote = proposals
            pm = np.unpackbits(z["proposals"], axis=-1, count=int(z["proposals_width"])).astype(bool)
            props = list(zip(pm, z["proposal_qualities"].tolist()))
            obj = z["objectness"].astype(np.float32) / 255 if vote and "objectness" in z else None
            em = None if obj is not None else \
                np.unpackbits(z["explainer_masks"], axis=-1, count=int(z["explainer_masks_width"])).astype(bool)
            for k, n in enumerate(names):
                hw = maps[k].shape[1:]
                base = salient_labels(maps[k], obj, objectness_labels or thr, hw, z["probabilities"]) \
                    if obj is not None else merge(maps[k], list(em[k]), hw, strengths=z["probabilities"])
                lm = label_proposals(maps[k], props, thr, hw, z["probabilities"], base, obj)
                lab = resize_nearest(np.concatenate([[0], ids])[lm], gt.shape)
                seg.setdefault(n, ConfusionMatrix(C)).update(lab, gt)
        elif objectness_labels > 0 and "objectness" in z:
            # labels from objectness: each explainer's own map through the same stage as the fused one
            obj = z["objectness"].astype(np.float32) / 255
            for k, n in enumerate(names):
                lm = salient_labels(maps[k], obj, objectness_labels, gt.shape, z["probabilities"])
                seg.setdefault(n, ConfusionMatrix(C)).update(np.concatenate([[0], ids])[lm], gt)
        elif "explainer_masks" in z:
            em = np.unpackbits(z["explainer_masks"], axis=-1, count=int(z["explainer_masks_width"])).astype(bool)
            image = load_image(s.filepath) if refine != "none" else None
            for k, n in enumerate(names):
                if refine != "none":
                    lm = refine_labels(image, maps[k], list(em[k]), z["probabilities"], refine)
                else:
                    lm = merge(maps[k], list(em[k]), em.shape[-2:], strengths=z["probabilities"])
                lab = resize_nearest(np.concatenate([[0], ids])[lm], gt.shape)
                seg.setdefault(n, ConfusionMatrix(C)).update(lab, gt)
    return alone, seg


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

    import ewc_fo
    from ewc_fo.fo.fit import fit
    from ewc_fo.metrics import auroc_bad, spearman
    from ewc_fo.models.objectness import objectness_available
    from ewc_fo.models.registry import load_classifier
    from ewc_fo.runtime.errors import ConfigError
    from ewc_fo.segmenters import create_segmenter

    try:
        ds, source = load_data(args)
    except ConfigError as e:
        print(f"quality: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    view = ds.match_tags(args.split) if args.split else ds
    view = view.sort_by("filepath")
    if args.limit:
        view = view.limit(args.limit)
    print(f"{len(view)} images from {source}")

    t0 = time.perf_counter()
    if args.classifier:
        clf = load_classifier(args.classifier)
    else:
        clf = fit(ds, args.label_field, fit_size=args.fit_size, input_size=args.explain_size,
                  backbone=args.backbone)
    fit_s = time.perf_counter() - t0
    print(f"classifier fitted from image-level labels of {len(ds)} images in {fit_s:.0f}s: "
          f"held-out {clf.meta.get('metric', '?')} {clf.meta.get('heldout_score', float('nan')):.3f}"
          + (f" (not scored: {', '.join(clf.meta['not_scored'])})" if clf.meta.get("not_scored") else ""))

    seg_opts = {} if args.segmenter != "sam-onnx" else {
        "sam_onnx": args.sam_onnx, "mask_input": args.sam_mask_input, "quality": args.sam_quality,
        "precision": args.sam_precision}
    seg = create_segmenter(args.segmenter, checkpoint=args.sam2_checkpoint, **seg_opts)
    cfg = build_config(args)
    t1 = time.perf_counter()
    summary = ewc_fo.label(view, args.label_field, classifier=clf, segmenter=seg, config=cfg,
                           batch_size=args.batch_size, overwrite=True, write_every=16)
    label_s = time.perf_counter() - t1
    n = max(1, summary.succeeded)
    print(summary)

    report = ewc_fo.evaluate(view, pred_field="ewc_mask", gt_field=args.gt_field)
    targets = {int(k): str(v) for k, v in ds.mask_targets[args.gt_field].items() if int(k) != 255}
    gt_names = [targets.get(i, "background" if i == 0 else str(i)) for i in range(max(targets) + 1)]
    vote = cfg.proposal_objectness if cfg.proposal_objectness is not None else objectness_available()
    alone, segcm = ablations(view, args.gt_field, gt_names, refine=cfg.refine,
                             objectness_labels=cfg.objectness_labels,
                             proposals=(cfg.proposal_threshold, vote))

    conf = np.array(view.values("ewc_confidence"), dtype=float)
    agree = np.array(view.values("ewc_agreement"), dtype=float)
    iou = np.array(view.values("ewc_iou"), dtype=float)
    rows = []
    for name in [k for k in alone if k != "fused"] + ["fused"]:
        best = max(THRESHOLDS, key=lambda t: alone[name][t].miou())
        a = alone[name][best].miou()
        s = segcm[name].miou() if name in segcm else (report.miou if name == "fused" else float("nan"))
        rows.append((name, a, best, s))
    table = [
        f"| map | mIoU alone (best bg thr) | mIoU + {seg.name} | conf. AUROC (IoU<0.5) | conf. Spearman | s/img |",
        "|---|---|---|---|---|---|",
    ]
    for name, a, thr, s in rows:
        conf_cols = f"{auroc_bad(conf, iou):.3f} | {spearman(conf, iou):.3f} | {label_s / n:.2f}" \
            if name == "fused" else " | | "
        table.append(f"| {name} | {100 * a:.1f}% ({thr:.2f}) | {100 * s:.1f}% | {conf_cols} |")
    table.append(f"| agreement as confidence | | | {auroc_bad(agree, iou):.3f} | {spearman(agree, iou):.3f} | |")
    best_single = max(s for name, _, _, s in rows if name != "fused")
    settings = {
        "images": len(view), "segmenter": seg.describe(), "classifier": clf.meta.get("backbone", clf.name),
        "fit_size": args.fit_size, "explain_size": args.explain_size, "held_out": clf.meta.get("heldout_score"),
        "explainers": list(cfg.explainers), "prompts": cfg.prompts.__dict__, "score": cfg.score.__dict__,
        "class_competition": cfg.class_competition, "mask_weight": cfg.mask_weight,
        "draft_quality": cfg.draft_quality, "refine": cfg.refine, "objectness": cfg.objectness,
        "objectness_labels": cfg.objectness_labels, "proposal_grid": cfg.proposal_grid,
        "proposal_objectness": cfg.proposal_objectness if cfg.proposal_objectness is not None
        else f"auto (U²-Net-p installed: {objectness_available()})", "scales": list(cfg.scales), "flip": cfg.flip,
        "fit_seconds": round(fit_s, 1), "label_seconds": round(label_s, 1),
    }
    md = "\n".join([
        f"# Quality on {Path(source).name or source} ({len(view)} images, {seg.name})", "",
        *table, "",
        f"fused + {seg.name} minus best single explainer + {seg.name}: "
        f"{100 * (report.miou - best_single):+.1f} points; pixel accuracy {100 * report.pixel_accuracy:.1f}%",
        "", "Per-class IoU (fused + segmenter):", "",
        "| class | IoU |", "|---|---|",
        *[f"| {k} | {100 * v:.1f}% |" for k, v in report.per_class_iou.items() if v == v],
        "", "Settings:", "", "```json", json.dumps(settings, indent=1, default=str), "```", "",
    ])
    print()
    print(md)
    (out / "quality.md").write_text(md)
    if not args.no_plots:
        plots(report, conf, iou, out)
    return 0


def load_data(args):
    """(dataset to label, what it came from): ``--data`` imported as ``ewc-fo create`` would, or
    ``--dataset`` cloned, so the benchmark's fields never land on the user's own dataset."""
    import fiftyone as fo

    from ewc_fo.fo.io.importers import import_source
    from ewc_fo.runtime.errors import ConfigError

    if args.dataset:
        if args.dataset == args.name:
            raise ConfigError(f"--name {args.name!r} would replace --dataset itself: pick another --name")
        if not fo.dataset_exists(args.dataset):
            raise ConfigError(f"no FiftyOne dataset named {args.dataset!r}")
        if fo.dataset_exists(args.name):
            fo.delete_dataset(args.name)
        ds, source = fo.load_dataset(args.dataset).clone(args.name), args.dataset
    else:
        ds = import_source(args.source, args.name, args.data, label_field=args.label_field,
                           overwrite=True, images_dir=args.images)
        source = str(args.data)
    if args.gt_field not in ds.get_field_schema() or not ds.mask_targets.get(args.gt_field):
        kind = ds.info.get("ewc_import", {}).get("kind", "this dataset")
        raise ConfigError(
            f"no ground-truth masks: {kind} has no fo.Segmentation field {args.gt_field!r} with "
            "mask_targets (class folders and CSVs carry labels only); import masks into a field "
            "and pass --dataset NAME --gt-field FIELD"
        )
    return ds, source


def plots(report, conf, iou, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots")
        return
    names = list(report.per_class_iou)
    vals = [100 * (v if v == v else 0) for v in report.per_class_iou.values()]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(names, vals)
    ax.set_ylabel("IoU %")
    ax.set_title(f"per-class IoU, mIoU {100 * report.miou:.1f}%")
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right")
    fig.tight_layout()
    fig.savefig(out / "per_class_iou.png", dpi=100)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ok = np.isfinite(conf) & np.isfinite(iou)
    ax.scatter(conf[ok], iou[ok], s=10, alpha=0.6)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xlabel("ewc_confidence")
    ax.set_ylabel("per-sample IoU")
    fig.tight_layout()
    fig.savefig(out / "confidence_vs_iou.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
