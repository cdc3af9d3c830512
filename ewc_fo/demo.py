"""The README's main job: a small dataset of real photos, labeled end to end, offline.

The photos ship inside scikit-image (``skimage.data``), all free of copyright
restrictions: ``chelsea`` and ``coffee`` (CC0, photographers Stefan van der Walt and
Rachel Michetti), ``camera`` (no known copyright restrictions; grayscale) and ``rocket``
(SpaceX, public domain). Their image-level labels are ImageNet classes so the offline
ImageNet EfficientNet-Lite0 can explain them without any fitting.
"""

from __future__ import annotations

import os

import fiftyone as fo
import numpy as np
from PIL import Image

DEMO_DATASET = "ewc-fo-demo"
PHOTOS = {
    "chelsea": ["tabby"],
    "coffee": ["espresso", "cup"],
    "camera": ["tripod"],
    "rocket": ["missile"],
}


def demo_images_dir() -> str:
    return os.path.join(fo.config.default_dataset_dir, "ewc_fo", "demo_images")


def build_demo_dataset(name: str = DEMO_DATASET, overwrite: bool = False) -> fo.Dataset:
    """Create (or load) the demo dataset: 4 real photos with Classifications labels."""
    import skimage.data

    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    out = demo_images_dir()
    os.makedirs(out, exist_ok=True)
    samples = []
    for photo, labels in PHOTOS.items():
        path = os.path.join(out, f"{photo}.jpg")
        if not os.path.exists(path):
            arr = np.asarray(getattr(skimage.data, photo)())
            Image.fromarray(arr).save(path, quality=95)  # grayscale stays grayscale on purpose
        samples.append(fo.Sample(
            filepath=path,
            labels=fo.Classifications(classifications=[fo.Classification(label=c) for c in labels]),
        ))
    ds = fo.Dataset(name, persistent=True)
    ds.add_samples(samples)
    ds.info["source"] = "scikit-image sample photos (CC0 / public domain), see ewc_fo/demo.py"
    ds.save()
    return ds
