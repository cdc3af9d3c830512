"""``ewc-fo train-seg``: train a fast segmentation model on a run's trusted masks (docs/distill.md)."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import (
    add_dataset_args,
    add_selection_args,
    load_view,
    required_group,
    select_view,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-seg", help="train a fast segmentation model on a run's trusted masks (for `label --segmentation-model`)",
        description="Train a light decoder on the EfficientNet-Lite0 encoder from the masks of a finished "
        "run: corrected and accepted masks count fully, rejected ones are left out, the others weigh "
        "by their per-class confidence. Never writes to the dataset. Label the rest with "
        "`ewc-fo label DATASET --label-field F --segmentation-model OUT`.",
    )
    req = required_group(p)
    add_dataset_args(p, req)
    req.add_argument("--run", required=True, metavar="PREFIX", help="prefix of the finished run to learn from")
    req.add_argument("--out", required=True, help="model file to write (safetensors; metadata in <out>.json)")
    p.add_argument("--min-confidence", type=chk.unit_float, default=0.0, metavar="T",
                   help="leave out a class's pixels on images where its confidence is below T")
    p.add_argument("--min-samples", type=chk.positive_int, default=3,
                   help="fewest trusted images a class needs (else a one-line error naming it)")
    p.add_argument("--input-size", type=chk.input_size, default=320, metavar="PX",
                   help="square side images are resized to (a multiple of 32)")
    p.add_argument("--epochs", type=chk.positive_int, default=20, help="decoder epochs on cached features")
    p.add_argument("--tune-epochs", type=chk.non_negative_int, default=0,
                   help="epochs tuning the encoder's last stage with the decoder")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, order and flips")
    p.add_argument("--threads", type=chk.positive_int, default=None, help="torch threads (default: every core)")
    p.add_argument("--device", type=chk.device, default="cpu", help="cpu, cuda, cuda:N or mps")
    add_selection_args(p, classes=False)
    p.set_defaults(func=run)


def check_args(args) -> None:
    """What can be checked before FiftyOne and torch load."""
    from ewc_fo.runtime.errors import ConfigError

    chk.check_prefix(args.run)
    chk.check_file_target(args.out, "--out")
    if args.input_size % 32:
        raise ConfigError(f"--input-size must be a multiple of 32, got {args.input_size}")


def run(args) -> int:
    check_args(args)
    view = select_view(load_view(args.dataset, args.view), args, None)
    from ewc_fo.fo.train_seg import read_training_set

    read_training_set(view, args.run, min_confidence=args.min_confidence,
                      min_samples_per_class=args.min_samples)  # the run and its trust: before torch
    chk.check_device(args.device)

    from ewc_fo.fo.train_seg import train_segmenter
    from ewc_fo.models.seg_train import SegTrainConfig
    cfg = SegTrainConfig(input_size=args.input_size, epochs=args.epochs, tune_epochs=args.tune_epochs,
                         seed=args.seed)
    _, meta = train_segmenter(view, run=args.run, out=args.out, min_confidence=args.min_confidence,
                              min_samples_per_class=args.min_samples, config=cfg, threads=args.threads,
                              device=args.device, verbose=True)
    n = meta["samples"]
    print(f"trained on {meta['n_samples']} images of run {args.run!r} ({n['corrected']} corrected, "
          f"{n['accepted']} accepted, {n['by_confidence']} by confidence; left out: {n['rejected']} rejected, "
          f"{n['below_min_confidence']} below --min-confidence) in {meta['train_seconds']} s; "
          f"{len(meta['class_names'])} classes, final loss {meta['losses'][-1]:.3f}")
    print(f"saved {args.out} (+ {args.out}.json); label with it: ewc-fo label {args.dataset} "
          f"--label-field {meta['run']['label_field']} --segmentation-model {args.out} --prefix seg")
    return 0
