"""``ewc-fo evaluate``: score a run's masks against ground-truth masks and print the table."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mIoU of pseudo-masks against ground-truth masks, and how well confidence finds bad ones",
    )
    add_dataset_args(p)
    p.add_argument("--pred-field", default="ewc_mask", help="predicted fo.Segmentation field")
    p.add_argument("--gt-field", default="ground_truth", help="ground-truth fo.Segmentation field")
    p.add_argument("--ignore-index", type=chk.non_negative_int, default=255,
                   help="ground-truth value to ignore (void)")
    p.add_argument(
        "--iou-field",
        default=None,
        help="sample field for the per-sample IoU (default <prefix>_iou; '' to not write it)",
    )
    p.add_argument(
        "--confidence-fields",
        nargs="*",
        default=None,
        help="float fields to check against IoU (default <prefix>_confidence <prefix>_agreement)",
    )
    p.add_argument("--iou-threshold", type=chk.unit_float, default=0.5, help="a mask is bad below this IoU")
    p.add_argument("--eval-key", default=None,
                   help="FiftyOne evaluation key to record the run under (default <prefix>_eval)")
    p.add_argument("--no-store", action="store_true", help="do not record a FiftyOne evaluation run")
    p.set_defaults(func=run)


def run(args) -> int:
    from ewc_fo.fo.review.evaluate import evaluate

    view = load_view(args.dataset, args.view)
    report = evaluate(
        view,
        pred_field=args.pred_field,
        gt_field=args.gt_field,
        ignore_index=args.ignore_index,
        sample_iou_field=args.iou_field,
        confidence_fields=args.confidence_fields,
        iou_threshold=args.iou_threshold,
        store=not args.no_store,
        eval_key=args.eval_key,
        progress=True,
    )
    print(report.to_markdown(), end="")
    return 0
