"""What a Ray cluster costs and buys, and how fast one driver writes a big run.

Part 1, on the first N images of ``../shared/data/voc_dev`` (classifier input 224 px,
maps at most 320 px, GrabCut): the in-process run against
Ray with 1 and 2 workers (one torch thread each, a local Ray cluster), each in a fresh
subprocess: s/img, Ray's overhead at 1 worker (target <= 10 %) and the speed-up at 2 workers
(target >= 1.7x on 2 cores), both against the in-process run held to one core (one Ray worker's
share: one thread for torch, the per-image steps and GrabCut), plus the in-process run on
every core, and the database's share of wall time. The classifier is EfficientNet-Lite0 with a
random VOC head (speed does not depend on how good it is).

Part 2, what a real cluster stresses: the run's fields for S simulated samples written by
W concurrent writers (processes, each the driver's own ``flush`` with ``write_every``-sized
batches) to a mongod server: samples written per second, and each writer's peak memory
at S/10 and S samples (flat: a writer holds one batch, not the run).

Both parts start a private ``mongod`` (FiftyOne's binary) and delete it afterwards. Ray
binds the machine's outward address (it never uses loopback), so run the benchmark inside
a network namespace with only ``lo`` up (root), where every connection stays on 127.0.0.1:

    ip netns add ewcbench && ip netns exec ewcbench ip link set lo up
    ip netns exec ewcbench python benchmarks/scale.py      # 24 images; 100k samples, 4 writers
    ip netns exec ewcbench python benchmarks/scale.py --images 8 --samples 20000
    ip netns del ewcbench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "voc_dev"


def label_child(data: str, n: int, workers: int) -> dict:
    """One run; workers 0 = in-process on every core, -1 = in-process on one core (the
    compute share of one Ray worker: its per-image and GrabCut pools then have one thread)."""
    if workers < 0:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)
    import ewc_fo
    from ewc_fo.engine.pipeline import EWCConfig
    from ewc_fo.fo.io.importers import VOC_CLASSES, import_voc
    from ewc_fo.models.classifier import Classifier
    from ewc_fo.models.fitting import build_fitted_model
    from ewc_fo.segmenters import create_segmenter

    name = "ewc-rayscale-onecore" if workers < 0 else f"ewc-rayscale-{workers}"
    ds = import_voc(name, data, overwrite=True, max_samples=n)
    torch.manual_seed(0)
    model, mean, std = build_fitted_model("efficientnet_lite0", 20)
    # 224 px and maps at most 320 px: three engines (in-process, or a driver and two workers)
    # must fit next to each other on a small machine
    clf = Classifier.from_module(model, VOC_CLASSES[1:], layers=model.backbone.layers,
                                 mean=mean, std=std, multilabel=True, input_size=224)
    cfg = EWCConfig(max_side=320)
    kw = {"ray_address": "local", "workers": workers, "threads_per_worker": 1} if workers > 0 else {}
    if workers > 0:
        import ray

        ray.init(num_cpus=2, log_to_driver=False, logging_level="warning", include_dashboard=False)
    t = time.perf_counter()
    s = ewc_fo.label(ds, "labels", classifier=clf, segmenter=create_segmenter("grabcut"), config=cfg,
                     progress_bar=False, overwrite=True, **kw)
    wall = time.perf_counter() - t
    return {"workers": workers, "n": n, "labeled": s.succeeded, "failed": sum(s.errors.values()),
            "wall_s": wall, "write_s": s.write_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "confidence": ds.values(f"{s.prefix}_confidence")}


def write_child(name: str, lo: int, hi: int, write_every: int) -> dict:
    """Write simulated results for samples [lo, hi) of dataset ``name`` through ``flush``."""
    import fiftyone as fo

    from ewc_fo.fo.runs import record as runs
    from ewc_fo.fo.runs.sample_values import flush

    ds = fo.load_dataset(name)
    names = runs.field_names("ewc", ["gradcam"])
    ids = ds.skip(lo).limit(hi - lo).values("id")
    t = time.perf_counter()
    pending = []
    for i, sid in enumerate(ids):
        pending.append((sid, _simulated(sid, i)))
        if len(pending) >= write_every:
            flush(ds, pending, names)
            pending = []
    flush(ds, pending, names)
    return {"n": len(ids), "s": time.perf_counter() - t,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _simulated(sid: str, i: int) -> dict:
    import fiftyone as fo

    out = "/nonexistent/ewc"
    return {
        "mask": fo.Segmentation(mask_path=f"{out}/masks/{sid}.png"),
        "instances": fo.Detections(detections=[fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.5, 0.5],
                                                            confidence=0.8)]),
        "agreement": 0.5 + (i % 10) / 100, "mass_inside": 0.7, "class_confidence": {"cat": 0.6},
        "scores": {"gradcam": {"quality": 0.5, "concentration": 0.4}},
        "heatmap_gradcam": fo.Heatmap(map_path=f"{out}/heatmaps/{sid}_gradcam.png", range=[0, 255]),
        "heatmap_fused": fo.Heatmap(map_path=f"{out}/heatmaps/{sid}_fused.png", range=[0, 255]),
        "maps_path": f"{out}/maps/{sid}.npz", "confidence": 0.6,
    }


def _run_child(args: list[str], env: dict) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def write_part(samples: int, writers: int, write_every: int, env: dict) -> list[dict]:
    rows = []
    for total in (samples // 10, samples):
        name = f"ewc-writes-{total}"
        setup = (
            "import fiftyone as fo, sys\n"
            "from ewc_fo.fo import runs\n"
            "from ewc_fo.fo.runs.plan import _declare_fields\n"
            f"n = {total}\n"
            f"ds = fo.Dataset('{name}', overwrite=True); ds.persistent = True\n"
            "ds.add_samples([fo.Sample(filepath=f'/nonexistent/{i}.jpg') for i in range(n)], progress=False)\n"
            "_declare_fields(ds, runs.field_names('ewc', ['gradcam']))\n"
        )
        subprocess.run([sys.executable, "-c", setup], check=True, env=env)
        step = -(-total // writers)
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--write-child", name, str(lo),
                                   str(min(lo + step, total)), str(write_every)],
                                  stdout=subprocess.PIPE, text=True, env=env)
                 for lo in range(0, total, step)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.perf_counter() - t
        check = subprocess.run([sys.executable, "-c", f"import fiftyone as fo; ds = fo.load_dataset('{name}'); "
                                "print(len(ds.exists('ewc_confidence'))); ds.delete()"],
                               capture_output=True, text=True, env=env, check=True)
        rows.append({"samples": total, "writers": len(procs), "wall_s": wall, "written": int(check.stdout.split()[-1]),
                     "max_rss_mb": max(o["rss_mb"] for o in outs)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--write-every", type=int, default=256)
    p.add_argument("--skip-label", action="store_true")
    p.add_argument("--label-child", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--write-child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.label_child:
        d, n, w = args.label_child
        print(json.dumps(label_child(d, int(n), int(w))))
        return 0
    if args.write_child:
        name, lo, hi, every = args.write_child
        print(json.dumps(write_child(name, int(lo), int(hi), int(every))))
        return 0

    from tests._mongod import start_mongod, stop

    tmp = tempfile.mkdtemp(prefix="ewc_scale_")
    proc, uri = start_mongod(os.path.join(tmp, "db"))
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri, "FIFTYONE_DATABASE_VALIDATION": "false",
           "FIFTYONE_DEFAULT_DATASET_DIR": os.path.join(tmp, "datasets"), "FIFTYONE_DO_NOT_TRACK": "true",
           "PYTHONPATH": str(HERE.parent), "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    try:
        if not args.skip_label:
            rows = [_run_child(["--label-child", args.data, str(args.images), str(w)], env) for w in (-1, 0, 1, 2)]
            print(f"Part 1: {args.images} voc_dev images, GrabCut, 1 torch thread per process\n")
            print("| run | wall s | s/img | DB writes % of wall | vs in-process, 1 core | driver peak RSS MB |")
            print("|---|---|---|---|---|---|")
            base = rows[0]["wall_s"]  # one core: what one Ray worker (1 thread) gets
            for r in rows:
                what = {-1: "in-process, 1 core", 0: "in-process, all cores"}.get(
                    r["workers"], f"Ray, {r['workers']} worker(s)")
                print(f"| {what} | {r['wall_s']:.1f} | {r['wall_s'] / r['n']:.2f} | "
                      f"{100 * r['write_s'] / r['wall_s']:.1f}% | {base / r['wall_s']:.2f}x | "
                      f"{r['peak_rss_mb']:.0f} |")
            print(f"\nRay overhead at 1 worker (vs in-process on 1 core): {100 * (rows[2]['wall_s'] / base - 1):.1f}% "
                  f"(target <= 10%); speed-up at 2 workers: {base / rows[3]['wall_s']:.2f}x (target >= 1.7x); "
                  f"2 workers vs in-process on all cores: {rows[1]['wall_s'] / rows[3]['wall_s']:.2f}x")
            same = all(r["confidence"] == rows[0]["confidence"] for r in rows)
            print(f"confidences bit-identical across the four runs: {same}\n")
        wrows = write_part(args.samples, args.writers, args.write_every, env)
        print(f"Part 2: simulated run fields, {args.writers} concurrent writers, "
              f"set_values batches of {args.write_every}\n")
        print("| samples | writers | wall s | samples/s | written | peak RSS per writer MB |")
        print("|---|---|---|---|---|---|")
        for r in wrows:
            print(f"| {r['samples']} | {r['writers']} | {r['wall_s']:.1f} | {r['samples'] / r['wall_s']:.0f} | "
                  f"{r['written']} | {r['max_rss_mb']:.0f} |")
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
