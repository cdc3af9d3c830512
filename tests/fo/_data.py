"""Small generated datasets for FiftyOne-layer tests (real photos from scikit-image, resized)."""

from __future__ import annotations

import os

import fiftyone as fo
import numpy as np
import skimage.data
from PIL import Image

PHOTOS = {"chelsea": "tabby", "coffee": "espresso", "rocket": "missile", "camera": "tripod"}


def small_photo(name: str, width: int = 160) -> Image.Image:
    arr = np.asarray(getattr(skimage.data, name)())
    img = Image.fromarray(arr)
    h = round(img.height * width / img.width)
    return img.resize((width, h))


def make_dataset(root: str, name: str, n: int = 4, multilabel: bool = True) -> fo.Dataset:
    """``n`` small real photos (cycled, flipped on repeats) with ImageNet labels."""
    os.makedirs(root, exist_ok=True)
    samples = []
    keys = list(PHOTOS)
    for i in range(n):
        key = keys[i % len(keys)]
        img = small_photo(key)
        if i >= len(keys):
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        path = os.path.join(root, f"{i:03d}_{key}.jpg")
        img.save(path, quality=92)
        lab = PHOTOS[key]
        if multilabel:
            field = fo.Classifications(classifications=[fo.Classification(label=lab)])
        else:
            field = fo.Classification(label=lab)
        samples.append(fo.Sample(filepath=path, labels=field))
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.add_samples(samples)
    return ds
