"""FiftyOne plugin for ewc-fo: operators and a review panel over the ``ewc_fo`` package.

Operators are thin on purpose: ``execute`` reads every parameter up front and makes one
``ewc_fo`` call, so the App, delegated workers and Python (``foo.get_operator(uri)(...)``)
all run exactly the code the CLI runs. ``ewc_fo`` is imported lazily so that listing
operators in the App stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types

PLUGIN = "@ewc-fo/ewc"
SEGMENTERS = ("auto", "grabcut", "sam2")
EXPORT_FORMATS = ("coco", "voc")
#: targets up to this many samples default to immediate execution; larger ones to delegated
IMMEDIATE_MAX = 16
PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


# ----------------------------------------------------------------------------- helpers


def _label_fields(dataset) -> list[str]:
    """Fields holding image-level labels (what a run can explain)."""
    from ewc_fo.fo.label import _label_type

    schema = dataset.get_field_schema()
    return [k for k, v in schema.items() if _label_type(v) is not None]


def _segmentation_fields(dataset) -> list[str]:
    import fiftyone as fo

    schema = dataset.get_field_schema()
    return [k for k, v in schema.items() if getattr(v, "document_type", None) is fo.Segmentation]


def _runs(dataset) -> list[str]:
    from ewc_fo.fo.summary import list_ewc_runs

    return list_ewc_runs(dataset)


def _secret(ctx, key: str) -> str | None:
    try:
        v = ctx.secrets[key]
    except Exception:  # no secrets backend: treat as unset
        return None
    v = getattr(v, "value", v)  # first resolution may return the secret object
    return v or None


@contextlib.contextmanager
def _hf_token(ctx):
    """Expose the plugin's ``HF_TOKEN`` secret to huggingface_hub for one call only.

    The value is never logged nor returned; a token already in the environment wins.
    """
    token = _secret(ctx, "HF_TOKEN")
    if not token or os.environ.get("HF_TOKEN"):
        yield
        return
    os.environ["HF_TOKEN"] = token
    try:
        yield
    finally:
        os.environ.pop("HF_TOKEN", None)


class _Progress:
    """``progress(done, total)`` for ewc_fo calls -> ``ctx.set_progress`` with a rate.

    Throttled (one update a second, plus the last one): delegated runs write each update
    to the database, immediate runs send it to the App.
    """

    def __init__(self, ctx, what: str, every: float = 1.0):
        self.ctx, self.what, self.every = ctx, what, every
        self.t0 = self.last = time.perf_counter()
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        self.calls += 1
        rate = done / max(now - self.t0, 1e-9)
        frac = done / total if total else 1.0
        self.ctx.set_progress(progress=frac, label=f"{self.what} {done}/{total}, {rate:.2f} img/s")


def _finish(ctx) -> None:
    """Immediate runs refresh the App; delegated ones have no App to refresh."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")


def _target_size(ctx) -> int | None:
    try:
        return len(ctx.target_view())
    except Exception:
        return None


def _execution_options(operator, ctx, long_work: bool):
    """Delegated by default for long work on more than IMMEDIATE_MAX samples."""
    n = _target_size(ctx) if long_work else 0
    return foo.ExecutionOptions(
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=bool(long_work and (n is None or n > IMMEDIATE_MAX)),
    )


def _call(uri: str, samples, params: dict, delegate: bool = False):
    """Run an operator from Python on a dataset or view, as the App would."""
    import fiftyone as fo

    view = samples.view() if isinstance(samples, fo.Dataset) else samples
    params = {"view_target": "CURRENT_VIEW", **{k: v for k, v in params.items() if v is not None}}
    params = _with_defaults(uri, view, params)
    result = foo.execute_operator(uri, ctx=dict(view=view, params=params, request_delegation=delegate))
    return result.result


def _with_defaults(uri: str, view, params: dict) -> dict:
    """Fill in the form's defaults, as the App does before it submits a form."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params=dict(dataset_name=view._root_dataset.name, view=view._serialize(),
                                               params=dict(params)), operator_uri=uri)
    prop = foo.get_operator(uri).resolve_input(ctx)
    out = dict(params)
    for name, p in getattr(prop.type, "properties", {}).items():
        if name not in out and getattr(p, "default", None) is not None:
            out[name] = p.default
    return out


def _md(text: str) -> str:
    """A plain multi-line summary as Markdown (no code view: it would fetch an editor online)."""
    head, *rest = text.splitlines()
    return "\n".join([head, ""] + [f"- {line.strip()}" for line in rest])


def _invalid(prop, message: str):
    prop.invalid = True
    prop.error_message = message
    return prop


def _error(inputs, name: str, label: str, description: str = "") -> None:
    inputs.view(name, types.Error(label=label, description=description))


# ----------------------------------------------------------------------------- form parts


def _label_field_input(ctx, inputs, name="label_field") -> str | None:
    fields = _label_fields(ctx.dataset)
    if not fields:
        _error(inputs, f"{name}_missing", "No image-level labels",
               "This dataset has no fo.Classification / fo.Classifications field to explain.")
        return None
    choices = types.DropdownView()
    for f in fields:
        choices.add_choice(f, label=f)
    inputs.enum(name, choices.values(), default=fields[0], required=True, label="Label field",
                description="Image-level labels to turn into masks", view=choices)
    return ctx.params.get(name) or fields[0]


def _prefix_input(ctx, inputs, default="ewc", must_exist=False) -> str | None:
    runs = _runs(ctx.dataset)
    if must_exist:
        if not runs:
            _error(inputs, "prefix_missing", "No ewc-fo run on this dataset",
                   "Run 'Compute EWC explanations and masks' first.")
            return None
        choices = types.DropdownView()
        for r in runs:
            choices.add_choice(r, label=r)
        inputs.enum("prefix", choices.values(), default=runs[0], required=True, label="Run (prefix)",
                    view=choices)
        return ctx.params.get("prefix") or runs[0]
    prop = inputs.str("prefix", default=default, label="Prefix",
                      description="Names every field the run writes (<prefix>_mask, ...)")
    prefix = ctx.params.get("prefix", default)
    if not PREFIX_RE.match(prefix or ""):
        _invalid(prop, "start with a letter; letters, digits and _ only (max 40)")
        return None
    return prefix


def _explainers_input(ctx, inputs) -> list[str]:
    from ewc_fo.engine.explainers import list_explainers
    from ewc_fo.engine.pipeline import DEFAULT_EXPLAINERS

    available = list_explainers()
    view = types.AutocompleteView(allow_user_input=False, allow_duplicates=False)
    for e in available:
        view.add_choice(e, label=e)
    prop = inputs.list("explainers", types.String(), default=list(DEFAULT_EXPLAINERS),
                       label="Explainers", description="Maps to fuse, weighted by their per-image scores",
                       view=view)
    chosen = ctx.params.get("explainers") or list(DEFAULT_EXPLAINERS)
    bad = [e for e in chosen if str(e).partition("@")[0] not in available]
    if bad:
        _invalid(prop, f"unknown explainer(s): {', '.join(bad)}")
    elif len(set(chosen)) != len(chosen):
        _invalid(prop, "an explainer is listed twice")
    return chosen


def _segmenter_input(ctx, inputs) -> None:
    choices = types.RadioGroup(orientation="horizontal")
    for s, d in (("auto", "SAM2 if a checkpoint is known, else GrabCut"), ("grabcut", "OpenCV, offline"),
                 ("sam2", "frozen SAM2, needs a checkpoint")):
        choices.add_choice(s, label=s, description=d)
    inputs.enum("segmenter", choices.values(), default="auto", label="Segmenter", view=choices)
    seg = ctx.params.get("segmenter", "auto")
    prop = inputs.str("sam2_checkpoint", label="SAM2 checkpoint", required=False,
                      description="Local .pt or a Hugging Face id (facebook/sam2.1-hiera-tiny); "
                                  "default $EWC_SAM2_CHECKPOINT")
    ckpt = ctx.params.get("sam2_checkpoint")
    if seg == "sam2" and not ckpt and not os.environ.get("EWC_SAM2_CHECKPOINT"):
        _invalid(prop, "segmenter sam2 needs a checkpoint (or choose auto / grabcut)")
    elif ckpt and ckpt.endswith((".pt", ".pth")) and not os.path.exists(ckpt):
        _invalid(prop, f"no such file: {ckpt}")


# ----------------------------------------------------------------------------- operators


class FitClassifier(foo.Operator):
    """Fit a classifier on the dataset's image-level labels (``ewc_fo.fit``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="fit_classifier", label="EWC: fit classifier on image-level labels", icon="model_training",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return foo.ExecutionOptions(allow_immediate_execution=True, allow_delegated_execution=True,
                                    default_choice_to_delegated=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Fit on")
        field = _label_field_input(ctx, inputs)
        default_out = ""
        if field:
            from ewc_fo.fo.label import default_output_dir

            default_out = os.path.join(os.path.dirname(default_output_dir(ctx.dataset, "x")),
                                       f"classifier_{field}.safetensors")
        prop = inputs.str("out", default=default_out, required=True, label="Checkpoint path",
                          description="Where to write the fitted classifier (.safetensors)")
        out = ctx.params.get("out", default_out)
        if out and not str(out).endswith(".safetensors"):
            _invalid(prop, "the checkpoint path must end with .safetensors")
        inputs.str("backbone", required=False, label="Backbone",
                   description="Leave empty for ewc-fo's default backbone")
        inputs.int("fit_size", required=False, label="Fit size",
                   description="Square side images are resized to for fitting (empty: ewc-fo's default)")
        return types.Property(inputs, view=types.View(label="EWC: fit classifier"))

    def execute(self, ctx):
        view = ctx.target_view()
        field = ctx.params["label_field"]
        out = ctx.params["out"]
        backbone = ctx.params.get("backbone") or None
        fit_size = ctx.params.get("fit_size") or None
        import inspect

        from ewc_fo.fo.fit import fit

        kwargs = {"out": out}
        accepted = inspect.signature(fit).parameters
        if backbone:
            kwargs["backbone"] = backbone
        if fit_size:
            kwargs["fit_size"] = int(fit_size)
        if "progress" in accepted:
            kwargs["progress"] = _Progress(ctx, "fitting")
        with _hf_token(ctx):
            result = fit(view, field, **kwargs)
        _finish(ctx)
        meta = getattr(result, "meta", {}) or {}
        score = meta.get("heldout_score")
        return {"out": out, "classes": list(getattr(result, "class_names", [])),
                "heldout_score": score, "result": f"classifier saved to {out}; held-out score {score}"}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("out", label="Checkpoint")
        outputs.str("result", label="Result")
        return types.Property(outputs)

    def __call__(self, samples, label_field: str, out: str, backbone: str | None = None, fit_size=None,
                 delegate=False):
        return _call(self.uri, samples, dict(label_field=label_field, out=out, backbone=backbone,
                                             fit_size=fit_size), delegate)


class ComputeEWC(foo.Operator):
    """Explanations, confidence and masks for the target samples (``ewc_fo.label``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_ewc", label="EWC: compute explanations and masks", icon="auto_fix_high",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return _execution_options(self, ctx, long_work=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Label")
        field = _label_field_input(ctx, inputs)
        prefix = _prefix_input(ctx, inputs)
        inputs.str("classifier", default="efficientnet_lite0", label="Classifier",
                   description="efficientnet_lite0, torchvision:<name>, timm:<name> or a fitted checkpoint")
        _explainers_input(ctx, inputs)
        _segmenter_input(ctx, inputs)
        inputs.int("explain_size", required=False, label="Explain size",
                   description="Square side fed to the classifier (empty: the classifier's own)")
        from ewc_fo.engine.pipeline import EWCConfig

        for key, label, desc in (
            ("class_competition", "Class competition",
             "0-1: how much a class's maps give way where another class of the image is stronger"),
            ("mask_weight", "Mask votes",
             "0-1: how much each explainer votes with the mask its own map prompted"),
        ):
            prop = inputs.float(key, default=getattr(EWCConfig, key), label=label, description=desc)
            v = ctx.params.get(key)
            if v is not None and not 0 <= float(v) <= 1:
                _invalid(prop, "must be between 0 and 1")
        bs = inputs.int("batch_size", default=4, label="Batch size", description="Images per pass")
        if ctx.params.get("batch_size") is not None and int(ctx.params["batch_size"]) < 1:
            _invalid(bs, "must be >= 1")
        inputs.bool("overwrite", default=False, label="Overwrite",
                    description="Delete this prefix's previous run (its fields, files and views) first")
        inputs.str("output_dir", required=False, label="Output directory",
                   description="Where masks and maps are written (default: next to the dataset)")
        if field and prefix:
            self._check_run(ctx, inputs, prefix)
        return types.Property(inputs, view=types.View(label="EWC: compute explanations and masks"))

    @staticmethod
    def _check_run(ctx, inputs, prefix):
        from ewc_fo.fo import runs

        rec = runs.get_run(ctx.dataset, prefix)
        if rec is None or ctx.params.get("overwrite"):
            return
        conf = f"{prefix}_confidence"
        try:
            target = ctx.target_view()
            todo = len(target.exists(conf, False).exists(f"{prefix}_error", False))
        except Exception:
            return
        if todo == 0:
            _error(inputs, "run_done", f"Run '{prefix}' already labeled these samples",
                   "Tick Overwrite to redo it, or choose another prefix.")
            _invalid(inputs.get_property("prefix"),
                     f"run '{prefix}' already labeled these samples; tick Overwrite or choose another prefix")
        else:
            inputs.view("run_resume", types.Notice(
                label=f"Run '{prefix}' exists: {todo} unlabeled sample(s) will be added with its settings"))

    def execute(self, ctx):
        from ewc_fo.engine.pipeline import EWCConfig
        from ewc_fo.fo.label import label

        p = ctx.params
        view = ctx.target_view()
        kwargs = dict(
            prefix=p.get("prefix") or "ewc",
            classifier=p.get("classifier") or "efficientnet_lite0",
            segmenter=p.get("segmenter") or "auto",
            sam2_checkpoint=p.get("sam2_checkpoint") or None,
            batch_size=int(p.get("batch_size") or 4),
            overwrite=bool(p.get("overwrite", False)),
            output_dir=p.get("output_dir") or None,
        )
        cfg = {}
        if p.get("explainers"):
            cfg["explainers"] = tuple(p["explainers"])
        if p.get("explain_size"):
            cfg["explain_size"] = int(p["explain_size"])
        for key in ("class_competition", "mask_weight"):
            if p.get(key) is not None:
                cfg[key] = float(p[key])
        label_field = p["label_field"]
        with _hf_token(ctx):
            summary = label(view, label_field, config=EWCConfig(**cfg), progress=_Progress(ctx, "labeling"),
                            progress_bar=False, **kwargs)
        _finish(ctx)
        return {
            "prefix": summary.prefix, "labeled": summary.succeeded, "failed": sum(summary.errors.values()),
            "errors": dict(summary.errors), "already_done": summary.skipped_done, "total": summary.total,
            "seconds": round(summary.seconds, 2), "segmenter": summary.segmenter, "views": summary.views,
            "summary": str(summary), "report": _md(str(summary)),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Run summary", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, label_field: str, *, prefix="ewc", classifier="efficientnet_lite0",
                 explainers=None, segmenter="auto", sam2_checkpoint=None, explain_size=None, batch_size=4,
                 class_competition=None, mask_weight=None, overwrite=False, output_dir=None, delegate=False):
        params = dict(label_field=label_field, prefix=prefix, classifier=classifier,
                      explainers=list(explainers) if explainers else None, segmenter=segmenter,
                      sam2_checkpoint=sam2_checkpoint, explain_size=explain_size, batch_size=batch_size,
                      class_competition=class_competition, mask_weight=mask_weight,
                      overwrite=overwrite, output_dir=output_dir)
        return _call(self.uri, samples, params, delegate)


class CreateTriageViews(foo.Operator):
    """(Re)save the run's triage views so they show in the App's view bar."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="create_triage_views", label="EWC: create/refresh triage views", icon="low_priority",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return _execution_options(self, ctx, long_work=False)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _prefix_input(ctx, inputs, must_exist=True)
        inputs.bool("open_view", default=True, label="Open the low-confidence view",
                    description="Show the least trustworthy masks first when done")
        return types.Property(inputs, view=types.View(label="EWC: triage views"))

    def execute(self, ctx):
        from ewc_fo.fo.views import create_triage_views

        prefix = ctx.params["prefix"]
        open_view = bool(ctx.params.get("open_view", True))
        names = create_triage_views(ctx.dataset, prefix)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
            if open_view and names:
                ctx.ops.set_view(name=names[0])
        return {"views": names}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.list("views", types.String(), label="Saved views")
        return types.Property(outputs)

    def __call__(self, dataset, prefix="ewc", delegate=False):
        return _call(self.uri, dataset, dict(prefix=prefix, open_view=False), delegate)


class EvaluateMasks(foo.Operator):
    """Score a run's masks against ground-truth masks (``ewc_fo.evaluate``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_masks", label="EWC: evaluate masks against ground truth", icon="fact_check",
            dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return _execution_options(self, ctx, long_work=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        segs = _segmentation_fields(ctx.dataset)
        runs = _runs(ctx.dataset)
        preds = [f"{r}_mask" for r in runs if f"{r}_mask" in segs]
        gts = [f for f in segs if f not in {f"{r}_mask" for r in runs}]
        if not preds or not gts:
            _error(inputs, "fields_missing", "Nothing to evaluate",
                   "Needs an ewc-fo run's <prefix>_mask and a ground-truth fo.Segmentation field "
                   f"(found runs: {', '.join(preds) or 'none'}; ground truth: {', '.join(gts) or 'none'}).")
            return types.Property(inputs, view=types.View(label="EWC: evaluate"))
        for name, opts, label in (("pred_field", preds, "Predicted masks"), ("gt_field", gts, "Ground truth")):
            dd = types.DropdownView()
            for f in opts:
                dd.add_choice(f, label=f)
            inputs.enum(name, dd.values(), default=opts[0], required=True, label=label, view=dd)
        return types.Property(inputs, view=types.View(label="EWC: evaluate"))

    def execute(self, ctx):
        from ewc_fo.fo.evaluate import evaluate

        view = ctx.target_view()
        pred, gt = ctx.params["pred_field"], ctx.params["gt_field"]
        report = evaluate(view, pred, gt, progress=_Progress(ctx, "evaluating"))
        _finish(ctx)
        return {"report": report.to_markdown(), "miou": report.to_dict()["miou"], "n_samples": report.n_samples}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Report", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, pred_field="ewc_mask", gt_field="ground_truth", delegate=False):
        return _call(self.uri, samples, dict(pred_field=pred_field, gt_field=gt_field), delegate)


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
        return _execution_options(self, ctx, long_work=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Export")
        prefix = _prefix_input(ctx, inputs, must_exist=True)
        if prefix is None:
            return types.Property(inputs, view=types.View(label="EWC: export"))
        fmt_view = types.RadioGroup(orientation="horizontal")
        fmt_view.add_choice("coco", label="COCO", description="instances JSON, compressed RLE")
        fmt_view.add_choice("voc", label="VOC", description="SegmentationClass / SegmentationObject PNGs")
        inputs.enum("format", fmt_view.values(), default="coco", label="Format", view=fmt_view)
        fmt = ctx.params.get("format", "coco")
        prop = inputs.str("out_dir", required=True, label="Output directory")
        out = ctx.params.get("out_dir")
        inputs.bool("overwrite", default=False, label="Overwrite", description="Replace a previous export there")
        if out and os.path.isdir(out) and os.listdir(out) and not ctx.params.get("overwrite"):
            _invalid(prop, "directory is not empty; tick Overwrite or pick another")
        inputs.bool("skip_rejected", default=True, label="Skip samples tagged ewc:reject")
        inputs.bool("reviewed_only", default=False, label="Only samples tagged ewc:reviewed")
        if fmt == "coco":
            inputs.bool("copy_images", default=True, label="Copy images")
            inputs.bool("polygons", default=False, label="Polygons instead of RLE")
        else:
            inputs.int("uncertain_band", default=0, label="Uncertain band (px)",
                       description="Void (255) this many pixels on each side of boundaries")
            inputs.float("min_confidence", required=False, label="Min confidence",
                         description="Void instances, classes and images below this confidence")
        return types.Property(inputs, view=types.View(label="EWC: export"))

    def execute(self, ctx):
        from ewc_fo.fo.export import export

        p = ctx.params
        view = ctx.target_view()
        fmt = p.get("format", "coco")
        kwargs = dict(prefix=p["prefix"], skip_rejected=bool(p.get("skip_rejected", True)),
                      reviewed_only=bool(p.get("reviewed_only", False)), overwrite=bool(p.get("overwrite", False)),
                      progress=_Progress(ctx, "exporting"))
        if fmt == "coco":
            kwargs.update(copy_images=bool(p.get("copy_images", True)), polygons=bool(p.get("polygons", False)))
        else:
            kwargs.update(uncertain_band=int(p.get("uncertain_band") or 0), min_confidence=p.get("min_confidence"))
        result = export(view, p["out_dir"], fmt, **kwargs)
        return {"out_dir": result.out_dir, "num_images": result.num_images,
                "num_instances": result.num_instances, "summary": str(result), "report": _md(str(result))}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Export", view=types.MarkdownView())
        return types.Property(outputs)

    def __call__(self, samples, out_dir, format="coco", prefix="ewc", overwrite=False, delegate=False, **options):
        return _call(self.uri, samples, dict(out_dir=out_dir, format=format, prefix=prefix, overwrite=overwrite,
                                             **options), delegate)


def register(p):
    from .review import ReviewPanel

    for cls in (FitClassifier, ComputeEWC, CreateTriageViews, EvaluateMasks, ExportMasks, ReviewPanel):
        p.register(cls)
