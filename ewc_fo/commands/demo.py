"""``ewc-fo demo``: the main job on an embedded default, offline: build, label, summarise."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="label a small bundled dataset of real photos end to end (offline)")
    p.add_argument("--segmenter", default="auto", choices=["auto", "sam2", "sam-onnx", "grabcut"],
                   help="auto: SAM2 when a checkpoint is given or in $EWC_SAM2_CHECKPOINT, else GrabCut")
    p.add_argument("--sam2-checkpoint", default=None,
                   help="SAM2 checkpoint path or Hugging Face id (e.g. facebook/sam2.1-hiera-tiny)")
    p.add_argument("--fresh", action="store_true", help="rebuild the demo dataset and relabel it")
    p.set_defaults(func=run)


def run(args) -> int:
    chk.check_segmenter(args.segmenter, args.sam2_checkpoint)
    from ewc_fo.demo import DEMO_DATASET, build_demo_dataset
    from ewc_fo.fo.review.summary import exact_count, run_summary
    from ewc_fo.fo.runs.label import label
    from ewc_fo.fo.runs.record import get_run
    from ewc_fo.segmenters import create_segmenter

    ds = build_demo_dataset(overwrite=args.fresh)
    print(f"dataset {ds.name!r}: {exact_count(ds)} real photos (scikit-image, CC0/public domain)")
    rec = get_run(ds, "ewc")
    if rec is None or rec.get("status") != "complete":
        seg = create_segmenter(args.segmenter, checkpoint=args.sam2_checkpoint)
        print(label(ds, "labels", prefix="ewc", segmenter=seg, batch_size=2))
    print()
    print(run_summary(ds, prefix="ewc"))
    import os

    from ewc_fo.fo.review.viz import overview

    out = overview(ds, "ewc", os.path.join(get_run(ds, "ewc")["output_dir"], "overview.png"))
    print(f"\nPicture of the maps and masks: {out}")
    print(f"\nOpen it in the App:  ewc-fo app {DEMO_DATASET} --view ewc-low-confidence")
    return 0
