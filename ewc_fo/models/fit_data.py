"""Labels to a target matrix, the held-out split and its score.

Real datasets have long tails: a class with a single labelled image is fitted (it cannot
also be checked), kept out of the held-out split and out of the held-out score, and
reported as not scored. A class with no image at all is the only class-count error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ewc_fo.runtime.errors import ConfigError

MIN_SCORED = 2  # images a class needs to be both fitted and checked


class RareClassWarning(UserWarning):
    """Some classes have too few images to be held out; they are fitted but not scored."""

def encode_labels(
    labels: Sequence, class_names: Sequence[str] | None = None, multilabel: bool | None = None
) -> tuple[np.ndarray, list[str], bool]:
    """Check labels and turn them into a (N, C) 0/1 matrix.

    Each label is a class name (single-label) or a list of class names (multi-label,
    possibly empty). Every problem is reported here, before any image is read.
    """
    if len(labels) == 0:
        raise ConfigError("no labels: the label field is empty on every sample")
    is_list = [isinstance(x, (list, tuple, set, frozenset)) for x in labels]
    if multilabel is None:
        multilabel = all(is_list)
        if any(is_list) and not multilabel:
            raise ConfigError("labels mix single class names and lists of class names")
    if multilabel:
        if not all(is_list):
            raise ConfigError("multi-label fitting needs a list of class names per image")
        rows = [list(x) for x in labels]
    else:
        if any(is_list):
            raise ConfigError("single-label fitting needs one class name per image, not lists")
        rows = [[x] for x in labels]
    bad = {type(c).__name__ for r in rows for c in r if not isinstance(c, str) or not c}
    if bad:
        raise ConfigError(
            f"labels must be non-empty class-name strings, got {', '.join(sorted(bad))}: "
            "use a Classification (single-label) or Classifications (multi-label) field"
        )
    present = sorted({c for r in rows for c in r})
    names = list(class_names) if class_names is not None else present
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise ConfigError(f"labels not in the class list: {', '.join(unknown[:10])}")
    if len(names) < 2 and not multilabel:
        raise ConfigError(
            f"only one class ({names[0] if names else 'none'}): a classifier needs at least two; "
            "label images of another class, or fit on a view (--view) that includes them"
        )
    index = {c: i for i, c in enumerate(names)}
    y = np.zeros((len(rows), len(names)), np.float32)
    for i, r in enumerate(rows):
        y[i, [index[c] for c in r]] = 1
    counts = y.sum(0).astype(int)
    empty = [c for c, n in zip(names, counts) if n == 0]
    if empty:
        raise ConfigError(
            f"classes with no labelled image: {', '.join(empty[:10])}"
            f"{' ...' if len(empty) > 10 else ''} (drop them from the class list, or label an image of each)"
        )
    rare = [f"{c} ({n})" for c, n in zip(names, counts) if n < MIN_SCORED]
    if rare:
        warnings.warn(
            f"{len(rare)} class{'es' if len(rare) > 1 else ''} with a single labelled image: fitted, "
            f"but not held out and not in the held-out score: {', '.join(rare[:10])}{' ...' if len(rare) > 10 else ''}",
            RareClassWarning, stacklevel=3,
        )
    if multilabel and (y == y[0]).all():
        raise ConfigError(
            "every image has the same labels: nothing to tell apart (one class only?)"
        )
    return y, names, bool(multilabel)


def heldout_split(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of held-out rows, stratified by each image's rarest class.

    Every class keeps at least one training image, and one held-out image where it has
    two or more; an image of a class with a single image is never held out.
    """
    n = len(y)
    held = np.zeros(n, bool)
    if fraction <= 0:
        return held
    if not 0 < fraction < 1:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    freq = y.sum(0)
    masked = np.where(y > 0, freq[None, :], np.inf)
    key = np.where(y.any(1), masked.argmin(1), -1)  # rarest positive class, -1 for none
    for k in np.unique(key):
        idx = np.flatnonzero(key == k)
        rng.shuffle(idx)
        m = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            m = min(max(m, 1), len(idx) - 1)
        held[idx[:m]] = True
    for c in range(y.shape[1]):  # a class must keep a training positive
        if not (y[~held, c] > 0).any():
            held[np.flatnonzero((y[:, c] > 0) & held)[0]] = False
    return held


def unscored_classes(y: np.ndarray, held: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Classes with no held-out positive: fitted, but the held-out score says nothing of them."""
    if not held.any():
        return []
    return [c for i, c in enumerate(class_names) if not (y[held, i] > 0).any()]


def heldout_metrics(y: np.ndarray, probs: np.ndarray, class_names: Sequence[str], multilabel: bool) -> dict:
    """mAP over classes with a held-out positive (multi-label) or accuracy (single-label)."""
    if multilabel:
        from sklearn.metrics import average_precision_score

        ap = {
            c: float(average_precision_score(y[:, i], probs[:, i]))
            for i, c in enumerate(class_names)
            if y[:, i].any()
        }
        return {"metric": "mAP", "score": float(np.mean(list(ap.values()))), "per_class": ap}
    true, pred = y.argmax(1), probs.argmax(1)
    acc = {c: float((pred[true == i] == i).mean()) for i, c in enumerate(class_names) if (true == i).any()}
    return {"metric": "accuracy", "score": float((pred == true).mean()), "per_class": acc}

