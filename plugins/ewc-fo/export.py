"""Export a run's masks as COCO (RLE instances) or a VOC segmentation folder.

Paths are confined: the App lets anyone who reaches it type a path, and "overwrite" clears
the folder, so every export goes under one root, the plugin setting ``EWC_FO_EXPORT_ROOT``
(a plugin secret or the server's environment variable; default
``<fiftyone default_dataset_dir>/ewc_fo/exports``); a class-list file is read only from there
too. A relative path is taken inside it. The other operators that write (a fitted
checkpoint, a label run's masks and maps) are held to the same root or to ewc-fo's own folder
of the FiftyOne dataset directory, where their defaults are (:func:`confine_write`).
"""

from __future__ import annotations

import os
import re

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import Progress, call, execution_options, md, one_line_errors, secret
from .forms import checked_number, invalid, prefix_input, to_number

ROOT_KEY = "EWC_FO_EXPORT_ROOT"


def export_root(ctx=None) -> str:
    """The folder every export of the plugin must go under."""
    import fiftyone as fo

    root = (secret(ctx, ROOT_KEY) if ctx is not None else None) or os.environ.get(ROOT_KEY)
    return os.path.realpath(root or os.path.join(fo.config.default_dataset_dir, "ewc_fo", "exports"))


def confine(path: str, root: str, what: str = "export folder") -> str:
    """``path`` (relative ones inside ``root``) resolved, or a ConfigError if it leaves ``root``."""
    from ewc_fo.runtime.errors import ConfigError

    full = os.path.realpath(os.path.join(root, os.path.expanduser(str(path))))
    if full == root or os.path.commonpath([full, root]) != root:
        raise ConfigError(f"{what} {path!r} is outside the export root {root} "
                          f"(set {ROOT_KEY} to allow another place)")
    return full


def confine_write(ctx, path, what: str) -> str:
    """``path`` resolved (a relative one inside the export root) if it lies under the export
    root or ``<fiftyone default_dataset_dir>/ewc_fo`` (where runs and fitted classifiers go by
    default), else a one-line ConfigError: the App lets anyone who reaches it type a path."""
    import fiftyone as fo

    from ewc_fo.runtime.errors import ConfigError

    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{what}: a path is needed, got {path!r}")
    root = export_root(ctx)
    own = os.path.realpath(os.path.join(fo.config.default_dataset_dir, "ewc_fo"))
    full = os.path.realpath(os.path.join(root, os.path.expanduser(path.strip())))
    for base in (root, own):
        if full != base and os.path.commonpath([full, base]) == base:
            return full
    raise ConfigError(f"{what} {path!r} is outside the export root {root} and {own} "
                      f"(set {ROOT_KEY} to allow another place)")


def class_source(ctx, value: str) -> str | None:
    """The export's ``classes``: 'voc' and mask-targets fields as typed, a file only under the
    export root (the server's other files are not the App's to read)."""
    from ewc_fo.runtime.errors import ConfigError

    if value is not None and not isinstance(value, str):
        raise ConfigError(f"classes: 'voc', a file or a field name is needed, got {value!r}")
    value = (value or "").strip()
    if not value or value.lower() == "voc" or value in (ctx.dataset.mask_targets or {}):
        return value or None
    return confine(value, export_root(ctx), what="class-list file")


def default_out_dir(ctx, prefix: str, fmt: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", ctx.dataset.name)
    return os.path.join(export_root(ctx), name, f"{prefix}-{fmt}")


class ExportMasks(foo.Operator):
    """Export a run's masks as COCO (RLE instances) or a VOC segmentation folder."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_masks", label="EWC: export masks (COCO / VOC)", icon="download",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, long_work=True)

    def resolve_input(self, ctx):
        from ewc_fo.runtime.errors import ConfigError

        inputs = types.Object()
        inputs.view_target(ctx, action_description="Export")
        prefix = prefix_input(ctx, inputs, must_exist=True)
        if prefix is None:
            return types.Property(inputs, view=types.View(label="EWC: export"))
        fmt_view = types.RadioGroup(orientation="horizontal")
        fmt_view.add_choice("coco", label="COCO", description="instances JSON, compressed RLE")
        fmt_view.add_choice("voc", label="VOC", description="SegmentationClass / SegmentationObject PNGs")
        inputs.enum("format", fmt_view.values(), default="coco", label="Format", view=fmt_view)
        fmt = ctx.params.get("format", "coco")
        root = export_root(ctx)
        default = default_out_dir(ctx, prefix, fmt)
        prop = inputs.str("out_dir", default=default, required=True, label="Output directory",
                          description=f"Under the export root {root} (a relative path is taken inside it)")
        out = ctx.params.get("out_dir") or default
        inputs.bool("overwrite", default=False, label="Overwrite", description="Replace a previous export there")
        try:
            full = confine(out, root)
            if os.path.isdir(full) and os.listdir(full):
                if not ctx.params.get("overwrite"):
                    raise ConfigError("directory is not empty; tick Overwrite or pick another")
                from ewc_fo.fo.io.export import (
                    COCO_FIXED,
                    COCO_IMAGES,
                    VOC_CLASS_FILES,
                    VOC_DIRS,
                    check_out_dir,
                )

                check_out_dir(ctx.target_view(), full, overwrite=True,
                              fixed=COCO_FIXED if fmt == "coco" else VOC_CLASS_FILES,
                              folders=(COCO_IMAGES,) if fmt == "coco" else (*VOC_DIRS, "ImageSets/Segmentation"))
        except ConfigError as e:
            invalid(prop, str(e))
        prop = inputs.str("classes", required=False, label="Class ids",
                          description="'voc' (the 21 standard VOC ids), a class-list file under the export root "
                          "(one name per line, background first; or JSON), or a field with mask targets (e.g. "
                          "ground_truth). Empty: VOC's ids when the run's classes are VOC's (VOC format), "
                          "else the run's own")
        try:
            classes = class_source(ctx, ctx.params.get("classes"))
            if classes:
                from ewc_fo.fo.io.export import check_classes

                check_classes(ctx.dataset, prefix, classes)
        except ConfigError as e:
            invalid(prop, str(e))
        inputs.bool("skip_rejected", default=True, label="Skip samples tagged ewc:reject")
        inputs.bool("reviewed_only", default=False, label="Only samples tagged ewc:reviewed")
        if fmt == "coco":
            inputs.bool("copy_images", default=True, label="Copy images")
            inputs.bool("polygons", default=False, label="Polygons instead of RLE")
            inputs.bool("overlapping", default=False, label="Keep overlapping instances",
                        description="Default: each pixel of an image belongs to one instance")
        else:
            prop = inputs.str("split", default="train", label="Split",
                              description="Name of the ImageSets/Segmentation list (train, val, trainval, ...)")
            split = ctx.params.get("split")
            if split is not None and not isinstance(split, str):
                invalid(prop, f"a name is needed, got {split!r}")
            elif split and split.strip():
                from ewc_fo.fo.io.export import safe_name

                if safe_name(split.strip(), "") != split.strip():
                    invalid(prop, "a plain name: letters, digits, '_', '.', '-' (no '/')")
            band = inputs.int("uncertain_band", default=0, label="Uncertain band (px)",
                              description="Void (255) this many pixels on each side of boundaries")
            checked_number(ctx, band, "uncertain_band", int, lo=0)
            conf = inputs.float("min_confidence", required=False, label="Min confidence",
                                description="Void instances, classes and images below this confidence")
            checked_number(ctx, conf, "min_confidence", float, lo=0, hi=1)
        return types.Property(inputs, view=types.View(label="EWC: export"))

    @one_line_errors
    def execute(self, ctx):
        from ewc_fo.fo.io.export import export

        p = ctx.params
        view = ctx.target_view()
        fmt = p.get("format", "coco")
        out = confine(p.get("out_dir") or default_out_dir(ctx, p["prefix"], fmt), export_root(ctx))
        kwargs = dict(prefix=p["prefix"], classes=class_source(ctx, p.get("classes")),
                      skip_rejected=bool(p.get("skip_rejected", True)),
                      reviewed_only=bool(p.get("reviewed_only", False)), overwrite=bool(p.get("overwrite", False)),
                      progress=Progress(ctx, "exporting"), progress_bar=False)
        if fmt == "coco":
            kwargs.update(copy_images=bool(p.get("copy_images", True)), polygons=bool(p.get("polygons", False)),
                          overlapping=bool(p.get("overlapping", False)))
        else:
            kwargs.update(split=(p.get("split") or "").strip() or "train",
                          uncertain_band=to_number(p.get("uncertain_band"), int, "uncertain_band", lo=0) or 0,
                          min_confidence=to_number(p.get("min_confidence"), float, "min_confidence", lo=0, hi=1))
        result = export(view, out, fmt, **kwargs)
        return {"out_dir": result.out_dir, "num_images": result.num_images,
                "num_instances": result.num_instances, "summary": str(result), "report": md(str(result))}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Export", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, out_dir, format="coco", prefix="ewc", overwrite=False, delegate=False, **options):
        return call(self.uri, samples, dict(out_dir=out_dir, format=format, prefix=prefix, overwrite=overwrite,
                                            **options), delegate)


OPERATORS = [ExportMasks]
