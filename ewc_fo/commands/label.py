"""``ewc-fo label``: explain, score, fuse and segment every sample of a dataset or saved view."""

from __future__ import annotations

import argparse

from ._common import load_view


def add_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="pseudo-label a dataset: explainer maps, confidence, masks",
        description="Run EWC on a dataset or saved view. Resumes an interrupted run with the same "
        "prefix; a finished run needs --overwrite.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dataset", nargs="?", help="name of the FiftyOne dataset")
    p.add_argument("--view", default=None, help="name of a saved view of the dataset to use instead")
    p.add_argument("--label-field", help="Classification or Classifications field (required)")
    p.add_argument("--prefix", default="ewc", help="prefix of every field the run writes")
    p.add_argument("--classifier", default="efficientnet_lite0",
                   help="efficientnet_lite0, torchvision:<name>, timm:<name> or a checkpoint from `ewc-fo fit`")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a classifier checkpoint that needs unpickling (can run code: trusted files only)")
    p.add_argument("--segmenter", default="auto", choices=["auto", "sam2", "grabcut"])
    p.add_argument("--sam2-checkpoint", default=None,
                   help="SAM2 checkpoint path or Hugging Face id (e.g. facebook/sam2.1-hiera-tiny)")
    p.add_argument("--sam2-config", default=None, help="SAM2 config for a local checkpoint")
    p.add_argument("--explainers", default=None,
                   help="comma-separated explainers (default: the registry's defaults); see --list-explainers")
    p.add_argument("--list-explainers", action="store_true", help="print available explainers and exit")
    p.add_argument("--explain-size", type=int, default=None, help="classifier input side for explanations")
    p.add_argument("--fg-threshold", type=float, default=None)
    p.add_argument("--bg-threshold", type=float, default=None)
    p.add_argument("--box-threshold", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature of the explainer weights")
    p.add_argument("--mask-weight", type=float, default=None,
                   help="0..1: how much each explainer votes with the mask its own map prompted")
    p.add_argument("--class-competition", type=float, default=None,
                   help="0..1: how much a class's maps give way where another class of the image is stronger")
    p.add_argument("--batch-size", type=int, default=None, help="images per pass (default 4; a resumed run reuses its own)")
    p.add_argument("--overwrite", action="store_true", help="delete this prefix's previous run first")
    p.add_argument("--output-dir", default=None, help="where masks, heatmaps and maps are written")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def build_config(args):
    from dataclasses import replace

    from ..engine.pipeline import EWCConfig

    cfg = EWCConfig()
    if args.explainers:
        cfg = replace(cfg, explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()))
    if args.explain_size:
        cfg = replace(cfg, explain_size=args.explain_size)
    pk = {k: getattr(args, k) for k in ("fg_threshold", "bg_threshold", "box_threshold")
          if getattr(args, k) is not None}
    if pk:
        cfg = replace(cfg, prompts=replace(cfg.prompts, **pk))
    if args.temperature is not None:
        cfg = replace(cfg, score=replace(cfg.score, temperature=args.temperature))
    for name in ("mask_weight", "class_competition"):
        if getattr(args, name, None) is not None:
            cfg = replace(cfg, **{name: getattr(args, name)})
    return cfg


def run(args) -> int:
    if args.list_explainers:
        from ..engine.explainers import list_explainers

        defaults = set(list_explainers(defaults_only=True))
        for n in list_explainers():
            print(f"{n}{'  (default)' if n in defaults else ''}")
        return 0
    if not args.dataset or not args.label_field:
        from ..engine.errors import ConfigError

        raise ConfigError("give a dataset and --label-field (see `ewc-fo label --help`)")
    from ..engine.classifier import load_classifier
    from ..engine.segmenters import SAM2_TINY_CONFIG, create_segmenter
    from ..fo.label import label

    view = load_view(args.dataset, args.view)
    cfg = build_config(args)
    seg = create_segmenter(args.segmenter, checkpoint=args.sam2_checkpoint,
                           config=args.sam2_config or SAM2_TINY_CONFIG, device=args.device)
    clf = load_classifier(args.classifier, device=args.device, allow_pickle=args.trust_checkpoint)
    summary = label(view, args.label_field, prefix=args.prefix, classifier=clf, segmenter=seg,
                    config=cfg, batch_size=args.batch_size, overwrite=args.overwrite,
                    output_dir=args.output_dir)
    print(summary)
    return 0
