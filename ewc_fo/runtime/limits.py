"""Bounds on the sizes a user can ask for, shared by the CLI, the config and checkpoints.

Why bounded: a classifier input side of 100000 px passes every type check, then every
sample fails to allocate and the run "succeeds" with nothing done. 2048 px is 4x the
largest side any bundled backbone was trained near and still fits a CPU run.
"""

from __future__ import annotations

import numbers

#: smallest classifier input side: below it CNN feature maps vanish (stride 32)
MIN_INPUT_SIZE = 32
#: largest classifier input side (``--explain-size``, ``--fit-size``, checkpoint ``input_size``)
MAX_INPUT_SIZE = 2048


def check_input_size(value: object, what: str = "input size") -> int:
    """``value`` as an int in [MIN_INPUT_SIZE, MAX_INPUT_SIZE], else ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be a whole number of pixels, got {value!r}")
    if not MIN_INPUT_SIZE <= value <= MAX_INPUT_SIZE:
        raise ValueError(f"{what} must be between {MIN_INPUT_SIZE} and {MAX_INPUT_SIZE} px, got {value}")
    return int(value)
