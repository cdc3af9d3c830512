"""What a label run computes and writes for a batch of samples: files first, then fields.

Kept apart from the run orchestration (``label.py``) so any executor, in-process or a
distributed worker, produces exactly the same files and values for a batch, and one
writer puts them in the database (``flush``: one ``set_values`` per field, the field
that marks a sample finished last).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.engine.pipeline import ImageResult
from ewc_fo.fo.runs import record as runs
from ewc_fo.fo.runs.class_labels import class_confidence_labels
from ewc_fo.runtime.errors import EWCError, InternalError, NoLabelError
from ewc_fo.runtime.images import load_image

log = logging.getLogger(__name__)


def process_batch(ewc, clf, ids, paths, labels, out_dir, target_id, exp_keys, keep, loaded=None):
    """Yield (sample id, field values) for the samples of a batch that are in ``keep``.

    The whole batch is explained (so results do not depend on what was already done), but
    files and values are produced only for ``keep``; per-sample failures become error values.
    ``loaded``: the batch's images already decoded (``engine.loading.load_batches``), an
    array or the error reading it raised per sample; None reads ``paths`` here.
    """
    images, cls, ok = [], [], []
    for k, (sid, path, labs) in enumerate(zip(ids, paths, labels)):
        try:
            if not labs:
                raise NoLabelError("sample has no image-level label")
            for c in labs:
                clf.class_index(c)
            img = load_image(path) if loaded is None else loaded[k]
            if isinstance(img, EWCError):
                raise img
        except EWCError as e:
            if sid in keep:
                yield sid, {"error": str(e), "error_kind": e.kind}
            continue
        images.append(img)
        cls.append(labs)
        ok.append(sid)
    if not ok:
        return
    try:
        results = ewc.run(images, cls, errors="return")  # a sample's own error stays its own
    except Exception:
        # isolate the culprit: run one by one so one bad sample does not sink the batch
        results = []
        for img, cs in zip(images, cls):
            try:
                results.append(ewc.run([img], [cs])[0])
            except EWCError as e:
                results.append(e)
            except Exception as e:  # unexpected: the sample's or the environment's (FaultGuard)
                results.append(_internal(e, "internal error on a sample"))
    for sid, res in zip(ok, results):
        if sid not in keep:
            continue
        if not isinstance(res, Exception):
            try:
                yield sid, sample_values(sid, res, out_dir, target_id, exp_keys)
                continue
            except Exception as e:  # the disk full, the output folder gone: every sample alike
                res = _internal(e, "cannot write a sample's files")
        yield sid, {"error": str(res), "error_kind": getattr(res, "kind", "error")}


def _internal(e: Exception, what: str) -> InternalError:
    log.exception(what)
    return InternalError(f"internal error: {type(e).__name__}: {e}")


def sample_values(sid: str, res: ImageResult, out_dir: str, target_id: dict, exp_keys) -> dict:
    lut = np.zeros(len(res.classes) + 1, np.int64)
    for j, c in enumerate(res.classes):
        lut[j + 1] = target_id[c.class_name]
    label_map = lut[res.label_map]
    label_map = label_map.astype(np.uint8 if label_map.max(initial=0) < 256 else np.uint16)
    mask_path = os.path.join(out_dir, "masks", f"{sid}.png")
    _atomic_png(label_map, mask_path)
    H, W = label_map.shape
    dets = []
    for c in res.classes:
        for m, q in c.instances:
            ys, xs = np.nonzero(m)
            if not len(ys):
                continue
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            dets.append(fo.Detection(
                label=c.class_name, bounding_box=[x0 / W, y0 / H, (x1 - x0) / W, (y1 - y0) / H],
                mask=m[y0:y1, x0:x1].copy(), confidence=float(q),
            ))
    vals: dict = {
        "mask": fo.Segmentation(mask_path=mask_path),
        "instances": fo.Detections(detections=dets),
        "agreement": float(res.agreement),
        "mass_inside": float(min((c.mass_inside for c in res.classes), default=0.0)),
        "class_confidence": {c.class_name: float(c.confidence) for c in res.classes},
        "classes": class_confidence_labels({c.class_name: float(c.confidence) for c in res.classes}),
        "scores": _mean_scores(res),
    }
    maps8 = np.round(res.maps * 255).astype(np.uint8)
    fused8 = np.round(res.fused * 255).astype(np.uint8)
    for k, key in enumerate(exp_keys):
        p = os.path.join(out_dir, "heatmaps", f"{sid}_{runs.safe_key(key)}.png")
        _atomic_png(maps8[k].max(0), p)
        vals[f"heatmap_{runs.safe_key(key)}"] = fo.Heatmap(map_path=p, range=[0, 255])
    p = os.path.join(out_dir, "heatmaps", f"{sid}_fused.png")
    _atomic_png(fused8.max(0), p)
    vals["heatmap_fused"] = fo.Heatmap(map_path=p, range=[0, 255])
    maps_path = os.path.join(out_dir, "maps", f"{sid}.npz")
    extra = {}
    if res.classes and res.classes[0].explainer_masks is not None:
        # each explainer's own mask (ablations): (K, C, h, w) bits at the working size
        em = np.stack([np.stack([c.explainer_masks[n] for c in res.classes]) for n in res.explainer_names])
        extra = {"explainer_masks": np.packbits(em, axis=-1), "explainer_masks_width": em.shape[-1]}
    if res.proposals:  # SAM's proposals at the working size (ablations: each map through them)
        pm = np.stack([m for m, _ in res.proposals])
        extra.update(proposals=np.packbits(pm, axis=-1), proposals_width=pm.shape[-1],
                     proposal_qualities=np.array([q for _, q in res.proposals], np.float32))
    if res.objectness is not None:  # what labels from objectness drew the mask from (review, ablations)
        extra["objectness"] = np.round(np.clip(res.objectness, 0, 1) * 255).astype(np.uint8)
    _atomic_npz(maps_path, maps=maps8, fused=fused8, names=np.array(res.explainer_names),
                classes=np.array([c.class_name for c in res.classes]),
                probabilities=np.array([c.probability for c in res.classes], np.float32), **extra)
    vals["maps_path"] = maps_path
    vals["confidence"] = float(res.confidence)  # the completion marker, written last
    return vals


def _mean_scores(res: ImageResult) -> dict:
    out: dict = {}
    for c in res.classes:
        for name, d in c.scores.items():
            acc = out.setdefault(name, {k: 0.0 for k in d})
            for k, v in d.items():
                acc[k] += (0.0 if v != v else v) / len(res.classes)
    return out


def _atomic_png(arr: np.ndarray, path: str) -> None:
    with _atomic(path, ".png") as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _atomic_npz(path: str, **arrays) -> None:
    with _atomic(path, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


@contextlib.contextmanager
def _atomic(path: str, suffix: str):
    """Write to a temporary file beside ``path``, then rename it over ``path``: a reader never
    sees half a file. A failed write (disk full) removes its temporary file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=runs.TEMP_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


MARKERS = ("confidence", "error")


def flush(dataset: fo.Dataset, pending: Sequence[tuple[str, dict]], names: dict[str, str]) -> float:
    """Write a batch of sample values, one ``set_values`` per field, markers last."""
    if not pending:
        return 0.0
    t = time.perf_counter()
    keys = sorted({k for _, v in pending for k in v}, key=lambda k: (k in MARKERS, k))
    for k in keys:
        vals = {sid: v[k] for sid, v in pending if k in v}
        dataset.set_values(names[k], vals, key_field="id")
    return time.perf_counter() - t
