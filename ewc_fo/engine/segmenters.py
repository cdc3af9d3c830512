"""Deprecated import path (one release): the segmenters moved to :mod:`ewc_fo.segmenters`."""

from ewc_fo.segmenters import *  # noqa: F403
from ewc_fo.segmenters import __getattr__  # noqa: F401  (GrabCutSegmenter, SAM2Segmenter, ...)
