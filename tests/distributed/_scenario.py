"""Commands the Ray tests run inside the cluster's network namespace (the test process
itself stays outside it, so it reaches the database and the cluster only through these).

    python -m tests.distributed._scenario make NAME N IMGDIR
    python -m tests.distributed._scenario label NAME OUTDIR [--ray ADDR] [--workers N] [--cpus C]
                                         [--status FILE] [--write-every K] [--segmenter S]
    python -m tests.distributed._scenario operator NAME OUTDIR --ray ADDR [--workers N]
    python -m tests.distributed._scenario segtrain NAME MODEL
    python -m tests.distributed._scenario seglabel NAME OUTDIR MODEL [--ray ADDR] [--workers N] [--status FILE]
    python -m tests.distributed._scenario dump NAME OUTDIR JSON
    python -m tests.distributed._scenario wait-nodes N
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import torch

# one torch thread everywhere: the thread count is part of the arithmetic, and Ray
# workers default to the driver's count, so the in-process reference matches them
torch.set_num_threads(1)

CFG = dict(explain_size=96)
BAD = 5  # index of the sample whose image is unreadable


def _status(path: str | None, **kw) -> None:
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(kw, f)
        os.replace(tmp, path)


def make(a) -> None:
    import fiftyone as fo  # noqa: F401

    from tests.fo._data import make_dataset

    ds = make_dataset(a.imgdir, a.name, n=a.n)
    ds.persistent = True
    # one unreadable image: it must fail alone, never its batch
    with open(ds.values("filepath")[BAD], "wb") as f:
        f.write(b"not an image")


def label(a) -> None:
    import fiftyone as fo

    import ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig

    ds = fo.load_dataset(a.name)
    state: dict = {"workers": [], "done": 0}

    def on_workers(infos):
        state["workers"] = infos
        _status(a.status, **state)

    def progress(done, total):
        state["done"], state["total"] = done, total
        state.setdefault("history", []).append(done)
        _status(a.status, **state)

    kw = dict(segmenter=a.segmenter, config=EWCConfig(**CFG), batch_size=2, write_every=a.write_every,
              progress_bar=False, output_dir=a.outdir, progress=progress)
    if a.ray:
        from ewc_fo.distributed.ray_runner import label_on_ray

        summary = label_on_ray(ds, "labels", ray_address=a.ray, workers=a.workers,
                               cpus_per_worker=a.cpus, on_workers=on_workers, **kw)
    else:
        summary = ewc_fo.label(ds, "labels", **kw)
    _status(a.status, finished=True, succeeded=summary.succeeded, skipped=summary.skipped_done,
            errors=dict(summary.errors), **state)
    print(summary)


def operator(a) -> None:
    """The plugin's compute operator, run on the cluster (``ray_address``); prints its result."""
    import fiftyone as fo
    import fiftyone.operators as foo

    fo.config.plugins_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "plugins")
    # the operator writes only under the export root (or ewc-fo's folder): the cluster's tmp here
    os.environ["EWC_FO_EXPORT_ROOT"] = os.path.dirname(os.path.abspath(a.outdir))
    ds = fo.load_dataset(a.name)
    res = foo.get_operator("@ewc-fo/ewc/compute_ewc")(
        ds, "labels", segmenter="grabcut", explain_size=CFG["explain_size"], batch_size=2,
        output_dir=a.outdir, ray_address=a.ray, workers=a.workers)
    res = getattr(res, "result", res)  # an ExecutionResult, or its result when run immediately
    print(json.dumps({k: v for k, v in res.items() if k in ("labeled", "already_done", "failed")}))


def segtrain(a) -> None:
    """A small segmentation model (``ewc-fo train-seg``'s kind) for the dataset's classes, trained
    on a box around each readable image's centre: what it learnt matters less than that every
    worker loads the same file."""
    import fiftyone as fo
    import numpy as np

    from ewc_fo.models.classifier import IMAGENET_MEAN, IMAGENET_STD
    from ewc_fo.models.seg_checkpoint import save_seg_model
    from ewc_fo.models.seg_train import SegTrainConfig, train_segnet

    ds = fo.load_dataset(a.name)
    paths = [p for k, p in enumerate(ds.values("filepath")) if k != BAD]
    labels = [c.classifications[0].label for k, c in enumerate(ds.values("labels")) if k != BAD]
    names = sorted(set(labels))
    masks = []
    for lab in labels:
        m = np.zeros((64, 64), np.int64)
        m[16:48, 16:48] = names.index(lab) + 1
        masks.append(m)
    cfg = SegTrainConfig(input_size=64, width=16, epochs=2, batch_size=4)
    res = train_segnet(paths, masks, [np.ones(len(names) + 1, np.float32)] * len(paths), len(names), cfg,
                       threads=1)
    save_seg_model(res.model, {"backbone": "efficientnet_lite0", "class_names": names, "input_size": 64,
                               "width": 16, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                               "trainable_prefixes": ["decoder"]}, a.model)


def seglabel(a) -> None:
    """Label with the segmentation model, in-process or on the cluster (prefix ``ewc``, as ``dump`` reads)."""
    import fiftyone as fo

    import ewc_fo

    ds = fo.load_dataset(a.name)
    state: dict = {"workers": [], "done": 0}

    def on_workers(infos):
        state["workers"] = infos
        _status(a.status, **state)

    def progress(done, total):
        state["done"], state["total"] = done, total
        _status(a.status, **state)

    kw = dict(segmentation_model=a.model, batch_size=2, write_every=2, progress_bar=False,
              output_dir=a.outdir, progress=progress)
    if a.ray:
        from ewc_fo.distributed.ray_runner import label_on_ray

        summary = label_on_ray(ds, "labels", ray_address=a.ray, workers=a.workers, on_workers=on_workers, **kw)
    else:
        summary = ewc_fo.label(ds, "labels", **kw)
    _status(a.status, finished=True, succeeded=summary.succeeded, skipped=summary.skipped_done,
            errors=dict(summary.errors), **state)
    print(summary)


def _digest(path: str) -> str:
    if path.endswith(".npz"):  # zip entries carry a timestamp: compare the arrays
        import numpy as np

        with np.load(path) as z:
            h = hashlib.sha256()
            for k in sorted(z.files):
                h.update(k.encode() + z[k].tobytes() + str(z[k].dtype).encode())
            return h.hexdigest()
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def dump(a) -> None:
    """Every field of the run and a digest of every file it points to, by image name."""
    import fiftyone as fo

    ds = fo.load_dataset(a.name)
    rec = ds.get_run_info("ewc").config.serialize() if "ewc" in ds.list_runs() else {}
    fields = sorted(f for f in ds.get_field_schema() if f.startswith("ewc_"))
    # not len(ds): MongoDB's estimated count, 0 after the database was killed
    out = {"n_samples": len(ds.values("id")), "fields": fields, "status": rec.get("status"),
           "views": rec.get("views"), "segmenter": (rec.get("segmenter") or {}).get("name"), "samples": {}}
    root = os.path.abspath(a.outdir)

    # files are named by sample id, which differs between datasets: name them by image
    id2name = {s.id: os.path.basename(s.filepath) for s in ds.select_fields()}

    def rename(path):
        for sid, name in id2name.items():
            path = path.replace(sid, name)
        return path

    imgdir = os.path.dirname(ds.first().filepath)

    def norm(v):
        if isinstance(v, str):  # error messages name the image: each dataset has its own copy
            v = v.replace(imgdir, "<images>")
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if k not in ("_id", "id")}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, str) and v.startswith(root):
            return {"file": rename(v[len(root):]), "sha256": _digest(v)}
        return v

    for s in ds:
        vals = {}
        for f in fields:
            v = s[f]
            vals[f] = norm(v.to_dict() if hasattr(v, "to_dict") else v)
        out["samples"][id2name[s.id]] = vals
    files = []
    for dirpath, _, names in os.walk(root):
        # a killed process can leave a temp file behind (writes are temp + rename): not a result
        files += [rename(os.path.relpath(os.path.join(dirpath, n), root)) for n in names
                  if not n.startswith("tmp")]
    out["files"] = sorted(files)
    with open(a.json, "w") as f:
        # instance masks come as BSON binary: compare their bytes by digest
        json.dump(out, f, sort_keys=True, default=lambda o: "sha256:" + hashlib.sha256(bytes(o)).hexdigest())


def wait_nodes(a) -> None:
    import ray

    ray.init(address=a.address, log_to_driver=False, logging_level="warning")
    deadline = time.time() + 120
    while time.time() < deadline:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if len(alive) >= a.n:
            return
        time.sleep(0.5)
    sys.exit(f"only {len(alive)} of {a.n} Ray nodes came up")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("name")
    m.add_argument("n", type=int)
    m.add_argument("imgdir")
    m.set_defaults(func=make)
    lab = sub.add_parser("label")
    lab.add_argument("name")
    lab.add_argument("outdir")
    lab.add_argument("--ray", default=None)
    lab.add_argument("--workers", type=int, default=2)
    lab.add_argument("--cpus", type=float, default=1.0)
    lab.add_argument("--status", default=None)
    lab.add_argument("--write-every", type=int, default=32)
    lab.add_argument("--segmenter", default="grabcut")  # sam-onnx: the pair $EWC_SAM_ONNX names
    lab.set_defaults(func=label)
    o = sub.add_parser("operator")
    o.add_argument("name")
    o.add_argument("outdir")
    o.add_argument("--ray", required=True)
    o.add_argument("--workers", type=int, default=2)
    o.set_defaults(func=operator)
    st = sub.add_parser("segtrain")
    st.add_argument("name")
    st.add_argument("model")
    st.set_defaults(func=segtrain)
    sl = sub.add_parser("seglabel")
    sl.add_argument("name")
    sl.add_argument("outdir")
    sl.add_argument("model")
    sl.add_argument("--ray", default=None)
    sl.add_argument("--workers", type=int, default=2)
    sl.add_argument("--status", default=None)
    sl.set_defaults(func=seglabel)
    d = sub.add_parser("dump")
    d.add_argument("name")
    d.add_argument("outdir")
    d.add_argument("json")
    d.set_defaults(func=dump)
    w = sub.add_parser("wait-nodes")
    w.add_argument("address")
    w.add_argument("n", type=int)
    w.set_defaults(func=wait_nodes)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
