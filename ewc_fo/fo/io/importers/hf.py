"""Hugging Face image-classification datasets (hub name, save_to_disk folder, parquet)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fiftyone as fo
from PIL import Image

from ewc_fo.fo.io.importers._common import (
    DEFAULT_LABEL_FIELD,
    _add_samples,
    _finish,
    default_media_dir,
    log,
    make_label,
    new_dataset,
)
from ewc_fo.runtime.errors import ConfigError


def load_hf_dataset(source: Any, split: str = "train"):
    """A ``datasets.Dataset`` from an in-memory Dataset/DatasetDict, a ``save_to_disk``
    folder, parquet file(s), a local data folder, or a hub name (needs network)."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ConfigError(f"split {split!r} not in the dataset; it has {', '.join(source)}")
        return source[split]
    if isinstance(source, datasets.Dataset):
        return source
    p = Path(str(source)).expanduser()
    try:
        if p.exists():
            if p.is_dir() and any((p / f).is_file() for f in ("dataset_dict.json", "state.json")):
                return load_hf_dataset(datasets.load_from_disk(str(p)), split)
            parquet = [p] if p.suffix == ".parquet" else sorted(p.rglob("*.parquet")) if p.is_dir() else []
            if parquet:
                files = [str(x) for x in parquet]
                return datasets.load_dataset("parquet", data_files=files, split="train")
            return datasets.load_dataset(str(p), split=split)
        return datasets.load_dataset(str(source), split=split)
    except ConfigError:
        raise
    except Exception as e:  # network, missing split, unknown builder...
        raise ConfigError(f"cannot load Hugging Face dataset {source!r} (split {split!r}): {e}") from None


def _hf_columns(features, image_key: str | None, label_key: str | None) -> tuple[str, str | None, str]:
    """(image column, label column, kind) with kind in ``single``, ``multi``, ``string``, ``none``."""
    import datasets

    def class_label_of(f):
        if isinstance(f, datasets.ClassLabel):
            return "single"
        inner = f[0] if isinstance(f, list) and f else getattr(f, "feature", None)
        if isinstance(inner, datasets.ClassLabel):
            return "multi"
        return None

    if image_key is None:
        image_key = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        if image_key is None:
            raise ConfigError(f"no Image feature in the dataset (columns: {', '.join(features)})")
    elif image_key not in features:
        raise ConfigError(f"no column {image_key!r} (columns: {', '.join(features)})")
    if label_key is None:
        label_key = next((k for k, f in features.items() if class_label_of(f)), None)
        if label_key is None:
            label_key = next((k for k in ("label", "labels") if k in features), None)
    if label_key is None:
        return image_key, None, "none"
    if label_key not in features:
        raise ConfigError(f"no column {label_key!r} (columns: {', '.join(features)})")
    return image_key, label_key, class_label_of(features[label_key]) or "string"


def import_hf(
    name: str,
    source: Any,
    *,
    split: str = "train",
    image_key: str | None = None,
    label_key: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    media_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_samples: int | None = None,
) -> fo.Dataset:
    """A Hugging Face image-classification dataset (an ``Image`` feature and a ``ClassLabel``
    or a list of them); the image and label columns are found automatically unless named.

    Images are written as files (original encoded bytes, not re-encoded) under
    ``media_dir/images`` because FiftyOne samples point to files.
    """
    import datasets

    ds_hf = load_hf_dataset(source, split)
    image_key, label_key, kind = _hf_columns(ds_hf.features, image_key, label_key)
    names = None
    if kind == "single":
        names = ds_hf.features[label_key].names
    elif kind == "multi":
        f = ds_hf.features[label_key]
        names = (f[0] if isinstance(f, list) else f.feature).names
    cols = [image_key] + ([label_key] if label_key else [])
    raw = ds_hf.select_columns(cols).cast_column(image_key, datasets.Image(decode=False))
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))
    img_dir = (Path(media_dir).expanduser() if media_dir else default_media_dir(name)) / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    ds = new_dataset(name, overwrite)

    def to_names(v) -> list[str]:
        if v is None:
            return []
        vals = v if isinstance(v, list | tuple) else [v]
        if names is None:
            return [str(x) for x in vals]
        return [names[int(x)] for x in vals if x is not None and 0 <= int(x) < len(names)]

    def gen() -> Iterator[fo.Sample]:
        for i, row in enumerate(raw):
            img = row[image_key] or {}
            data, src = img.get("bytes"), img.get("path")
            if data is None and src and os.path.isfile(src):
                ext = Path(src).suffix.lower() or ".png"
                dst = img_dir / f"{i:07d}{ext}"
                shutil.copyfile(src, dst)
            elif data is not None:
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        fmt = (im.format or "PNG").lower()
                except Exception:
                    log.warning("row %d: undecodable image, skipped", i)
                    continue
                dst = img_dir / f"{i:07d}.{'jpg' if fmt == 'jpeg' else fmt}"
                dst.write_bytes(data)
            else:
                log.warning("row %d: no image, skipped", i)
                continue
            s = fo.Sample(filepath=str(dst.resolve()), tags=[split])
            labels = to_names(row[label_key]) if label_key else []
            if labels:
                s[label_field] = make_label(labels, multi=(kind == "multi"))
            yield s

    _add_samples(ds, gen())
    return _finish(ds, label_field, str(source if isinstance(source, str | os.PathLike) else "memory"), "hf")
