"""``ewc-fo fit``: fit a classifier on a dataset's image-level labels and save a checkpoint."""

from __future__ import annotations

import argparse

from ._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit a classifier on the dataset's labels (for `ewc-fo label --classifier`)",
        description="Fit a head (optionally fine-tuning the last blocks) on a pretrained backbone "
        "from a Classification (single-label) or Classifications (multi-label) field. Backbone "
        "features are cached on disk, so fitting again with other settings is fast. Prints the "
        "held-out accuracy (single-label) or mAP (multi-label), also stored in <out>.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_args(p)
    p.add_argument("--label-field", required=True, help="Classification or Classifications field")
    p.add_argument("--out", required=True, help="checkpoint to write (safetensors; metadata in <out>.json)")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0 (offline), torchvision:<name> or timm:<name>")
    p.add_argument("--head", default="linear", choices=["linear", "mlp"])
    p.add_argument("--finetune-blocks", type=int, default=0,
                   help="also fine-tune the last N backbone blocks (slower: full image passes)")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--fit-size", type=int, default=448, help="square side images are resized to for fitting")
    p.add_argument("--explain-size", type=int, default=None,
                   help="input side explainers will use (default: the fit size)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of images held out for the score")
    p.add_argument("--epochs", type=int, default=None, help="head training epochs (default: per head)")
    p.add_argument("--no-flip", action="store_true", help="do not average features with the mirrored image")
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/ewc_fo/features)")
    p.add_argument("--cam-layers", default=None,
                   help="comma-separated module names to use as CAM layers instead of the automatic ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fo.fit import fit

    view = load_view(args.dataset, args.view)
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
    print(f"saved {args.out} (+ {args.out}.json); use it with "
          f"`ewc-fo label {args.dataset} --label-field {args.label_field} --classifier {args.out}`")
    return 0
