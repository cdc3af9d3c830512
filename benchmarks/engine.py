"""Engine benchmark: per-stage time and memory of EWC, plus two overhead ratios.

Runs on the first N images of a VOC-style folder (read in place, never copied) with
the offline EfficientNet-Lite0; each image's target is the classifier's top-1 class.

Stages (batch sizes 1 and 8, GrabCut segmenter):
  explain_cam    all default CAM-family explainers via ``explain`` (one forward+backward)
  explain_attr   the default captum attribution (input_x_gradient) via ``explain``
  quality        one prompt per explainer map + ``segment_many`` (GrabCut)
  final          fuse + one prompt + ``segment_many``
  merge          per-class masks -> label map at full size

Ratios (measured in the same run, same batch / same image):
  (1) ``explain(...)`` with all default CAMs  ÷  one plain ``GradCAM(model, layers)(x, targets)``
  (2) SAM2 stage (set_image + K explainer prompts + final prompt)  ÷  set_image + one predict,
      SAM2 tiny config with random weights (timings do not depend on the weights).
  (3) the same for the ONNX SAM backend (MobileSAM from setup.sh), proposals included.
  (4) ONNX SAM int8 ÷ fp32 (``precision="int8"``: the encoder's int8 dynamic-quantized copy),
      the encoder alone and the whole stage of (3), at ``--threads`` intra-op threads;
  (5) ONNX SAM fp32 at 2 ÷ 1 intra-op threads, the encoder alone and the whole stage.

    python benchmarks/engine.py --n 16 --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewc_fo.engine.explain import explain  # noqa: E402
from ewc_fo.engine.explainers import create_explainer, list_explainers  # noqa: E402
from ewc_fo.engine.maps import downscale, merge  # noqa: E402
from ewc_fo.engine.prompts import PromptConfig, make_prompt  # noqa: E402
from ewc_fo.engine.scoring import ScoreConfig, agreement, combine, concentration, fuse  # noqa: E402
from ewc_fo.models.classifier import Classifier
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.images import load_image  # noqa: E402
from ewc_fo.segmenters import GrabCutSegmenter, create_segmenter  # noqa: E402

DEFAULT_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "voc_dev" / "JPEGImages")
CAMS = [n for n in list_explainers(defaults_only=True) if create_explainer(n).family == "cam"]
ATTR = ["input_x_gradient"]


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object, float]:
    """(median seconds, last result, growth of the process's peak RSS in MiB).

    Peak RSS (``ru_maxrss``) is a high-water mark: a stage shows growth only when it
    needs more memory than anything before it, which is what sizing a machine needs.
    It is cheap, unlike tracemalloc, which would slow the timed code down.
    """
    times, out = [], None
    before = rss_mib()
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out, rss_mib() - before


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_table(clf: Classifier, images: list[np.ndarray], targets: list[list[int]],
                batch_size: int, max_side: int) -> dict[str, tuple[float, float]]:
    """Seconds per image, and peak-RSS growth (MiB) of each stage over all images."""
    seg = GrabCutSegmenter()
    pc, sc = PromptConfig(), ScoreConfig()
    acc = {k: [0.0, 0.0] for k in ("explain_cam", "explain_attr", "quality", "final", "merge")}

    def add(k, t, m):
        acc[k][0] += t
        acc[k][1] += m

    for i in range(0, len(images), batch_size):
        full = images[i:i + batch_size]
        work = [downscale(im, max_side) for im in full]
        cls = targets[i:i + batch_size]
        t, cam_out, m = timed(lambda work=work, cls=cls: explain(clf, work, cls, CAMS))
        add("explain_cam", t, m)
        t, attr_out, m = timed(lambda work=work, cls=cls: explain(clf, work, cls, ATTR))
        add("explain_attr", t, m)
        for im, wk, co, ao in zip(full, work, cam_out, attr_out):
            maps = np.concatenate([co.maps, ao.maps])[:, 0]  # (K, h, w), one class

            def quality(wk=wk, maps=maps):
                seg.set_image(wk)
                # as EWC does: explainer prompts only score, so GrabCut may run its draft level
                segs = seg.segment_many([make_prompt(mp, pc) for mp in maps], draft=True)
                return np.array([s.quality for s in segs])

            t, q, m = timed(quality)
            add("quality", t, m)

            def final(maps=maps, q=q):
                _, w = combine(concentration(maps), agreement(maps), q, sc)
                f = fuse(maps, w)
                return f, seg.segment_many([make_prompt(f, pc)])[0].mask

            t, (f, mask), m = timed(final)
            add("final", t, m)
            t, _, m = timed(lambda f=f, mask=mask, im=im: merge(
                f[None], [_resize(mask, im.shape[:2])], im.shape[:2]))
            add("merge", t, m)
    n = len(images)
    return {k: (v[0] / n, v[1]) for k, v in acc.items()}


def _resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)


def cam_ratio(clf: Classifier, images: list[np.ndarray], targets: list[list[int]],
              repeat: int) -> tuple[float, float, float]:
    """explain(all default CAMs) ÷ one plain pytorch-grad-cam GradCAM call, same batch."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = clf.preprocess(images)
    tg = [ClassifierOutputTarget(c[0]) for c in targets]
    with GradCAM(model=clf.model, target_layers=[clf.layers[clf.default_layer]]) as cam:
        cam(x, tg)  # warm-up
        t_base, _, _ = timed(lambda: cam(x, tg), repeat)
    explain(clf, images, targets, CAMS)  # warm-up
    t_ours, _, _ = timed(lambda: explain(clf, images, targets, CAMS), repeat)
    return t_ours, t_base, t_ours / t_base


def sam2_ratio(image: np.ndarray, maps: np.ndarray, repeat: int) -> tuple[float, float, float]:
    """SAM2 stage (set_image + K quality prompts + final prompt) ÷ set_image + one predict."""
    seg = create_segmenter("sam2", checkpoint="random")
    pc = PromptConfig()
    prompts = [make_prompt(m, pc) for m in maps]
    fused = maps.mean(0)
    box = next((p.regions[0].box for p in prompts if p.regions), np.array([0, 0, 10, 10], np.float32))

    def baseline():
        with torch.inference_mode():
            seg.predictor.set_image(image)
            seg.predictor.predict(box=box, multimask_output=False)

    def ours():
        seg.set_image(image)
        seg.segment_many(prompts, draft=True)
        seg.segment_many([make_prompt(fused, pc)])

    baseline()  # warm-up
    t_base, _, _ = timed(baseline, repeat)
    t_ours, _, _ = timed(ours, repeat)
    return t_ours, t_base, t_ours / t_base


def _onnx_sam_stage(seg, image: np.ndarray, maps: np.ndarray):
    """(embed, one box decode, the whole stage) of the ONNX SAM on one image: the stage is
    embed + K quality prompts + final prompt + proposals on the default grid, as EWC runs it."""
    from ewc_fo.engine.config import DEFAULT_PROPOSAL_GRID
    from ewc_fo.engine.proposals import grid_points

    pc = PromptConfig()
    prompts = [make_prompt(m, pc) for m in maps]
    fused = maps.mean(0)
    box = next((p.regions[0].box for p in prompts if p.regions), np.array([0, 0, 10, 10], np.float32))

    def embed():
        seg.set_images([image])

    def baseline():
        embed()
        seg.decode(0, np.array([box[:2], box[2:]], np.float32), np.array([2, 3], np.float32))

    def stage():
        embed()
        seg.segment_images([prompts])
        seg.segment_images([[make_prompt(fused, pc)]])
        seg.propose(0, grid_points(fused[None], [1.0], DEFAULT_PROPOSAL_GRID, 0.3))

    return embed, baseline, stage


def onnx_sam_ratio(image: np.ndarray, maps: np.ndarray, repeat: int) -> tuple[float, float, float]:
    """ONNX SAM stage (embed + K quality prompts + final prompt + proposals on the 8 x 8 grid)
    ÷ embed + one box decode: what the method adds on top of one SAM call (MobileSAM, setup.sh)."""
    seg = create_segmenter("sam-onnx", threads=torch.get_num_threads())
    _, baseline, ours = _onnx_sam_stage(seg, image, maps)
    baseline()  # warm-up
    t_base, _, _ = timed(baseline, repeat)
    t_ours, _, _ = timed(ours, repeat)
    return t_ours, t_base, t_ours / t_base


def onnx_sam_settings(image: np.ndarray, maps: np.ndarray, repeat: int, threads: int
                      ) -> dict[tuple[str, int], tuple[float, float]]:
    """(encoder s, whole stage s) per (precision, intra-op threads): fp32 and int8 at
    ``threads``, and fp32 at 1 and 2 threads, each timed in turn in this one process."""
    out = {}
    for prec, th in dict.fromkeys([("fp32", threads), ("int8", threads), ("fp32", 1), ("fp32", 2)]):
        seg = create_segmenter("sam-onnx", threads=th, precision=prec)
        embed, _, stage = _onnx_sam_stage(seg, image, maps)
        embed()  # warm-up
        t_enc, _, _ = timed(embed, repeat)
        t_stage, _, _ = timed(stage, repeat)
        out[prec, th] = (t_enc, t_stage)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=DEFAULT_DIR, help="folder of JPEG/PNG images (read in place)")
    ap.add_argument("--n", type=int, default=16, help="number of images (first N by name)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-side", type=int, default=640, help="working resolution (EWCConfig.max_side)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV intra-op threads")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions for the ratios (median)")
    ap.add_argument("--skip-sam2", action="store_true", help="skip the SAM2 ratio (slow on CPU)")
    ap.add_argument("--skip-sam-onnx", action="store_true", help="skip the ONNX SAM ratio")
    args = ap.parse_args(argv)

    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    files = sorted(p for p in Path(args.images).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    if not files:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    rss0 = rss_mib()
    clf = load_classifier("efficientnet_lite0")
    images = [load_image(p) for p in files]
    work = [downscale(im, args.max_side) for im in images]
    targets = [[int(p.argmax())] for p in clf.predict(work)]
    print(f"# EWC engine benchmark: {len(images)} images from {args.images}, "
          f"EfficientNet-Lite0 @ {clf.input_size}px, max_side {args.max_side}, "
          f"{args.threads} thread(s), torch {torch.__version__}\n")
    print("| batch | explain_cam | explain_attr | quality | final | merge | total / image "
          "| peak RSS growth (MiB, by stage) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for bs in args.batch_sizes:
        st = stage_table(clf, images, targets, bs, args.max_side)
        total = sum(t for t, _ in st.values())
        cells = " | ".join(f"{st[k][0] * 1000:.0f} ms" for k in st)
        growth = " / ".join(f"{m:.0f}" for _, m in st.values())
        print(f"| {bs} | {cells} | {total * 1000:.0f} ms | {growth} | {rss_mib():.0f} |")
    print("\n(times per image; RSS growth = rise of the process's peak RSS during each stage, "
          f"in stage order; {rss_mib() - rss0:.0f} MiB over the whole table)\n")

    bs = max(args.batch_sizes)
    t_ours, t_base, r1 = cam_ratio(clf, work[:bs], targets[:bs], args.repeat)
    print("| ratio | ours | baseline | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (1) explain(all {len(CAMS)} default CAMs) ÷ GradCAM call, batch {len(work[:bs])} | "
          f"{t_ours * 1000:.0f} ms | {t_base * 1000:.0f} ms | {r1:.2f} | ≤ 1.5 |")
    if not args.skip_sam2:
        (o,) = explain(clf, work[:1], targets[:1], CAMS + ATTR)
        t_ours, t_base, r2 = sam2_ratio(work[0], o.maps[:, 0], args.repeat)
        print(f"| (2) SAM2 set_image + {len(o.names)} quality + 1 final prompts ÷ set_image + "
              f"predict | {t_ours * 1000:.0f} ms | {t_base * 1000:.0f} ms | {r2:.2f} | ≤ 1.3 |")
    from ewc_fo.segmenters import onnx_files

    if not args.skip_sam_onnx and (onnx_files.installed() or os.environ.get(onnx_files.ENV)):
        (o,) = explain(clf, work[:1], targets[:1], CAMS + ATTR)
        t_ours, t_base, r3 = onnx_sam_ratio(work[0], o.maps[:, 0], args.repeat)
        print(f"| (3) ONNX SAM embed + {len(o.names)} quality + 1 final prompts + proposals ÷ embed + "
              f"one decode | {t_ours * 1000:.0f} ms | {t_base * 1000:.0f} ms | {r3:.2f} | |")
        th = torch.get_num_threads()
        st = onnx_sam_settings(work[0], o.maps[:, 0], args.repeat, th)
        for j, what in enumerate(("encoder alone", "whole ONNX SAM stage (as in 3)")):
            a, b = st["int8", th][j], st["fp32", th][j]
            print(f"| (4) int8 ÷ fp32, {what}, {th} thread(s) | {a * 1000:.0f} ms | "
                  f"{b * 1000:.0f} ms | {a / b:.2f} | |")
        for j, what in enumerate(("encoder alone", "whole ONNX SAM stage (as in 3)")):
            a, b = st["fp32", 2][j], st["fp32", 1][j]
            print(f"| (5) 2 ÷ 1 intra-op threads, fp32, {what} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | "
                  f"{a / b:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
