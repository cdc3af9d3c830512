"""Reliability sweep: odd and broken inputs through decode + EWC, counting how each ends.

Every case is a file (or label list) a user could feed a run: corrupted bytes of common
formats (seeded truncations and byte flips), odd PIL modes, EXIF orientations, tiny and
huge images, flat and near-flat images (which hung GrabCut before its guard), a sample
with more classes than ``Limits.max_classes``, and real photos. Each is decoded with
``load_image`` and labeled with ``EWC.run(..., errors="return")`` (EfficientNet-Lite0,
GrabCut, its top-1 class, a 60 s per-sample budget). An outcome is "labeled", a clear
per-sample error (its kind), or LOST: any other exception or a result that never came.

    python benchmarks/reliability.py --corrupt 200
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewc_fo.engine.pipeline import EWC, EWCConfig  # noqa: E402
from ewc_fo.models.registry import load_classifier
from ewc_fo.runtime.budget import Limits  # noqa: E402
from ewc_fo.runtime.errors import EWCError  # noqa: E402
from ewc_fo.runtime.images import load_image  # noqa: E402
from ewc_fo.segmenters import GrabCutSegmenter  # noqa: E402
from ewc_fo.testing import synthetic_image  # noqa: E402

VOC = Path(__file__).resolve().parents[2] / "shared" / "data" / "voc_dev" / "JPEGImages"


def cases(root: Path, n_corrupt: int, photos: list[Path]) -> list[tuple[str, Path, int]]:
    """(category, file, number of classes) for every case, written under ``root``."""
    out: list[tuple[str, Path, int]] = []
    base = Image.fromarray(synthetic_image((120, 160)))

    def save(cat: str, name: str, im: Image.Image, n: int = 1, **kw) -> None:
        p = root / name
        im.save(p, **kw)
        out.append((cat, p, n))

    valid = {}
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("GIF", "P"),
                      ("TIFF", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB"), ("PNG", "I;16")]:
        buf = io.BytesIO()
        base.convert(mode).save(buf, fmt)
        valid[(fmt, mode)] = buf.getvalue()
    rng = np.random.default_rng(0)
    keys = sorted(valid)
    for i in range(n_corrupt):
        fmt, mode = keys[i % len(keys)]
        data = bytearray(valid[(fmt, mode)])
        if rng.random() < 0.5:
            data = data[: int(rng.integers(0, len(data)))]
        for _ in range(int(rng.integers(0, 6))):
            if data:
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
        p = root / f"corrupt_{i:03d}.{fmt.lower()}"
        p.write_bytes(bytes(data))
        out.append(("corrupt bytes", p, 1))
    for mode in ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "I", "F", "I;16", "YCbCr", "LAB"]:
        try:
            save("odd modes (TIFF)", f"mode_{mode.replace(';', '_')}.tif", base.convert(mode))
        except (OSError, ValueError, KeyError):
            pass
    for o in range(1, 9):
        ex = base.getexif()
        ex[0x0112] = o
        save("EXIF orientations", f"exif_{o}.jpg", base, exif=ex.tobytes())
    for shape in [(1, 1), (1, 500), (8, 8), (7, 300)]:
        save("tiny", f"tiny_{shape[0]}x{shape[1]}.png", Image.fromarray(synthetic_image(shape) if min(shape) >= 8
                                                                         else np.zeros((*shape, 3), np.uint8)))
    save("huge", "huge_10000.png", Image.new("L", (10000, 10000)))
    for v in [0, 50, 128, 200, 255, (200, 30, 30)]:
        a = np.zeros((400, 500, 3), np.uint8)
        a[:] = v
        save("flat", f"flat_{v}.png".replace(" ", ""), Image.fromarray(a))
    a = np.full((400, 500, 3), 200, np.uint8)
    a[0, 0] = 0
    save("near-flat", "near_flat_pixel.png", Image.fromarray(a))
    a = np.full((400, 500, 3), 50, np.uint8)
    a[:30, :30] = rng.integers(0, 255, (30, 30, 3))
    save("near-flat", "near_flat_patch.png", Image.fromarray(a))
    for p in photos:
        out.append(("photos", p, 1))
    if photos:
        out.append(("too many classes", photos[0], 80))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corrupt", type=int, default=200, help="number of corrupted files")
    ap.add_argument("--photos", type=int, default=4, help="real voc_dev photos")
    ap.add_argument("--explain-size", type=int, default=224)
    ap.add_argument("--images", default=str(VOC), help="folder of real photos (read in place)")
    a = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    clf = load_classifier("efficientnet_lite0")
    ewc = EWC(clf, GrabCutSegmenter(), EWCConfig(explain_size=a.explain_size), Limits(sample_timeout_s=60))
    photos = sorted(Path(a.images).glob("*.jpg"))[: a.photos]
    table: dict[str, Counter] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for cat, path, n in cases(Path(tmp), a.corrupt, photos):
            c = table.setdefault(cat, Counter())
            try:
                img = load_image(path)
                top = [int(i) for i in clf.predict([img], a.explain_size)[0].argsort()[::-1][:n]]
                (r,) = ewc.run([img], [top], errors="return")
                c["labeled" if not isinstance(r, Exception) else r.kind] += 1
            except EWCError as e:
                c[e.kind] += 1
            except Exception as e:  # noqa: BLE001 - this is what the sweep counts
                c["LOST"] += 1
                print(f"LOST {path.name}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"{sum(sum(c.values()) for c in table.values())} cases in {time.perf_counter() - t0:.0f} s\n")
    print("| inputs | cases | labeled | clear per-sample errors (kind: n) | lost |")
    print("|---|---|---|---|---|")
    for cat, c in table.items():
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()) if k not in ("labeled", "LOST"))
        print(f"| {cat} | {sum(c.values())} | {c['labeled']} | {errs or '-'} | {c['LOST']} |")


if __name__ == "__main__":
    main()
