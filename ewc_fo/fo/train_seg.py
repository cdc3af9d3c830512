"""Train a segmentation model on the masks of a run that can be trusted (issue 21).

Reads a finished run's masks (``P_mask``, or a person's ``P_mask_corrected``), weighs each
sample by how far it can be trusted, and hands paths, label maps and weights to the
host-agnostic :func:`ewc_fo.models.seg_train.train_segnet`. Never writes to the dataset.

Trust (docs/distill.md): a corrected mask, or one a reviewer accepted (``ewc:reviewed``), has
weight 1 on every pixel; a rejected one (``ewc:reject``) is left out; any other mask weighs
each class's pixels by that class's confidence (``P_class_confidence``) and its background by
the image's confidence (``P_confidence``); a class below ``min_confidence`` is left out of that
image (its pixels weigh 0) and an image with no class left is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG
from ewc_fo.fo.runs import record as runs
from ewc_fo.runtime.errors import ConfigError

#: fewest images with trusted pixels of a class for it to be learnt
MIN_SAMPLES_PER_CLASS = 3


@dataclass
class TrainingSet:
    """What a run offers for training: one row per kept sample, and why others were not kept."""

    class_names: list[str]
    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    mask_paths: list[str] = field(default_factory=list)
    luts: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, int] = field(default_factory=dict)

    def mask(self, i: int) -> np.ndarray:
        """Label map of row ``i`` in model labels (0 = background, k = ``class_names[k - 1]``)."""
        return self.luts[i][np.asarray(Image.open(self.mask_paths[i]))]


def _lut(targets: dict, names: list[str]) -> np.ndarray:
    """A run's mask ids -> model labels; ids of no class of the model map to background."""
    index = {c: k + 1 for k, c in enumerate(names)}
    lut = np.zeros(256 if max(map(int, targets), default=0) < 256 else 65536, np.int64)
    for k, c in targets.items():
        lut[int(k)] = index.get(c, 0)
    return lut


def check_run(dataset: fo.Dataset, run: str) -> dict:
    """The record of run ``run``, which must exist and be finished (else a one-line error)."""
    runs.check_prefix(run)
    rec = runs.get_run(dataset, run)
    if rec is None:
        have = [r for r in dataset.list_runs() if runs.get_run(dataset, r)]
        raise ConfigError(f"no ewc-fo run {run!r} on dataset {dataset.name!r}"
                          f" (runs: {', '.join(have) or 'none'})")
    if rec.get("status") != "complete":
        raise ConfigError(f"run {run!r} is unfinished (status {rec.get('status')!r}): finish it first "
                          "(`ewc-fo label` with the same prefix resumes it)")
    return rec


def read_training_set(samples: fo.Dataset | fo.DatasetView, run: str = "ewc", *,
                      min_confidence: float = 0.0, trusted_weight: float = 1.0,
                      min_samples_per_class: int = MIN_SAMPLES_PER_CLASS) -> TrainingSet:
    """The samples of run ``run`` to learn from, their weights, and the checks (one-line errors)."""
    if not 0 <= min_confidence <= 1:
        raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    rec = check_run(dataset, run)
    names_f = rec["fields"]
    targets = {int(k): v for k, v in dataset.mask_targets.get(names_f["mask"], {}).items()}
    classes = [targets[k] for k in sorted(targets)]
    if not classes:
        raise ConfigError(f"run {run!r} has no classes in mask_targets[{names_f['mask']!r}]")
    fix = f"{run}_mask_corrected"
    schema = samples.get_field_schema()
    has_fix = fix in schema
    fix_targets = {int(k): v for k, v in dataset.mask_targets.get(fix, targets).items()}
    view = samples.select_fields([names_f["mask"], names_f["confidence"], names_f["class_confidence"]]
                                 + ([fix] if has_fix else []))
    ids = view.values("id")
    cols = {
        "path": view.values("filepath"),
        "tags": view.values("tags"),
        "mask": view.values(f"{names_f['mask']}.mask_path"),
        "conf": view.values(names_f["confidence"]),
        "cls": view.values(names_f["class_confidence"]),
        "fix": view.values(f"{fix}.mask_path") if has_fix else [None] * len(ids),
    }
    ts = TrainingSet(class_names=classes)
    lut, fix_lut = _lut(targets, classes), _lut(fix_targets, classes)
    counts = dict.fromkeys(("corrected", "accepted", "by_confidence", "rejected", "unlabeled",
                            "below_min_confidence"), 0)
    per_class = dict.fromkeys(classes, 0)
    for k, sid in enumerate(ids):
        tags = cols["tags"][k] or []
        w = np.zeros(len(classes) + 1, np.float32)
        if REJECT_TAG in tags and not cols["fix"][k]:
            counts["rejected"] += 1
            continue
        if cols["fix"][k]:
            kind, mpath, table, w[:] = "corrected", cols["fix"][k], fix_lut, trusted_weight
            present = set((cols["cls"][k] or {}).keys())
        elif cols["conf"][k] is None or not cols["mask"][k]:
            counts["unlabeled"] += 1
            continue
        elif REVIEWED_TAG in tags:
            kind, mpath, table, w[:] = "accepted", cols["mask"][k], lut, trusted_weight
            present = set((cols["cls"][k] or {}).keys())
        else:
            kind, mpath, table = "by_confidence", cols["mask"][k], lut
            cc = cols["cls"][k] or {}
            present = {c for c, v in cc.items() if v is not None and v >= min_confidence and c in per_class}
            if not present:
                counts["below_min_confidence"] += 1
                continue
            w[0] = float(cols["conf"][k])
            for j, c in enumerate(classes):
                if c in present:
                    w[j + 1] = float(cc[c])
        counts[kind] += 1
        for c in present & per_class.keys():
            per_class[c] += 1
        ts.ids.append(sid)
        ts.paths.append(cols["path"][k])
        ts.mask_paths.append(mpath)
        ts.luts.append(table)
        ts.weights.append(w)
    ts.counts, ts.per_class = counts, per_class
    if not ts.ids:
        raise ConfigError(f"run {run!r} has no trusted sample to learn from ({_said(counts)})")
    few = [f"{c} ({n})" for c, n in per_class.items() if n < min_samples_per_class]
    if few:
        raise ConfigError(f"too few trusted samples (fewer than {min_samples_per_class}) for class"
                          f"{'es' if len(few) > 1 else ''} {', '.join(few)}: accept or correct more of "
                          "their masks, lower --min-confidence, or train on a view without them")
    return ts


def _said(counts: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)


def train_segmenter(samples: fo.Dataset | fo.DatasetView, run: str = "ewc",
                    out: str | os.PathLike | None = None, *, min_confidence: float = 0.0,
                    trusted_weight: float = 1.0, min_samples_per_class: int = MIN_SAMPLES_PER_CLASS,
                    config=None, threads: int | None = None, device: str = "cpu",
                    pretrained: bool = True, verbose: bool = True,
                    progress: Callable[[int, int], None] | None = None):
    """Train a segmentation model on run ``run``'s trusted masks; save it to ``out`` if given.

    Returns ``(model, metadata)``; the metadata (also in ``<out>.json``) names the classes,
    the run, the samples learnt from and how they were weighed. Bad input raises
    :class:`ConfigError` before any image is read. ``progress(done, total)`` is called as
    training goes, counted in image passes (the plugin's progress bar uses it).
    """
    from ewc_fo.models.seg_checkpoint import save_seg_model
    from ewc_fo.models.seg_train import SegTrainConfig, train_segnet
    from ewc_fo.models.segnet import SEG_BACKBONE, TUNED_PREFIXES
    from ewc_fo.runtime.device import resolve_device

    ts = read_training_set(samples, run, min_confidence=min_confidence, trusted_weight=trusted_weight,
                           min_samples_per_class=min_samples_per_class)
    cfg = config or SegTrainConfig()
    dev = resolve_device(device)
    res = train_segnet(ts.paths, ts.mask, ts.weights, len(ts.class_names), cfg, threads=threads,
                       device=dev, pretrained=pretrained, verbose=verbose, progress=progress)
    dataset = samples._root_dataset if isinstance(samples, fo.DatasetView) else samples
    rec = runs.get_run(dataset, run)
    from dataclasses import asdict

    from ewc_fo.models.classifier import IMAGENET_MEAN, IMAGENET_STD

    meta = {
        "backbone": SEG_BACKBONE, "class_names": ts.class_names, "input_size": cfg.input_size,
        "width": cfg.width, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "trainable_prefixes": list(TUNED_PREFIXES) if cfg.tune_epochs else ["decoder"],
        "run": {"dataset": dataset.name, "prefix": run, "label_field": rec.get("label_field"),
                "output_dir": rec.get("output_dir")},
        "sample_ids": ts.ids, "n_samples": len(ts.ids), "samples": ts.counts,
        "images_per_class": ts.per_class, "seed": cfg.seed, "train": asdict(cfg),
        "weighting": {"min_confidence": min_confidence, "trusted_weight": trusted_weight,
                      "rule": "corrected/accepted: trusted_weight; rejected: left out; else "
                              "class pixels x class confidence, background x image confidence"},
        "losses": [round(v, 5) for v in res.losses], "train_seconds": round(res.seconds, 1),
        "threads": res.threads, "pretrained": bool(pretrained),
    }
    if out is not None:
        save_seg_model(res.model, meta, out)
    return res.model, meta
