"""Method ablations on real data, fast: explain once, then fuse, prompt and segment many ways.

``quality.py`` measures the product end to end; this script is for deciding the method's
defaults. It fits the classifier from voc_dev's image-level labels and explains every image
with every explainer ONCE (cached under ``--cache``), then runs EWC's per-image step
(score -> fuse -> prompt -> segment -> merge, ``EWC.segment_explained``) on the cached maps
for each named variant, in parallel worker processes, and prints one row per variant:
fused + segmenter mIoU, the best single explainer through the same prompts and segmenter,
the gap, and how well the confidence finds masks with IoU < 0.5.

    python benchmarks/fusion_study.py --variants default,previous --singles
    python benchmarks/fusion_study.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"

#: the method's defaults before class competition and mask votes (v0.1)
PREVIOUS = {"class_competition": 0.0, "mask_weight": 0.0, "draft_quality": True}

#: variant name -> changes to EWCConfig (nested dataclasses by "score.x" / "prompts.x"),
#: to the segmenter ("seg.x") and which cached explainers to use ("use")
VARIANTS: dict[str, dict] = {
    "default": {},
    "previous": PREVIOUS,
    # one change on top of the previous defaults (the runs in docs/method.md)
    "prev+full_quality": {**PREVIOUS, "draft_quality": False},
    "prev+mask_vote_draft": {**PREVIOUS, "mask_weight": 0.5},
    "prev+mask_vote": {**PREVIOUS, "mask_weight": 0.5, "draft_quality": False},
    "prev+compete50": {**PREVIOUS, "class_competition": 0.5},
    "prev+compete100": {**PREVIOUS, "class_competition": 1.0},
    "prev+t02_full": {**PREVIOUS, "score.temperature": 0.02, "draft_quality": False},
    "prev+margin25": {**PREVIOUS, "seg.margin": 0.25},
    # around the current defaults
    "compete50": {"class_competition": 0.5},
    "mask_vote70": {"mask_weight": 0.7},
    "no_mask_vote": {"mask_weight": 0.0},
    "no_competition": {"class_competition": 0.0},
    "draft240": {"draft_quality": True, "seg.draft_side": 240, "seg.draft_iterations": 3},
    "fg50": {"prompts.fg_threshold": 0.5},
    "box20": {"prompts.box_threshold": 0.2},
    "no_dupes": {"use": ["xgradcam", "layercam", "input_x_gradient"]},
    # the refinement stage (ewc_fo/engine/refine.py)
    "crf": {"refine": "crf"},
    "pamr": {"refine": "pamr"},
    "crf_b75": {"refine": "crf", "refine_mask_weight": 0.75},
    "pamr_b75": {"refine": "pamr", "refine_mask_weight": 0.75},
    # the class-agnostic objectness cue (ewc_fo/models/objectness.py)
    "obj50": {"objectness": 0.5},
    "obj80": {"objectness": 0.8},
    "obj100": {"objectness": 1.0},
    "objlabels30": {"objectness_labels": 0.3},
    "objlabels50": {"objectness_labels": 0.5},
    # prompt thresholds relative to a high quantile of the map instead of its maximum
    "q99": {"prompts.top_quantile": 0.99},
    "q95": {"prompts.top_quantile": 0.95},
}
#: background thresholds swept for the "fused map alone" column (the IRN protocol, as quality.py)
MAP_THRESHOLDS = np.round(np.arange(0.05, 0.80, 0.05), 2)


def apply_variant(cfg, changes: dict):
    """EWCConfig with ``changes`` applied; keys ``seg.x`` are segmenter options (see ``_segmenter``)."""
    top, nested = {}, {}
    for k, v in changes.items():
        if k.startswith("seg.") or k == "use":
            continue
        if "." in k:
            part, key = k.split(".", 1)
            nested.setdefault(part, {})[key] = v
        else:
            top[k] = v
    for part, kv in nested.items():
        top[part] = replace(getattr(cfg, part), **kv)
    return replace(cfg, **top)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="VOC-style folder")
    p.add_argument("--cache", default=str(HERE.parent / "artifacts" / "fusion_study"),
                   help="where the classifier and the explained maps are cached")
    p.add_argument("--split", default=None, help="only ids in ImageSets/Segmentation/<split>.txt")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--every", type=int, default=1, help="take every N-th image (a spread-out subset)")
    p.add_argument("--variants", default="default", help="comma-separated names (see --list)")
    p.add_argument("--set", action="append", default=[],
                   help="extra variant NAME:key=value[;key=value] (e.g. 't05:score.temperature=0.05')")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument("--singles", action="store_true",
                   help="also segment each explainer's own map at full quality (K more masks per class)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backbone", default="efficientnet_lite0", help="what `ewc-fo fit --backbone` takes")
    p.add_argument("--finetune-blocks", type=int, default=0, help="as `ewc-fo fit --finetune-blocks`")
    p.add_argument("--fit-size", type=int, default=448)
    p.add_argument("--explain-size", type=int, default=448)
    p.add_argument("--scales", default="1", help="comma-separated explain scales")
    p.add_argument("--flip", action="store_true")
    p.add_argument("--explainers", default=None)
    p.add_argument("--segmenter", default="grabcut", choices=["grabcut", "sam2"])
    p.add_argument("--sam2-checkpoint", default=None)
    p.add_argument("--out", default=None, help="append the table to this Markdown file")
    return p.parse_args(argv)


def _parse_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def read_ids(data: Path, split: str | None, limit: int | None, every: int = 1) -> list[str]:
    sets = data / "ImageSets" / "Segmentation"
    if split:
        ids = (sets / f"{split}.txt").read_text().split()
    else:
        ids = sorted(p.stem for p in (data / "SegmentationClass").glob("*.png"))
    ids = sorted(ids)[::max(1, every)]
    return ids[:limit] if limit else ids


def class_names(data: Path) -> list[str]:
    raw = json.loads((data / "classes.json").read_text())
    return list(raw["classes"] if isinstance(raw, dict) else raw)


def image_labels(data: Path) -> dict[str, list[str]]:
    """Image-level labels: ``labels.json`` where there is one, else the classes in each mask."""
    if (data / "labels.json").is_file():
        return json.loads((data / "labels.json").read_text())
    from PIL import Image

    names = class_names(data)
    out = {}
    for p in sorted((data / "SegmentationClass").glob("*.png")):
        values = np.unique(np.asarray(Image.open(p)))
        out[p.stem] = [names[v] for v in values if 0 < v < len(names)]
    return out


def classifier_path(args) -> Path:
    """One cached classifier per backbone, fine-tuning and fit size."""
    name = args.backbone.replace(":", "-")
    if args.finetune_blocks:
        name += f"_ft{args.finetune_blocks}"
    if args.fit_size != 448:
        name += f"_fit{args.fit_size}"
    return Path(args.cache) / f"{name}.safetensors"


def build_cache(args, data: Path, ids: list[str]) -> Path:
    """Fit (image-level labels of every image in the folder) and explain ``ids``; idempotent."""

    from ewc_fo.engine.explain import explain
    from ewc_fo.engine.maps import downscale
    from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS, EWCConfig
    from ewc_fo.models.checkpoint import save_checkpoint
    from ewc_fo.models.fitting import fit_classifier
    from ewc_fo.models.registry import load_classifier
    from ewc_fo.runtime.images import load_image

    names = tuple(args.explainers.split(",")) if args.explainers else DEFAULT_EXPLAINERS
    scales = tuple(float(s) for s in args.scales.split(","))
    key = f"{classifier_path(args).stem}_s{args.explain_size}_{'-'.join(map(str, scales))}{'_flip' if args.flip else ''}_{'-'.join(names)}"
    cache = Path(args.cache) / key
    cache.mkdir(parents=True, exist_ok=True)
    ckpt = classifier_path(args)
    labels = image_labels(data)
    if not ckpt.exists():
        all_ids = sorted(labels)
        clf = fit_classifier([str(data / "JPEGImages" / f"{i}.jpg") for i in all_ids],
                             [labels[i] for i in all_ids], fit_size=args.fit_size,
                             input_size=args.explain_size, backbone=args.backbone,
                             finetune_blocks=args.finetune_blocks)
        save_checkpoint(clf, ckpt)
        print(f"fitted: held-out {clf.meta.get('metric')} {clf.meta.get('heldout_score')}", flush=True)
    todo = [i for i in ids if not (cache / f"{i}.npz").exists()]
    if todo:
        clf = load_classifier(str(ckpt), input_size=args.explain_size)
        cfg = EWCConfig()
        t0 = time.perf_counter()
        for b in range(0, len(todo), 4):
            batch = todo[b:b + 4]
            work = [downscale(load_image(data / "JPEGImages" / f"{i}.jpg"), cfg.max_side) for i in batch]
            outs = explain(clf, work, [labels[i] for i in batch], names, size=args.explain_size,
                           scales=scales, flip=args.flip)
            for i, o in zip(batch, outs):
                np.savez_compressed(cache / f"{i}.npz", maps=(o.maps * 65535).astype(np.uint16),
                                    scores=o.scores, classes=np.array(o.classes), names=np.array(o.names))
            print(f"explained {b + len(batch)}/{len(todo)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return cache


# ---------------------------------------------------------------- workers

_W: dict = {}


def _init(ckpt: str, seg_name: str, sam2_ckpt: str | None, explain_size: int, worker: bool = True) -> None:
    import cv2
    import torch

    from ewc_fo.models.registry import load_classifier
    from ewc_fo.segmenters import create_segmenter

    if worker:  # one thread per worker process; in-process runs leave the caller's settings alone
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    _W["clf"] = load_classifier(ckpt, input_size=explain_size)
    _W["seg"] = create_segmenter(seg_name, checkpoint=sam2_ckpt)
    _W.update(seg_name=seg_name, sam2_ckpt=sam2_ckpt, worker=worker)


def _segmenter(kw: dict):
    from ewc_fo.segmenters import create_segmenter

    key = json.dumps(kw, sort_keys=True)
    if key not in _W:
        _W[key] = _Memo(_W["seg"] if not kw else
                        create_segmenter(_W["seg_name"], checkpoint=_W["sam2_ckpt"], **kw))
    return _W[key]


class _Memo:
    """A segmenter that remembers its masks for the current image: variants that differ only
    after segmentation (the refinement stage) send the same prompts, and are not re-cut.
    Deterministic segmenters only (GrabCut has a fixed seed; SAM2 is deterministic)."""

    def __init__(self, seg):
        self.seg, self.memo, self.image_key = seg, {}, None

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def set_image(self, image):
        import hashlib

        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key != self.image_key:
            self.memo, self.image_key = {}, key
            self.seg.set_image(image)

    def segment_many(self, prompts, draft=False):
        import hashlib
        import pickle

        keys = [hashlib.sha1(pickle.dumps((p, draft))).hexdigest() for p in prompts]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            for i, r in zip(todo, self.seg.segment_many([prompts[i] for i in todo], draft=draft)):
                self.memo[keys[i]] = r
        return [self.memo[k] for k in keys]

    def segment(self, prompt):
        return self.segment_many([prompt])[0]


def _job(task):
    """One image under every variant -> per variant: label maps (fused, singles), confidence."""
    from PIL import Image

    from ewc_fo.engine.explain import ExplainOutput
    from ewc_fo.engine.maps import downscale, merge
    from ewc_fo.engine.pipeline import EWC
    from ewc_fo.engine.refine import refine_labels
    from ewc_fo.metrics import ConfusionMatrix
    from ewc_fo.runtime.images import load_image

    data, cache, image_id, configs, singles, gt_ids = task
    z = np.load(Path(cache) / f"{image_id}.npz")
    out = ExplainOutput([str(n) for n in z["names"]], [int(c) for c in z["classes"]],
                        z["maps"].astype(np.float32) / 65535, z["scores"])
    image = load_image(Path(data) / "JPEGImages" / f"{image_id}.jpg")
    gt = np.asarray(Image.open(Path(data) / "SegmentationClass" / f"{image_id}.png"))
    res = {}
    objectness = None
    if any(cfg.objectness > 0 or cfg.objectness_labels > 0 for cfg, _ in configs.values()):  # once per image, for every variant
        from ewc_fo.models.objectness import U2NetObjectness

        if "obj" not in _W:
            _W["obj"] = U2NetObjectness(threads=1 if _W.get("worker") else None)
        objectness = _W["obj"](downscale(image, next(iter(configs.values()))[0].max_side))
    for vname, (cfg, seg_kw) in configs.items():
        cfg = replace(cfg, keep_explainer_masks=singles)
        ewc = EWC(_W["clf"], _segmenter(seg_kw), cfg)
        o = out
        if cfg.explainers != tuple(out.names):  # a subset of the cached explainers
            keep = [out.names.index(n) for n in cfg.explainers]
            o = ExplainOutput(list(cfg.explainers), out.classes, out.maps[keep], out.scores)
        work = downscale(image, cfg.max_side)
        t0 = time.perf_counter()
        r = ewc.segment_explained(image, work, o, objectness=objectness if cfg.objectness > 0 or cfg.objectness_labels > 0 else None)
        dt = time.perf_counter() - t0
        ids = np.array([0] + [gt_ids[_W["clf"].class_names[c]] for c in out.classes])
        single = {}
        if singles:
            H, W = image.shape[:2]
            for k, n in enumerate(o.names):
                em = [cr.explainer_masks[n] for cr in r.classes]
                if cfg.refine != "none":  # the same refinement stage as the fused masks
                    lm = refine_labels(work, r.maps[k], em, out.scores, cfg.refine,
                                       cfg.refine_mask_weight) if em else \
                        np.zeros(work.shape[:2], np.uint8)
                else:
                    lm = merge(r.maps[k], em, em[0].shape if em else (H, W), strengths=out.scores)
                single[n] = _nearest(ids[lm], gt.shape)
        alone = {}
        for t in MAP_THRESHOLDS:  # the fused map alone, no segmenter
            f = np.concatenate([np.full((1, *r.fused.shape[1:]), t, np.float32), r.fused])
            lab = _nearest(ids[f.argmax(0)], gt.shape)
            alone[float(t)] = ConfusionMatrix(len(gt_ids)).update(lab, gt).matrix
        res[vname] = {"pred": ids[r.label_map], "single": single, "confidence": r.confidence,
                      "alone": alone,
                      "agreement": r.agreement, "seconds": dt}
    return image_id, gt, res


def _nearest(a: np.ndarray, shape) -> np.ndarray:
    import cv2

    if a.shape == tuple(shape):
        return a
    return cv2.resize(a.astype(np.uint16), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def main(argv=None) -> int:
    args = parse_args(argv)
    variants = dict(VARIANTS)
    for spec in args.set:
        name, _, body = spec.partition(":")
        variants[name] = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in body.split(";") if kv)}
    if args.list:
        for k, v in variants.items():
            print(f"{k}: {v}")
        return 0
    from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS, EWCConfig
    from ewc_fo.metrics import ConfusionMatrix, auroc_bad, sample_iou, spearman

    data = Path(args.data)
    ids = read_ids(data, args.split, args.limit, args.every)
    cache = build_cache(args, data, ids)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in variants]
    if unknown:
        print(f"unknown variants {unknown}; see --list", file=sys.stderr)
        return 2
    base = EWCConfig(explainers=tuple(args.explainers.split(",")) if args.explainers else DEFAULT_EXPLAINERS)
    configs = {n: (apply_variant(replace(base, explainers=tuple(variants[n].get("use", base.explainers))),
                                 variants[n]),
                   {k[4:]: v for k, v in variants[n].items() if k.startswith("seg.")}) for n in names}
    C = len(class_names(data))  # dataset ids, background included
    fused = {n: ConfusionMatrix(C) for n in names}
    alone = {n: {float(t): ConfusionMatrix(C) for t in MAP_THRESHOLDS} for n in names}
    single: dict[str, dict[str, ConfusionMatrix]] = {n: {} for n in names}
    per = {n: {"conf": [], "agree": [], "iou": [], "sec": []} for n in names}
    gt_ids = {n: i for i, n in enumerate(class_names(data))}
    tasks = [(str(data), str(cache), i, configs, args.singles, gt_ids) for i in ids]
    t0 = time.perf_counter()
    init = (str(classifier_path(args)), args.segmenter, args.sam2_checkpoint,
            args.explain_size)
    if args.workers > 1:
        pool = get_context("spawn").Pool(args.workers, _init, init)
        results = pool.imap_unordered(_job, tasks, chunksize=2)
    else:  # in this process (also what lets the test suite import this file as a module)
        pool = None
        _init(*init, worker=False)
        results = map(_job, tasks)
    try:
        for done, (_, gt, res) in enumerate(results, 1):
            for n, r in res.items():
                fused[n].update(r["pred"], gt)
                for t, mat in r["alone"].items():
                    alone[n][t].matrix += mat
                for e, lab in r["single"].items():
                    single[n].setdefault(e, ConfusionMatrix(C)).update(lab, gt)
                per[n]["conf"].append(r["confidence"])
                per[n]["agree"].append(r["agreement"])
                per[n]["iou"].append(sample_iou(r["pred"], gt, C))
                per[n]["sec"].append(r["seconds"])
            if done % 50 == 0:
                print(f"  {done}/{len(ids)} images ({time.perf_counter() - t0:.0f}s)", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    head = (f"| variant | fused + {args.segmenter} | fused map alone | best single | gap | conf. AUROC | conf. Spearman "
            "| agr. AUROC | s/img | singles |")
    lines = [f"{len(ids)} images ({args.split or 'all'}), cache {cache.name}", "", head,
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        m = fused[n].miou()
        s = {e: cm.miou() for e, cm in single[n].items()}
        best = max(s.values()) if s else float("nan")
        conf, agr, iou = (np.array(per[n][k]) for k in ("conf", "agree", "iou"))
        singles_txt = ", ".join(f"{e} {100 * v:.1f}" for e, v in s.items())
        thr = max(alone[n], key=lambda t: alone[n][t].miou())
        lines.append(f"| {n} | {100 * m:.1f}% | {100 * alone[n][thr].miou():.1f}% ({thr:.2f}) | {100 * best:.1f}% | {100 * (m - best):+.1f} | "
                     f"{auroc_bad(conf, iou):.3f} | {spearman(conf, iou):.3f} | {auroc_bad(agr, iou):.3f} | "
                     f"{np.mean(per[n]['sec']):.2f} | {singles_txt} |")
    text = "\n".join(lines)
    print(text)
    for n in names:
        print(f"{n} changes: {variants[n]}")
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n\n" + "\n".join(f"- {n}: `{variants[n]}`" for n in names) + "\n\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
