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
