"""A Ray actor's thread share sizes every pool it starts (no Ray cluster needed: the actor's
body is built in this process, with Ray's GPU query stubbed)."""

from __future__ import annotations

import ray

from ewc_fo.distributed.ray_runner import LabelWorker, WorkerSpec
from ewc_fo.engine.pipeline import EWCConfig
from ewc_fo.testing import tiny_classifier


def test_worker_pools_follow_its_thread_share(monkeypatch):
    import torch

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # would start a local Ray otherwise
    threads = torch.get_num_threads()
    try:
        spec = WorkerSpec(classifier=tiny_classifier(3), segmenter="grabcut", sam2_checkpoint=None,
                          config=EWCConfig(explainers=("gradcam",)), threads=1, out_dir="/nonexistent",
                          target_id={}, exp_keys=["gradcam"])
        w = LabelWorker(spec)
    finally:
        torch.set_num_threads(threads)
    # one thread for torch, the per-image steps and the GrabCut cuts: N actors on a node start
    # N threads, not N times the node's cores
    assert w.ewc.workers == 1 and w.ewc.segmenter.workers == 1


def test_worker_holds_the_segmentation_model_with_the_drivers_settings(monkeypatch, tmp_path):
    """A worker for `label --segmentation-model` loads the model once, as the driver's labeler
    was built (flip, size, runtime), and labels with it, not with EWC."""
    import numpy as np
    import skimage.data
    import torch

    from ewc_fo.distributed.ray_runner import _segmentation_engine
    from ewc_fo.engine.seg_labeler import SegModelLabeler
    from ewc_fo.models.classifier import IMAGENET_MEAN, IMAGENET_STD
    from ewc_fo.models.seg_checkpoint import save_seg_model
    from ewc_fo.models.segnet import SegNet

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    torch.manual_seed(0)
    path = tmp_path / "seg.safetensors"
    save_seg_model(SegNet(2, 8), {"backbone": "efficientnet_lite0", "class_names": ["cat", "coffee"],
                                  "input_size": 64, "width": 8, "mean": list(IMAGENET_MEAN),
                                  "std": list(IMAGENET_STD), "trainable_prefixes": ["decoder"]}, path)
    driver = SegModelLabeler(str(path), flip=False, max_side=200, runtime="torch")
    engine, seg_path, opts = _segmentation_engine(driver, None)
    assert engine is driver and seg_path == driver.path
    threads = torch.get_num_threads()
    try:
        w = LabelWorker(WorkerSpec(classifier="unused", segmenter="unused", sam2_checkpoint=None, config=None,
                                   threads=1, out_dir=str(tmp_path), target_id={}, exp_keys=[],
                                   segmentation_model=seg_path, segmentation_options=opts))
    finally:
        torch.set_num_threads(threads)
    assert isinstance(w.ewc, SegModelLabeler) and w.clf is w.ewc.clf
    assert (w.ewc.flip, w.ewc.max_side, w.ewc.runtime) == (False, 200, "torch")
    assert w.ewc.describe() == driver.describe()  # what the driver recorded is what the worker runs
    img = np.asarray(skimage.data.chelsea())
    a, b = w.ewc.run([img], [["cat"]])[0], driver.run([img], [["cat"]])[0]
    assert np.array_equal(a.label_map, b.label_map) and a.confidence == b.confidence
