"""Images decoded ahead of the model: a torch ``DataLoader`` over file paths.

While the GPU explains and segments batch *i*, worker processes decode batch *i + 1*
(and the next, ``prefetch_factor``); on a GPU the decoded pixels sit in pinned memory,
so the copy to the device is asynchronous. A file that cannot be read comes back as
its :class:`ImageLoadError` in its place, so one bad file costs one sample, not a batch.

Batches are given as lists of paths, so the caller keeps its own batch boundaries
(a resumed run must see the batches an uninterrupted one saw).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ewc_fo.runtime.device import cpu_count
from ewc_fo.runtime.errors import EWCError
from ewc_fo.runtime.images import load_image

Loaded = list  # per batch: np.ndarray (H, W, 3) uint8 or the EWCError that path raised


class ImageFiles(Dataset):
    """Path i -> (i, RGB uint8 image as a tensor, or the EWCError reading it raised)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            # a tensor, so the DataLoader can pin it; .numpy() on the other side is free
            return i, torch.from_numpy(load_image(self.paths[i]))
        except EWCError as e:
            return i, e


def _as_list(items):
    return items  # images differ in size: a batch is a list, not a stacked tensor


def default_workers(device: torch.device | str = "cpu") -> int:
    """Decoding processes: on a GPU, enough to keep it fed (up to 8, one core left for
    the driver); on CPU none, since decoding is under 1 % of a CPU run
    (benchmarks/README.md) and a worker would only take a core from the model."""
    if torch.device(device).type == "cpu":
        return 0
    return max(1, min(8, cpu_count() - 1))


def load_batches(batches: Sequence[Sequence[str]], *, workers: int | None = None,
                 device: torch.device | str = "cpu", prefetch: int = 2) -> Iterator[Loaded]:
    """Yield, for each batch of paths, its images (or errors) in order, decoding ahead.

    ``workers=None`` picks :func:`default_workers` for ``device``; memory is pinned when
    the device is a GPU.
    """
    flat = [p for b in batches for p in b]
    index, k = [], 0
    for b in batches:
        index.append(list(range(k, k + len(b))))
        k += len(b)
    n = default_workers(device) if workers is None else max(0, int(workers))
    pin = torch.device(device).type == "cuda" and torch.cuda.is_available()
    loader = DataLoader(ImageFiles(flat), batch_sampler=index, num_workers=n, collate_fn=_as_list,
                        pin_memory=pin, prefetch_factor=prefetch if n else None)
    for items in loader:
        yield [x if isinstance(x, EWCError) else np.asarray(x.numpy()) for _, x in items]
