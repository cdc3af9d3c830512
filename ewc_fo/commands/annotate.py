"""``ewc-fo annotate``: send masks that need fixing to an annotation tool, load the fixes back."""

from __future__ import annotations

from ._common import add_dataset_args, load_view


def add_parser(sub) -> None:
    p = sub.add_parser(
        "annotate",
        help="send rejected / low-confidence masks to an annotation tool (Label Studio) and load the fixes",
        description="Uses FiftyOne's annotation API. 'send' uploads the masks (a person's earlier fix, "
        "else the pseudo-mask) as one editable region per class; 'load' writes what people submitted "
        "to <prefix>_mask_corrected, which export prefers. URL and API key default to FiftyOne's "
        "annotation config (FIFTYONE_LABELSTUDIO_URL, FIFTYONE_LABELSTUDIO_API_KEY).",
    )
    sp = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = sp.add_parser("send", help="upload samples for correction")
    load = sp.add_parser("load", help="load the corrections of an annotation run")
    for q in (send, load):
        add_dataset_args(q)
        q.add_argument("--anno-key", required=True, help="FiftyOne annotation run key")
        q.add_argument("--prefix", default="ewc", help="prefix of the labeling run")
        q.add_argument("--url", default=None, help="annotation server URL")
        q.add_argument("--api-key", default=None, help="API key (prefer the environment variable)")
    send.add_argument("--backend", default="labelstudio", help="FiftyOne annotation backend")
    send.add_argument("--max-confidence", type=float, default=None,
                      help="also send samples whose <prefix>_confidence is below this")
    send.add_argument("--no-rejected", action="store_true", help="do not send samples tagged ewc:reject")
    send.add_argument("--all", action="store_true", dest="send_all",
                      help="send every labeled sample of the dataset/view (no selection)")
    send.add_argument("--project-name", default=None, help="name of the project in the tool")
    send.add_argument("--launch", action="store_true", help="open the tool in a browser")
    load.add_argument("--keep-tags", action="store_true",
                      help="do not tag corrected samples ewc:reviewed nor untag ewc:reject")
    load.add_argument("--cleanup", action="store_true", help="delete the project on the server afterwards")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fo import annotate as ann

    view = load_view(args.dataset, args.view)
    if args.action == "send":
        if args.send_all:
            todo = view
        else:
            todo = ann.correction_candidates(
                view, args.prefix, max_confidence=args.max_confidence, rejected=not args.no_rejected
            )
        extra = {"project_name": args.project_name} if args.project_name else {}
        results = ann.send_for_correction(
            todo, args.anno_key, args.prefix, backend=args.backend, url=args.url, api_key=args.api_key,
            launch_editor=args.launch, **extra,
        )
        n = len(results.samples) if hasattr(results, "samples") else len(todo)
        print(f"sent {n} sample(s) as annotation run {args.anno_key!r}; "
              f"when done: ewc-fo annotate load {args.dataset} --anno-key {args.anno_key}")
        return 0
    done = ann.load_corrections(
        view, args.anno_key, args.prefix, url=args.url, api_key=args.api_key,
        retag=not args.keep_tags, cleanup=args.cleanup,
    )
    print(f"loaded {len(done)} corrected mask(s) into {ann.corrected_field(args.prefix)}")
    return 0
