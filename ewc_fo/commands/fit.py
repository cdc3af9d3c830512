"""``ewc-fo fit``: fit a classifier on a dataset's image-level labels and save a checkpoint."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import (
    add_dataset_args,
    add_selection_args,
    check_label_field,
    load_view,
    required_group,
    select_view,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit a classifier on the dataset's labels (for `ewc-fo label --classifier`)",
        description="Fit a head (optionally fine-tuning the last blocks) on a pretrained backbone "
        "from a Classification (single-label) or Classifications (multi-label) field. Backbone "
        "features are cached on disk, so fitting again with other settings is fast. Prints the "
        "held-out accuracy (single-label) or mAP (multi-label), also stored in <out>.json.",
    )
    req = required_group(p)
    add_dataset_args(p, req)
    req.add_argument("--label-field", required=True,
                     help="fo.Classification or fo.Classifications field with the image-level labels")
    req.add_argument("--out", required=True, help="checkpoint to write (safetensors; metadata in <out>.json)")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0/1/2 (offline), torchvision:<name> or timm:<name>")
    p.add_argument("--head", default="linear", choices=["linear", "mlp"],
                   help="linear: logistic regression on the features; mlp: one hidden layer")
    p.add_argument("--finetune-blocks", type=chk.non_negative_int, default=0,
                   help="also fine-tune the last N backbone blocks (slower: full image passes)")
    p.add_argument("--finetune-epochs", type=chk.positive_int, default=3,
                   help="epochs of fine-tuning when --finetune-blocks > 0")
    p.add_argument("--fit-size", type=chk.input_size, default=448, metavar="PX",
                   help=f"square side images are resized to for fitting, "
                   f"{chk.MIN_INPUT_SIZE}..{chk.MAX_INPUT_SIZE}")
    p.add_argument("--explain-size", type=chk.input_size, default=None, metavar="PX",
                   help="input side explainers will use (default: the fit size)")
    p.add_argument("--holdout", type=chk.holdout, default=0.2,
                   help="fraction of images held out for the score, in [0, 1)")
    p.add_argument("--epochs", type=chk.positive_int, default=None,
                   help="head training epochs (default: per head)")
    p.add_argument("--no-flip", action="store_true", help="do not average features with the mirrored image")
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/ewc_fo/features)")
    p.add_argument("--cam-layers", default=None,
                   help="comma-separated module names to use as CAM layers instead of the automatic ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the head's training")
    p.add_argument("--device", type=chk.device, default="cpu", help="cpu, cuda, cuda:N or mps")
    add_selection_args(p)
    p.set_defaults(func=run)


def check_args(args) -> None:
    """What can be checked before FiftyOne and torch load."""
    kind, sep, arch = args.backbone.partition(":")
    if args.backbone not in chk.BUILTIN_CLASSIFIERS and not (sep and kind in ("torchvision", "timm") and arch):
        from ewc_fo.runtime.errors import ConfigError

        raise ConfigError(f"unknown backbone {args.backbone!r}: use efficientnet_lite0/1/2, "
                          "torchvision:<name> or timm:<name>")
    chk.check_file_target(args.out, "--out")
    if args.cache_dir is not None:
        chk.check_folder(args.cache_dir, "--cache-dir")


def run(args) -> int:
    check_args(args)
    view = load_view(args.dataset, args.view)
    check_label_field(view, args.label_field)
    view = select_view(view, args, args.label_field)
    chk.check_device(args.device)

    import warnings

    from ewc_fo.fo.fit import fit
    from ewc_fo.models.fit_data import RareClassWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RareClassWarning)  # said once, below, in the summary
        clf = fit(
            view, args.label_field, out=args.out, backbone=args.backbone, head=args.head,
            finetune_blocks=args.finetune_blocks, finetune_epochs=args.finetune_epochs,
            fit_size=args.fit_size, input_size=args.explain_size, holdout=args.holdout,
            epochs=args.epochs, flip=not args.no_flip, cache_dir=args.cache_dir, seed=args.seed,
            cam_layer_paths=[s.strip() for s in args.cam_layers.split(",")] if args.cam_layers else None,
            device=args.device, verbose=True,
        )
    m = clf.meta
    kind = "multi-label" if clf.multilabel else "single-label"
    print(f"fitted {len(clf.class_names)} classes ({kind}) on {m['n_images']} images, "
          f"backbone {m['backbone']}, head {m['head']}, fit size {m['fit_size']}")
    print(f"features: {m['features_computed']} computed, {m['features_cached']} from cache "
          f"({m['feature_time_s']} s); fit {m['fit_time_s']} s")
    if "heldout_score" in m:
        print(f"held-out {m['metric']}: {m['heldout_score']:.3f} on {m['n_heldout']} images")
    rare = [f"{c} ({n})" for c, n in m.get("images_per_class", {}).items() if n < 2]
    if rare:
        print(f"warning: fitted but never held out (a single image each): {', '.join(rare)}")
    if m.get("not_scored"):
        print(f"not in the held-out score (no held-out image): {', '.join(m['not_scored'])}")
    print(f"saved {args.out} (+ {args.out}.json); use it with "
          f"`ewc-fo label {args.dataset} --label-field {args.label_field} --classifier {args.out}`")
    return 0
