"""CUB-200-2011 as distributed, with its separate segmentations/ download if present."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image

from ewc_fo.fo.io.export import safe_name
from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    GT_MASK_FIELD,
    VOID,
    _add_samples,
    _finish,
    _write_index_png,
    default_media_dir,
    log,
    make_label,
    new_dataset,
)
from ewc_fo.runtime.errors import ConfigError


def import_cub(
    name: str,
    path: str | os.PathLike,
    *,
    segmentations_dir: str | os.PathLike | None = None,
    threshold: int = 128,
    label_field: str = DEFAULT_LABEL_FIELD,
    gt_field: str = GT_MASK_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """CUB-200-2011 as distributed: ``images/``, ``images.txt``, ``image_class_labels.txt``,
    ``classes.txt``, optional ``train_test_split.txt`` (tags ``train``/``test``).

    Class names drop the ``NNN.`` prefix (``001.Black_footed_Albatross`` ->
    ``Black_footed_Albatross``). The separate ``segmentations/`` download (looked for inside
    the folder, then next to it) becomes ``gt_field``: the annotators' soft mask binarised at
    ``threshold`` (>= 128 = majority of annotators) and set to the image's class id.
    """
    root = Path(path).expanduser()
    need = ["images.txt", "image_class_labels.txt", "classes.txt"]
    if not all((root / n).is_file() for n in need) or not (root / "images").is_dir():
        raise ConfigError(f"{root} is not a CUB-200-2011 folder (needs images/ and {', '.join(need)})")

    def table(fname: str) -> dict[str, str]:
        rows = (ln.split(maxsplit=1) for ln in (root / fname).read_text().splitlines() if ln.strip())
        return {r[0]: r[1].strip() for r in rows if len(r) == 2}

    images, img_cls, classes = table("images.txt"), table("image_class_labels.txt"), table("classes.txt")
    split = table("train_test_split.txt") if (root / "train_test_split.txt").is_file() else {}
    class_names = {int(k): re.sub(r"^\d+\.", "", v) for k, v in classes.items()}
    if max(class_names, default=0) >= VOID:
        raise ConfigError("CUB class ids must be < 255 to fit a uint8 mask")
    if segmentations_dir is not None:
        seg_root: Path | None = Path(segmentations_dir).expanduser()
    else:
        seg_root = next(
            (c for c in (root / "segmentations", root.parent / "segmentations") if c.is_dir()), None
        )
    out = Path(media_dir).expanduser() if media_dir else default_media_dir(name)
    ds = new_dataset(name, overwrite)

    def gen() -> Iterator[fo.Sample]:
        for iid in sorted(images, key=lambda k: int(k) if k.isdigit() else k):
            rel = images[iid]
            fp = root / "images" / rel
            if not fp.is_file():
                log.warning("CUB image not found, skipped: %s", fp)
                continue
            cid = int(img_cls[iid]) if iid in img_cls else None
            tags = [{"1": "train", "0": "test"}[split[iid]]] if split.get(iid) in ("0", "1") else []
            s = fo.Sample(filepath=str(fp.resolve()), tags=tags)
            if cid is not None:
                s[label_field] = make_label([class_names.get(cid, str(cid))], multi=False)
            sp = seg_root / Path(rel).with_suffix(".png") if seg_root else None
            if sp is not None and sp.is_file() and cid is not None:
                with Image.open(sp) as im:
                    soft = np.asarray(im.convert("L"))
                mask = np.where(soft >= threshold, cid, 0).astype(np.uint8)
                mp = out / "gt_masks" / f"{safe_name(iid)}.png"
                s[gt_field] = fo.Segmentation(mask_path=_write_index_png(mask, mp))
            yield s

    _add_samples(ds, gen(), max_samples)
    gt = (gt_field, {0: "background", **class_names}) if seg_root else None
    return _finish(ds, label_field, str(root), "cub", gt)

