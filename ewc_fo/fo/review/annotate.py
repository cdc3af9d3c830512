"""Send masks that need fixing to an annotation tool and load the fixes back.

Everything goes through FiftyOne's own annotation API (``view.annotate`` /
``load_annotations``), so any backend FiftyOne supports can be used; Label Studio is the one
tested (tests/fo/test_annotate.py runs a real server). The flow, for run prefix ``P``:

1. ``send_for_correction``: the starting point (``P_mask_corrected`` where a person already
   fixed the mask, else the pseudo-mask ``P_mask``) becomes one region per class in the
   working field ``P_mask_edit`` (``fo.Detections``, FiftyOne's
   ``segmentations_to_detections``), which is sent with ``label_type="instances"`` and the
   run's classes. Why not ``label_type="segmentation"``: FiftyOne 1.22's Label Studio backend
   cannot upload a semantic ``fo.Segmentation`` as pre-annotation (it reads ``label.label``,
   which a label map has not) and on import keeps only the first brush region of a
   segmentation field, so a multi-class mask would lose classes. One brush region per class
   is also what a person edits in Label Studio.
2. ``load_corrections``: ``load_annotations`` merges the edited regions back into
   ``P_mask_edit``; each sample a person submitted gets its regions rendered into a label map
   (FiftyOne's ``Detections.to_segmentation`` with the run's mask targets), written as
   ``<run output dir>/masks_corrected/<sample id>.png`` and stored in ``P_mask_corrected``
   (``fo.Segmentation``). ``export`` prefers that field. The sample is tagged
   ``ewc:reviewed`` and loses ``ewc:reject`` (its mask is fixed now), unless ``retag=False``.

``P_mask`` and the user's fields are never modified.
"""

from __future__ import annotations

import logging
import os

import fiftyone as fo
import fiftyone.utils.labels as foul
import numpy as np
from fiftyone import ViewField as F
from PIL import Image

from ewc_fo.fo.io.export import paste_instance
from ewc_fo.fo.review.views import REJECT_TAG, REVIEWED_TAG
from ewc_fo.fo.runs.record import check_prefix, get_run
from ewc_fo.runtime.errors import ConfigError

log = logging.getLogger(__name__)

VOID = 255


def corrected_field(prefix: str = "ewc") -> str:
    """Name of the field holding a person's corrected mask (``fo.Segmentation``)."""
    return f"{prefix}_mask_corrected"


def edit_field(prefix: str = "ewc") -> str:
    """Name of the working field sent to the annotation tool (``fo.Detections``, one per class)."""
    return f"{prefix}_mask_edit"


def correction_candidates(
    samples: fo.Dataset | fo.DatasetView,
    prefix: str = "ewc",
    *,
    max_confidence: float | None = None,
    rejected: bool = True,
    include_accepted: bool = False,
) -> fo.DatasetView:
    """Samples that need a person: tagged ``ewc:reject`` and/or with ``P_confidence`` below
    ``max_confidence``, least confident first. A mask a reviewer accepted (``ewc:reviewed``)
    is left out unless ``include_accepted``: low confidence does not overrule a person."""
    check_prefix(prefix)
    conf = f"{prefix}_confidence"
    if conf not in samples.get_field_schema():
        raise ConfigError(f"no ewc-fo run with prefix {prefix!r} on this dataset")
    if not rejected and max_confidence is None:
        raise ConfigError("nothing selects samples: keep rejected ones or give max_confidence")
    cond = None
    if rejected:
        cond = F("tags").contains(REJECT_TAG)
    if max_confidence is not None:
        low = F(conf).exists() & (F(conf) < float(max_confidence))
        if not include_accepted:
            low = low & ~F("tags").contains(REVIEWED_TAG)
        cond = low if cond is None else (cond | low)
    return samples.match(cond).exists(f"{prefix}_mask").sort_by(conf)


def without_accepted(samples: fo.Dataset | fo.DatasetView) -> fo.DatasetView:
    """``samples`` less those a reviewer accepted and nobody rejected since."""
    return samples.match(~F("tags").contains(REVIEWED_TAG) | F("tags").contains(REJECT_TAG))


def selection_counts(samples: fo.Dataset | fo.DatasetView) -> dict[str, int]:
    """How many of ``samples`` are rejected, accepted (and not rejected), or neither: what a
    send summary reports."""
    n = len(samples)
    rejected = len(samples.match_tags(REJECT_TAG))
    accepted = len(samples.match_tags(REVIEWED_TAG).match_tags(REJECT_TAG, bool=False))
    return {"rejected": rejected, "accepted": accepted, "other": n - rejected - accepted}


def describe_selection(counts: dict[str, int]) -> str:
    """``3 rejected, 2 unreviewed, 0 accepted``: the line a person reads after sending."""
    return f"{counts['rejected']} rejected, {counts['other']} unreviewed, {counts['accepted']} accepted"


def send_for_correction(
    samples: fo.Dataset | fo.DatasetView,
    anno_key: str,
    prefix: str = "ewc",
    *,
    backend: str = "labelstudio",
    url: str | None = None,
    api_key: str | None = None,
    launch_editor: bool = False,
    **kwargs,
):
    """Upload ``samples``' masks of run ``prefix`` for correction under ``anno_key``.

    Returns FiftyOne's ``AnnotationResults`` (``results.launch_editor()`` opens the tool).
    ``url``/``api_key`` default to FiftyOne's annotation config (e.g.
    ``FIFTYONE_LABELSTUDIO_URL`` / ``FIFTYONE_LABELSTUDIO_API_KEY``); ``kwargs`` go to
    ``annotate`` (e.g. ``project_name``).
    """
    check_prefix(prefix)
    dataset = samples._dataset
    mask, edit = f"{prefix}_mask", edit_field(prefix)
    schema = dataset.get_field_schema()
    if mask not in schema:
        raise ConfigError(f"no {mask} field: nothing from a run with prefix {prefix!r} to correct")
    if anno_key in dataset.list_annotation_runs():
        raise ConfigError(f"annotation run {anno_key!r} exists; load or delete it, or pick another key")
    if edit in schema and not _is_detections(schema[edit]):
        raise ConfigError(f"field {edit!r} exists and is not fo.Detections; it is the working field")
    targets = class_targets(dataset, prefix)
    view = samples.exists(mask).view()
    if not len(view):
        raise ConfigError("no sample with a mask to correct in this view")
    ids = set(view.values("id"))
    for key in dataset.list_annotation_runs():  # P_mask_edit holds one round per sample
        if edit in dataset.get_annotation_info(key).config.label_schema:
            busy = ids & _sent_ids(dataset.load_annotation_results(key), edit)
            if busy:
                raise ConfigError(f"{len(busy)} sample(s) are still out in annotation run {key!r}; load it first")

    write_edit_regions(view, prefix)

    creds = _credentials(backend, url, api_key)
    try:
        return view.annotate(
            anno_key,
            backend=backend,
            label_field=edit,
            label_type="instances",
            classes=list(targets.values()),
            launch_editor=launch_editor,
            **creds,
            **kwargs,
        )
    except Exception as e:  # a half-registered run would block the key: remove it
        if anno_key in dataset.list_annotation_runs():
            dataset.delete_annotation_run(anno_key)
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"could not send to {backend} ({url or 'configured URL'}): {_one_line(e)}") from e


def write_edit_regions(samples: fo.Dataset | fo.DatasetView, prefix: str = "ewc") -> None:
    """Fill ``P_mask_edit`` with the starting point, one region per class: a person's earlier
    fix (``P_mask_corrected``) where there is one, else the pseudo-mask ``P_mask``."""
    mask, corrected, edit = f"{prefix}_mask", corrected_field(prefix), edit_field(prefix)
    targets = class_targets(samples._dataset, prefix)
    view = samples.exists(mask).view()
    has_fix = view.exists(corrected) if corrected in view.get_field_schema() else view.limit(0)
    fixed_ids = has_fix.values("id")
    no_fix = view.exclude(fixed_ids) if fixed_ids else view
    for src, part in ((mask, no_fix), (corrected, has_fix)):
        if len(part):
            foul.segmentations_to_detections(part, src, edit, mask_targets=targets, mask_types="stuff")
    _nudge_boxes(view, edit)


def load_corrections(
    samples: fo.Dataset | fo.DatasetView,
    anno_key: str,
    prefix: str = "ewc",
    *,
    url: str | None = None,
    api_key: str | None = None,
    retag: bool = True,
    cleanup: bool = False,
) -> list[str]:
    """Load annotation run ``anno_key`` back; returns the ids of the samples whose mask a
    person submitted (they now have ``P_mask_corrected``).

    ``cleanup`` deletes the project on the annotation server afterwards (the FiftyOne run
    record goes too, so the key can be reused).
    """
    check_prefix(prefix)
    dataset = samples._dataset
    if anno_key not in dataset.list_annotation_runs():
        raise ConfigError(f"no annotation run {anno_key!r} (runs: {', '.join(dataset.list_annotation_runs()) or 'none'})")
    edit, corrected = edit_field(prefix), corrected_field(prefix)
    info = dataset.get_annotation_info(anno_key)
    if edit not in info.config.label_schema:
        raise ConfigError(f"annotation run {anno_key!r} did not send {edit!r} (prefix {prefix!r}?)")
    creds = _credentials(info.config.method, url, api_key)
    try:
        results = dataset.load_annotation_results(anno_key, **creds)
        submitted = _submitted_sample_ids(results)
        dataset.load_annotations(anno_key, unexpected="ignore", progress=False, **creds)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"could not load annotation run {anno_key!r}: {_one_line(e)}") from e

    # the run's own sample ids, not its stored view: re-evaluated now, a view such as
    # "tagged ewc:reject" may no longer match the samples that were sent
    view = dataset.select(sorted(submitted if submitted is not None else _sent_ids(results, edit)))
    view.compute_metadata()
    targets = class_targets(dataset, prefix)
    out_dir = os.path.join(_output_dir(dataset, prefix), "masks_corrected")
    os.makedirs(out_dir, exist_ok=True)
    if corrected not in dataset.get_field_schema():
        dataset.add_sample_field(corrected, fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation)
    name_to_id = {v: k for k, v in targets.items()}
    dtype = np.uint8 if max(targets) < 256 else np.uint16  # as the run writes P_mask
    values, done = {}, []
    for sample in view.select_fields(edit).iter_samples():
        w, h = sample.metadata.width, sample.metadata.height
        label_map = np.zeros((h, w), dtype)
        # paste_instance rounds the box corner; Detections.to_segmentation truncates it and
        # can shift a region by a pixel
        for det in (sample[edit] or fo.Detections()).detections:
            full = paste_instance(det, w, h) if det.label in name_to_id else None
            if full is not None:
                label_map[full] = name_to_id[det.label]
        path = os.path.join(out_dir, f"{sample.id}.png")
        Image.fromarray(label_map).save(path)
        values[sample.id] = fo.Segmentation(mask_path=path)
        done.append(sample.id)
    if values:
        dataset.set_values(corrected, values, key_field="id")
    mt = dict(dataset.mask_targets)
    if corrected not in mt:
        mt[corrected] = dict(dataset.mask_targets.get(f"{prefix}_mask") or {})
        dataset.mask_targets = mt
        dataset.save()
    if retag and done:
        fixed = dataset.select(done)
        fixed.untag_samples(REJECT_TAG)
        fixed.tag_samples(REVIEWED_TAG)
    if cleanup:
        results.cleanup()
        dataset.delete_annotation_run(anno_key)
    return done


def class_targets(dataset: fo.Dataset, prefix: str = "ewc") -> dict[int, str]:
    """The run's classes as ``{id: name}`` without background (0) and void (255)."""
    mt = dataset.mask_targets.get(f"{prefix}_mask") or dataset.default_mask_targets or {}
    out = {}
    for k, v in mt.items():
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise ConfigError(f"mask targets of {prefix}_mask use RGB keys; only label maps are supported") from None
        if k not in (0, VOID):
            out[k] = str(v)
    if not out:
        raise ConfigError(f"no classes in dataset.mask_targets[{prefix + '_mask'!r}]: run ewc-fo label first")
    return out


def _credentials(backend: str, url: str | None, api_key: str | None) -> dict:
    """Explicit values, else FiftyOne's annotation config; a missing Label Studio key is an
    error here rather than FiftyOne's interactive prompt (which would hang an App operator)."""
    creds = {k: v for k, v in (("url", url), ("api_key", api_key)) if v is not None}
    if backend == "labelstudio" and not api_key:
        if not (fo.annotation_config.backends.get(backend) or {}).get("api_key"):
            raise ConfigError("no Label Studio API key: pass api_key (--api-key) or set FIFTYONE_LABELSTUDIO_API_KEY")
    return creds


def _nudge_boxes(view: fo.DatasetView, field: str, eps: float = 1e-6) -> None:
    """Move each box corner by a millionth of the image inwards of its first pixel.

    FiftyOne renders instance masks for upload (``Detection.to_segmentation``) by truncating
    ``x * width``; ``60 / 107 * 107`` is 59.999..., which moved a region up a row in the
    Label Studio pre-annotation. A corner at ``(x0 + 1e-6 * width) / width`` truncates and
    rounds to ``x0`` alike, for images up to 100 000 px.
    """
    path = f"{field}.detections.bounding_box"
    boxes = view.values(path)
    view.set_values(path, [[[b[0] + eps, b[1] + eps, b[2], b[3]] for b in bs or []] for bs in boxes])


def _sent_ids(results, field: str) -> set[str]:
    """Ids of the samples an annotation run sent (FiftyOne records their label ids per field)."""
    return set(results.id_map.get(field, {}))


def _submitted_sample_ids(results) -> set[str] | None:
    """Samples whose task a person submitted (Label Studio: ``is_labeled``); None = unknown,
    i.e. every sample of the run counts (other backends)."""
    if getattr(results.config, "method", None) != "labelstudio":
        return None
    import label_studio_sdk

    client = label_studio_sdk.Client(results.config.url, results.config.api_key)
    project = client.get_project(results.project_id)
    task_ids = set(project.get_labeled_tasks(only_ids=True))
    return {sid for tid, sid in results.uploaded_tasks.items() if int(tid) in task_ids}


def _output_dir(dataset: fo.Dataset, prefix: str) -> str:
    rec = get_run(dataset, prefix) or {}
    if rec.get("output_dir"):
        return rec["output_dir"]
    from ewc_fo.fo.runs.plan import default_output_dir

    return default_output_dir(dataset, prefix)


def _is_detections(f) -> bool:
    return isinstance(f, fo.EmbeddedDocumentField) and issubclass(f.document_type, fo.Detections)


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[-1] if s else ''}"

