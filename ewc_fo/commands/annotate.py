"""``ewc-fo annotate``: send masks that need fixing to an annotation tool, load the fixes back."""

from __future__ import annotations

from ewc_fo.commands import _checks as chk
from ewc_fo.commands._common import add_dataset_args, load_view, required_group

SEND_ONLY = ("backend", "max_confidence", "no_rejected", "send_all", "include_accepted", "project_name", "launch")
LOAD_ONLY = ("keep_tags", "cleanup")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "annotate",
        help="send rejected / low-confidence masks to an annotation tool (Label Studio) and load the fixes",
        description="Uses FiftyOne's annotation API (docs/annotate.md). 'send' uploads the masks (a "
        "person's earlier fix, else the pseudo-mask) as one editable region per class; 'load' writes "
        "what people submitted to <prefix>_mask_corrected, which export prefers. URL and API key "
        "default to FiftyOne's annotation config (FIFTYONE_LABELSTUDIO_URL, FIFTYONE_LABELSTUDIO_API_KEY).",
    )
    req = required_group(p)
    req.add_argument("action", choices=["send", "load"], metavar="action",
                     help="send (upload samples for correction) or load (load what people submitted)")
    add_dataset_args(p, req)
    req.add_argument("--anno-key", required=True, help="FiftyOne annotation run key")
    p.add_argument("--prefix", default="ewc", help="prefix of the labeling run")
    p.add_argument("--url", help="annotation server URL")
    p.add_argument("--api-key", help="API key (prefer FIFTYONE_LABELSTUDIO_API_KEY)")
    send = p.add_argument_group("send")
    send.add_argument("--backend", help="FiftyOne annotation backend (default labelstudio)")
    send.add_argument("--max-confidence", type=chk.unit_float,
                      help="also send samples whose <prefix>_confidence is below this")
    send.add_argument("--no-rejected", action="store_true", help="do not send samples tagged ewc:reject")
    send.add_argument("--all", action="store_true", dest="send_all",
                      help="send every labeled sample of the dataset/view (accepted ones only with "
                      "--include-accepted)")
    send.add_argument("--include-accepted", action="store_true",
                      help="also send masks a reviewer accepted (tagged ewc:reviewed); off by default")
    send.add_argument("--project-name", help="name of the project in the tool")
    send.add_argument("--launch", action="store_true", help="open the tool in a browser")
    load = p.add_argument_group("load")
    load.add_argument("--keep-tags", action="store_true",
                      help="do not tag corrected samples ewc:reviewed nor untag ewc:reject")
    load.add_argument("--cleanup", action="store_true", help="delete the project on the server afterwards")
    p.set_defaults(func=run)


def run(args) -> int:
    from ewc_fo.runtime.errors import ConfigError

    chk.check_prefix(args.prefix)
    other = LOAD_ONLY if args.action == "send" else SEND_ONLY
    wrong = [n for n in other if getattr(args, n) not in (None, False)]
    if wrong:
        names = ", ".join("--" + ("all" if n == "send_all" else n.replace("_", "-")) for n in wrong)
        raise ConfigError(f"{names}: only for annotate {'load' if args.action == 'send' else 'send'}")
    if args.action == "send" and args.send_all and (args.max_confidence is not None or args.no_rejected):
        raise ConfigError("--all sends every sample; drop --max-confidence / --no-rejected")

    from ewc_fo.fo.review import annotate as ann
    view = load_view(args.dataset, args.view)
    if args.action == "send":
        if args.send_all:
            todo = view if args.include_accepted else ann.without_accepted(view)
        else:
            todo = ann.correction_candidates(view, args.prefix, max_confidence=args.max_confidence,
                                             rejected=not args.no_rejected, include_accepted=args.include_accepted)
        counts = ann.selection_counts(todo)
        extra = {"project_name": args.project_name} if args.project_name else {}
        ann.send_for_correction(
            todo, args.anno_key, args.prefix, backend=args.backend or "labelstudio", url=args.url,
            api_key=args.api_key, launch_editor=args.launch, **extra,
        )
        print(f"sent {len(todo)} sample(s) ({ann.describe_selection(counts)}) as annotation run {args.anno_key!r}; "
              f"when done: ewc-fo annotate load {args.dataset} --anno-key {args.anno_key}")
        return 0
    done = ann.load_corrections(
        view, args.anno_key, args.prefix, url=args.url, api_key=args.api_key,
        retag=not args.keep_tags, cleanup=args.cleanup,
    )
    print(f"loaded {len(done)} corrected mask(s) into {ann.corrected_field(args.prefix)}")
    return 0
